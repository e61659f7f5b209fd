"""Instruction data whose answers a program can check, and preference pairs built from it.

Supervised fine-tuning is only convincing when the learner sees a number move. These generated
tasks have one correct answer each, so "held-out accuracy before and after SFT" is measurable
offline with exact match. Every task is a small, real skill a base model does not have by default:

  * add       "What is 37 plus 45?"                     -> "82"
  * reverse   "Reverse the words: red fox runs"         -> "runs fox red"
  * upper     "Write in capital letters: good day"      -> "GOOD DAY"
  * count     "How many words are in: a b c d?"         -> "4"
  * sort      "Sort these numbers: 9 2 5"               -> "2 5 9"

Held-out examples use operands the training split never contains (numbers and word lists are
split by a hash), so accuracy measures generalisation rather than memory.
Preference pairs (for DPO) pair the correct answer (chosen) with a plausible wrong one (rejected).
`load_alpaca()` reads a public instruction set for the full size through the data layer.
The same skills in Chinese (`instructions_zh`: 加法, 倒序, 繁体, 计数, 排序) are drawn by the same
functions: a task's name says its language (`task_family`).
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass

from llmcourse.tasks import instructions_zh

WORDS = (
    "red blue green cat dog fox bird fish tree river stone cloud rain sun moon star ship road "
    "book lamp door milk bread salt gold iron wind snow leaf seed hill lake bell coat ring"
).split()
TASKS = ("add", "reverse", "upper", "count", "sort")


@dataclass(frozen=True)
class Example:
    task: str  # which generator made it
    prompt: str  # the user's instruction
    answer: str  # the single correct answer (exact match)


def _held_out(key: str, fraction: float = 0.2) -> bool:
    """A stable pseudo-random split by content: the same key is always on the same side."""
    return zlib.crc32(key.encode()) % 1000 < fraction * 1000


def task_family(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """All the tasks of the language of `tasks`: `TASKS` (English) or `instructions_zh.TASKS`.

    >>> task_family(("count",)) == TASKS, task_family(("计数", "繁体")) == instructions_zh.TASKS
    (True, True)
    """
    for family in (TASKS, instructions_zh.TASKS):
        if set(tasks) <= set(family):
            return family
    raise ValueError(
        f"tasks {tasks} mix languages or are unknown: use tasks of {TASKS} or of "
        f"{instructions_zh.TASKS}"
    )


def _make(task: str, rng: random.Random) -> tuple[Example, str]:
    if task in instructions_zh.TASKS:
        return instructions_zh.make(task, rng)
    if task == "add":
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        return Example(task, f"What is {a} plus {b}?", str(a + b)), f"{a}+{b}"
    if task in ("reverse", "upper", "count"):
        words = rng.sample(WORDS, rng.randint(2, 5))
        text = " ".join(words)
        if task == "reverse":
            return Example(task, f"Reverse the words: {text}", " ".join(reversed(words))), text
        if task == "upper":
            return Example(task, f"Write in capital letters: {text}", text.upper()), text
        return Example(task, f"How many words are in: {text}?", str(len(words))), text
    if task == "sort":
        nums = [rng.randint(0, 99) for _ in range(rng.randint(3, 5))]
        return Example(
            task,
            f"Sort these numbers: {' '.join(map(str, nums))}",
            " ".join(map(str, sorted(nums))),
        ), " ".join(map(str, nums))
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")


def make_instructions(
    n: int, split: str = "train", tasks: tuple[str, ...] = TASKS, *, seed: int = 0
) -> list[Example]:
    """`n` examples from `split` ("train" or "test"), tasks mixed evenly, deterministic given seed."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    rng = random.Random(f"{seed}-{split}")
    out: list[Example] = []
    seen = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 1000:
            raise RuntimeError(f"could not draw {n} distinct {split} examples for tasks {tasks}")
        ex, key = _make(tasks[len(out) % len(tasks)], rng)
        if _held_out(f"{ex.task}:{key}") != (split == "test") or ex.prompt in seen:
            continue
        seen.add(ex.prompt)
        out.append(ex)
    return out


def to_conversation(ex: Example, system: str | None = None, with_answer: bool = True) -> list[dict]:
    conv = [{"role": "system", "content": system}] if system else []
    conv.append({"role": "user", "content": ex.prompt})
    if with_answer:
        conv.append({"role": "assistant", "content": ex.answer})
    return conv


def normalise(text: str, keep_case: bool = False) -> str:
    """Collapse whitespace, strip trailing punctuation and (unless `keep_case`) lower-case:
    what exact match compares."""
    text = " ".join(text.strip().rstrip(".!").split())
    return text if keep_case else text.lower()


def is_correct(ex: Example, output: str) -> bool:
    """Exact match after normalising; case counts for the "upper" task, where it *is* the answer."""
    keep = ex.task == "upper"
    return normalise(output, keep) == normalise(ex.answer, keep)


def wrong_answer(ex: Example, rng: random.Random) -> str:
    """A plausible but wrong answer of the same kind (for rejected DPO responses)."""
    if ex.task in instructions_zh.TASKS:
        return instructions_zh.wrong_answer(ex, rng)
    if ex.task in ("add", "count"):
        return str(int(ex.answer) + rng.choice([-2, -1, 1, 2, 10]))
    if ex.task == "reverse":
        return ex.prompt.split(": ", 1)[1]  # the words, not reversed
    if ex.task == "upper":
        return ex.answer.lower()
    if ex.task == "sort":
        return " ".join(sorted(ex.answer.split(), key=int, reverse=True))
    raise ValueError(ex.task)


def make_preferences(
    n: int, split: str = "train", seed: int = 0, *, tasks: tuple[str, ...] = TASKS
) -> list[tuple[Example, str, str]]:
    """(example, chosen, rejected) triples: the correct answer is preferred to a wrong one."""
    rng = random.Random(f"pref-{seed}-{split}")
    out = []
    for ex in make_instructions(n, split, tasks, seed=seed + 1):
        rejected = wrong_answer(ex, rng)
        if not is_correct(ex, rejected):
            out.append((ex, ex.answer, rejected))
    return out


def load_alpaca(max_examples: int | None = None) -> list[Example]:
    """An Alpaca-style public instruction set for the full size (Hugging Face `tatsu-lab/alpaca`).

    Offline (and not cached) or on a failed download: the built-in tasks, after one fallback line
    (`data.warn_fallback`). Answers there are free text, so they are used for SFT, not for
    exact-match accuracy.
    """
    from llmcourse import data

    n = max_examples or 2000
    rows = data.hub_table(
        "tatsu-lab/alpaca",
        None,
        "train",
        max_rows=max_examples,
        instead=f"{n} examples of the course's built-in instruction tasks",
    )
    if rows is None:
        return make_instructions(n)
    return [
        Example(
            "alpaca", (r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")), r["output"]
        )
        for r in rows
    ]
