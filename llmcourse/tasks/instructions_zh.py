"""The checkable instruction tasks of `llmcourse.tasks.instructions`, in Chinese.

The same five skills, with Chinese prompts and answers; a task's name says its language, so
`instructions.make_instructions(n, split, ("计数", "繁体"))` draws Chinese examples and every
caller that passes `cfg.tasks` along works in both languages:

  * 加法  "37加45等于多少？"                 -> "82"         (add)
  * 倒序  "把顺序倒过来：马、鸟、鱼"          -> "鱼、鸟、马"   (reverse)
  * 繁体  "写成繁体字：马、鸟、鱼"            -> "馬、鳥、魚"   (upper: map every item, keep the order)
  * 计数  "数一数有几个字：马、鸟、鱼"        -> "3"          (count)
  * 排序  "把这些数从小到大排列：9 2 5"       -> "2 5 9"      (sort)

Chinese has no capital letters; its counterpart of "write in capital letters" is "write in
traditional characters" (繁体字), another character-by-character mapping that a model must learn
per character. Items are single characters listed with the enumeration comma "、", as Chinese
writes lists. Held-out examples use item lists and numbers the training split never contains
(the same content hash as in English).
Left out: characters whose traditional form depends on the word (发 -> 發 or 髮, 云 -> 雲 or 云).
"""

from __future__ import annotations

import random

# simplified -> traditional: characters with one traditional form whatever the word
TRADITIONAL = dict(
    zip(
        "马鸟鱼灯门书铁风叶龙车东红蓝绿长飞电鸡兰凤园桥楼剑银丝纸岛麦龟虾伞",
        "馬鳥魚燈門書鐵風葉龍車東紅藍綠長飛電雞蘭鳳園橋樓劍銀絲紙島麥龜蝦傘",
        strict=True,
    )
)
WORDS = tuple(TRADITIONAL)
TASKS = ("加法", "倒序", "繁体", "计数", "排序")


def make(task: str, rng: random.Random):
    """One (Example, held-out key) of `task`, drawn with `rng`: what `instructions._make` does in English."""
    from llmcourse.tasks.instructions import Example

    if task == "加法":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return Example(task, f"{a}加{b}等于多少？", str(a + b)), f"{a}+{b}"
    if task in ("倒序", "繁体", "计数"):
        words = rng.sample(WORDS, rng.randint(2, 5))
        text = "、".join(words)
        if task == "倒序":
            return Example(task, f"把顺序倒过来：{text}", "、".join(reversed(words))), text
        if task == "繁体":
            answer = "、".join(TRADITIONAL[w] for w in words)
            return Example(task, f"写成繁体字：{text}", answer), text
        return Example(task, f"数一数有几个字：{text}", str(len(words))), text
    if task == "排序":
        nums = [rng.randint(0, 99) for _ in range(rng.randint(3, 5))]
        text = " ".join(map(str, nums))
        answer = " ".join(map(str, sorted(nums)))
        return Example(task, f"把这些数从小到大排列：{text}", answer), text
    raise ValueError(f"unknown task {task!r}; the Chinese tasks are {TASKS}")


def wrong_answer(ex, rng: random.Random) -> str:
    """A plausible but wrong answer of the same kind (the rejected response of a DPO pair)."""
    if ex.task in ("加法", "计数"):
        return str(int(ex.answer) + rng.choice([-2, -1, 1, 2, 10]))
    if ex.task == "倒序":
        return ex.prompt.split("：", 1)[1]  # the items, not reversed
    if ex.task == "繁体":
        return ex.prompt.split("：", 1)[1]  # left in simplified characters
    if ex.task == "排序":
        return " ".join(sorted(ex.answer.split(), key=int, reverse=True))
    raise ValueError(f"unknown task {ex.task!r}; the Chinese tasks are {TASKS}")
