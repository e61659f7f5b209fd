"""The generated sentiment world of `llmcourse.tasks.sentiment`, written in Chinese, one character per word.

Notebook 07 in Chinese (`LLMCOURSE_LANG=zh`) tokenizes text into single characters, as
bert-base-chinese does (its WordPiece vocabulary splits every CJK character apart). The world is
the English one translated so that each word the lesson is about is ONE character:

* sentiment adjectives (`POSITIVE`: 好 棒 美 妙 | 赞 爽 酷 绝, `NEGATIVE`: 差 烂 糟 坏 | 臭 闷 俗 丑),
  the first `SEEN_WORDS` of each polarity labelled, the rest held out;
* the things reviewed (汤 面 饭 茶 ...), also one character each, and polar cues that carry the
  polarity in other characters (爱 / 恨, 喜欢 / 讨厌, 推荐 / 别碰): "我恨这汤，真糟。";
* animals, each with its own call and food ("狗对着猫汪汪叫。", "牛吃了草。"), and capitals with
  their countries, written "X国" so the country is the character X ("我们飞到法国的巴黎。").

The sentences are kept short (这汤, not 这个汤): a character is a smaller unit than an English BPE
token. Measured at smoke size with longer sentences (这个汤, 音乐会), 1500 steps left the two
polarities unseparated (held-out accuracy near 50%) and 3000 separated them for some seeds only;
with these, 3000 steps of 24-character windows separated them for seeds 0, 1 and 2.

The functions have the English module's names and signatures (`generated_corpus`,
`sentiment_sentences`), so `sentiment.world("zh")` can stand in for the English module.
Left out, as in English: negation ("不好"), mixed reviews, and two-character words (精彩, 糟糕)
whose characters a held-out word might share with a labelled one.
"""

from __future__ import annotations

import random

POSITIVE = ("好", "棒", "美", "妙", "赞", "爽", "酷", "绝")
NEGATIVE = ("差", "烂", "糟", "坏", "臭", "闷", "俗", "丑")
SEEN_WORDS = 4  # adjectives of each polarity that the labelled training set may use
THINGS = ("汤", "面", "饭", "茶", "酒", "书", "剧", "歌", "戏", "店")  # one character each, too
# per polarity (0 = positive, 1 = negative): sentence frames that say it without the adjective
CUES = (
    (
        "我爱这{t}，真{a}。",
        "我喜欢这{t}，太{a}了。",
        "还会再来，这{t}很{a}。",
        "推荐这{t}，它很{a}。",
    ),
    (
        "我恨这{t}，真{a}。",
        "我讨厌这{t}，太{a}了。",
        "再也不来，这{t}很{a}。",
        "别碰这{t}，它很{a}。",
    ),
)
# frames without a cue; two adjectives of one review side by side, as "The {t} was {a} and {b}."
PAIRS = ("这{t}又{a}又{b}。", "多么{a}的{t}啊！")
# animal -> (its call, written twice before 叫; its food)
ANIMALS = {
    "狗": ("汪", "肉"),
    "猫": ("喵", "鱼"),
    "牛": ("哞", "草"),
    "鸡": ("咯", "米"),
    "鸟": ("叽", "虫"),
    "猴": ("吱", "桃"),
}
# capital -> the character of its country (the country is written 法国, 德国, ...)
CITIES = {"巴黎": "法", "柏林": "德", "伦敦": "英", "首尔": "韩", "曼谷": "泰", "北京": "中"}


def _review(rng, polarity: int) -> list[str]:
    """Sentences of one review: every adjective and cue has the review's polarity (0 = +, 1 = -)."""
    adj = lambda: rng.choice(POSITIVE if polarity == 0 else NEGATIVE)  # noqa: E731
    thing = rng.choice(THINGS)
    out = []
    for _ in range(rng.randint(2, 4)):
        frame = rng.choice(CUES[polarity] + PAIRS)
        out.append(frame.format(t=thing, a=adj(), b=adj()))
    return out


def _animals(rng) -> list[str]:
    out = []
    for _ in range(rng.randint(2, 4)):
        a, b = rng.sample(sorted(ANIMALS), 2)
        call, food = ANIMALS[a]
        out.append(
            rng.choice(
                [f"{a}对着{b}{call}{call}叫。", f"{a}吃了{food}。", f"{a}大声地{call}{call}叫。"]
            )
        )
    return out


def _travel(rng) -> list[str]:
    out = []
    for _ in range(rng.randint(2, 4)):
        city = rng.choice(sorted(CITIES))
        country = CITIES[city] + "国"
        out.append(
            rng.choice(
                [
                    f"我们飞到{country}的{city}。",
                    f"{city}是{country}的首都。",
                    f"他们去年去了{city}。",
                ]
            )
        )
    return out


def generated_corpus(n_docs: int, seed: int = 0) -> list[str]:
    """Unlabelled documents (one paragraph each): half reviews, a quarter animals, a quarter travel,
    drawn as in the English world.

    >>> docs = generated_corpus(4, seed=0)
    >>> len(docs), all(d.endswith(("。", "！")) for d in docs)
    (4, True)
    """
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        kind = rng.random()
        sents = (
            _review(rng, rng.randint(0, 1))
            if kind < 0.5
            else _animals(rng)
            if kind < 0.75
            else _travel(rng)
        )
        docs.append("".join(sents))  # Chinese needs no space between sentences
    return docs


def sentiment_sentences(n: int, seen: bool, seed: int = 0) -> list[tuple[str, int]]:
    """n labelled sentences (text, label: 1 = positive, 0 = negative) with NO polar cue: the
    adjective alone carries the label. `seen=True` uses the first SEEN_WORDS adjectives of each
    polarity, `seen=False` the others. Balanced: labels alternate.

    >>> sentiment_sentences(2, seen=True, seed=0)[0][1], sentiment_sentences(2, seen=True)[1][1]
    (0, 1)
    """
    rng = random.Random(seed)
    words = [w[:SEEN_WORDS] if seen else w[SEEN_WORDS:] for w in (NEGATIVE, POSITIVE)]
    rows = []
    for i in range(n):
        label, thing = i % 2, rng.choice(THINGS)
        adj = rng.choice(words[label])
        rows.append(
            (
                rng.choice([f"这{thing}很{adj}。", f"多么{adj}的{thing}！", f"{thing}真{adj}。"]),
                label,
            )
        )
    return rows
