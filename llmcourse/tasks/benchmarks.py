"""Multiple-choice benchmarks: items, prompt formats, scoring by log-likelihood, and a public subset.

A benchmark such as ARC, HellaSwag or MMLU is a list of questions with a few answer options, one
correct. Harnesses (EleutherAI's lm-evaluation-harness, HELM) ask the model which option is most
likely as a continuation of the question, so no free text has to be parsed:

    acc            argmax over options of  sum_t log p(option token t | question, earlier tokens)
    acc_norm       the same sum divided by the option's length in *characters* (the harness's
                   definition: `completion_len = len(choice)` in lm_eval/api/task.py, the choice
                   without the " " put before it), so the number does not depend on the tokenizer
    acc_per_token  the same sum divided by the option's number of *tokens* (Brown et al. 2020's
                   "average per-token likelihood"; not what a harness calls acc_norm)

Both divisions undo the raw sum's penalty on long options. `llmcourse.evaluate.multiple_choice`
scores one item all three ways (cropping the context from the left to fit a small model's window);
`score_items` averages over items. This module adds the items and the formats.
Scores depend on the *format* of the prompt, which a benchmark's number rarely states (Sclar et al.
2024, "Quantifying Language Models' Sensitivity to Spurious Features in Prompt Design"): `FORMATS`
holds three reasonable ones so a notebook can show the spread.

`BUILTIN` are 40 general-knowledge and commonsense items written for the course (offline, small,
license-free). `load_arc_easy(n)` reads the public ARC-Easy test split (Clark et al. 2018) through
`datasets` (cached by `data.hub_table` after the first online run) and falls back to `BUILTIN`,
after one fallback line, when offline.
Left out: few-shot benchmark prompts, calibration, contamination detection (n-gram overlap).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmcourse import data
from llmcourse.config import cap_steps
from llmcourse.evaluate import multiple_choice


@dataclass(frozen=True)
class MCItem:
    question: str  # the stem, without the options
    options: tuple[str, ...]  # answer texts
    answer: int  # index of the correct option
    source: str = "builtin"  # where the item comes from


_B = [  # question, correct, distractors; options are shuffled deterministically below
    (
        "What do plants need from the air to make their food?",
        "carbon dioxide",
        ["oxygen", "nitrogen", "smoke"],
    ),
    ("Which planet is closest to the Sun?", "Mercury", ["Venus", "Mars", "Jupiter"]),
    ("Water freezes at what temperature in degrees Celsius?", "0", ["100", "10", "-40"]),
    (
        "What is the largest ocean on Earth?",
        "the Pacific Ocean",
        ["the Atlantic Ocean", "the Indian Ocean", "the Arctic Ocean"],
    ),
    (
        "Which gas do humans breathe out that plants use?",
        "carbon dioxide",
        ["helium", "oxygen", "hydrogen"],
    ),
    ("How many legs does a spider have?", "eight", ["six", "four", "ten"]),
    ("What force pulls objects toward the ground?", "gravity", ["magnetism", "friction", "wind"]),
    (
        "Which organ pumps blood through the body?",
        "the heart",
        ["the lungs", "the liver", "the stomach"],
    ),
    (
        "What is the main source of energy for life on Earth?",
        "the Sun",
        ["the Moon", "volcanoes", "the wind"],
    ),
    ("What state of matter has a fixed shape?", "solid", ["liquid", "gas", "steam"]),
    ("Which animal is a mammal?", "a whale", ["a shark", "a trout", "a frog"]),
    ("What do bees collect from flowers to make honey?", "nectar", ["sand", "leaves", "bark"]),
    (
        "Which instrument measures temperature?",
        "a thermometer",
        ["a barometer", "a ruler", "a compass"],
    ),
    (
        "What is the boiling point of water at sea level in degrees Celsius?",
        "100",
        ["50", "0", "212"],
    ),
    (
        "Which part of the plant takes in water from the soil?",
        "the roots",
        ["the flowers", "the leaves", "the seeds"],
    ),
    (
        "The Moon shines at night because it",
        "reflects light from the Sun",
        ["makes its own light", "is on fire", "absorbs starlight"],
    ),
    ("Which of these is a renewable source of energy?", "wind", ["coal", "oil", "natural gas"]),
    ("What is the capital of France?", "Paris", ["Lyon", "Berlin", "Madrid"]),
    ("How many days are there in a leap year?", "366", ["365", "364", "360"]),
    ("What is the chemical symbol for water?", "H2O", ["CO2", "O2", "NaCl"]),
    (
        "If you drop a glass on a stone floor, it will most likely",
        "break",
        ["float", "melt", "grow"],
    ),
    (
        "You put on a coat because it is",
        "cold outside",
        ["sunny and hot", "a holiday", "dinner time"],
    ),
    ("Ice cream left in the sun will", "melt", ["freeze", "grow larger", "turn into stone"]),
    (
        "To see in a dark room you should",
        "turn on a light",
        ["close your eyes", "open the fridge", "eat a snack"],
    ),
    ("A person who is thirsty wants to", "drink water", ["take a nap", "read a book", "buy a hat"]),
    ("Which is the longest?", "a kilometre", ["a metre", "a centimetre", "a millimetre"]),
    ("What comes after Tuesday?", "Wednesday", ["Monday", "Friday", "Sunday"]),
    ("How many minutes are in an hour?", "60", ["100", "30", "24"]),
    ("Which metal is attracted to a magnet?", "iron", ["copper", "gold", "aluminium"]),
    ("What do caterpillars turn into?", "butterflies", ["spiders", "beetles", "worms"]),
    ("Which season comes after winter?", "spring", ["autumn", "summer", "winter"]),
    ("What is frozen water called?", "ice", ["steam", "rain", "fog"]),
    ("Which sense do we use our ears for?", "hearing", ["smell", "taste", "sight"]),
    ("What shape has three sides?", "a triangle", ["a square", "a circle", "a hexagon"]),
    ("Which is a source of protein?", "beans", ["sugar", "butter", "salt"]),
    ("Sound travels fastest through", "solids", ["a vacuum", "gases", "empty space"]),
    (
        "Why do we wear seat belts in cars?",
        "to stay safe in a crash",
        ["to look smart", "to keep warm", "to drive faster"],
    ),
    ("What do you call a baby cat?", "a kitten", ["a puppy", "a calf", "a foal"]),
    ("What is 7 times 8?", "56", ["54", "48", "64"]),
    ("Which direction does the Sun rise in?", "the east", ["the west", "the north", "the south"]),
]


def _shuffled(q: str, correct: str, wrong: list[str], rng: random.Random) -> MCItem:
    options = [correct] + list(wrong)
    rng.shuffle(options)
    return MCItem(q, tuple(options), options.index(correct))


BUILTIN: tuple[MCItem, ...] = tuple(
    _shuffled(q, c, w, random.Random(i)) for i, (q, c, w) in enumerate(_B)
)


@dataclass(frozen=True)
class MCFormat:
    name: str  # shown in tables
    template: str  # the context; fields {question} and {choices} (the options listed, one per line)
    option_prefix: str = " "  # put before every option as it is scored


FORMATS: tuple[MCFormat, ...] = (
    MCFormat("Question/Answer", "Question: {question}\nAnswer:"),
    MCFormat("bare", "{question}"),
    MCFormat("choices listed", "{question}\nChoices:\n{choices}\nThe correct choice is:"),
)


def render(item: MCItem, fmt: MCFormat = FORMATS[0]) -> str:
    """The context the options are scored after."""
    choices = "\n".join(f"- {o}" for o in item.options)
    return fmt.template.format(question=item.question, choices=choices)


def score_items(
    model,
    encode: Callable[[str], list[int]],
    items: Sequence[MCItem],
    *,
    fmt: MCFormat = FORMATS[0],
) -> dict:
    """acc, acc_norm (per character), acc_per_token, and how often each rule picked the shortest
    option in tokens ("picks_shortest", "_norm", "_per_token"): the length bias."""
    if not items:
        raise ValueError("no items to score")
    items = items[: cap_steps(len(items))]  # fewer in a rehearsal (LLMCOURSE_REHEARSAL)
    rules = {"": "choice", "_norm": "choice_norm", "_per_token": "choice_per_token"}
    hits = dict.fromkeys(rules, 0)
    short = dict.fromkeys(rules, 0)
    for item in items:
        out = multiple_choice(
            model, encode, render(item, fmt), options=item.options, prefix=fmt.option_prefix
        )
        shortest = min(out["lengths"])
        for suffix, key in rules.items():
            hits[suffix] += out[key] == item.answer
            short[suffix] += out["lengths"][out[key]] == shortest
    n = len(items)
    return {
        **{f"acc{s}": hits[s] / n for s in rules},
        **{f"picks_shortest{s}": short[s] / n for s in rules},
    }


def load_arc_easy(n: int = 300, seed: int = 0) -> list[MCItem]:
    """`n` items of ARC-Easy's test split (allenai/ai2_arc); offline (and not cached), BUILTIN after
    one fallback line (`data.warn_fallback`)."""
    rows = data.hub_table(
        "allenai/ai2_arc", "ARC-Easy", "test", instead=f"the {len(BUILTIN)} built-in items"
    )
    if rows is None:
        return list(BUILTIN)
    random.Random(seed).shuffle(rows)
    out = []
    for r in rows:
        labels, texts = r["choices"]["label"], r["choices"]["text"]
        if r["answerKey"] in labels:
            out.append(
                MCItem(r["question"], tuple(texts), labels.index(r["answerKey"]), "ARC-Easy")
            )
        if len(out) == n:
            break
    return out


def choose_normalised(scores: list[float], lengths: list[int]) -> int:
    """choose_normalised(scores: summed log-probs per option, lengths: tokens per option) -> the index of
    the best option by average log-prob per token (the first one on ties): acc_per_token's rule.
    Given character counts as `lengths`, the same code gives lm-evaluation-harness's acc_norm."""
    per_token = [s / n for s, n in zip(scores, lengths)]
    return max(range(len(per_token)), key=per_token.__getitem__)
