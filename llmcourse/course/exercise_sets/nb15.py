"""The exercises of notebook 15 (notebooks/15_prompting_rag.ipynb).

`exercises.check("15.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

import torch

from llmcourse.course.docs import reciprocal_rank
from llmcourse.course.exercises import register, torch_generator
from llmcourse.icl import Labeled, PromptFormat, few_shot_prompt
from llmcourse.rag import chunk_words, top_k_cosine


# ---------------------------------------------------------------- llmcourse/course/docs.py
def _rr_inputs(rng: random.Random) -> tuple[list[str], str]:
    ids = [f"doc{i}" for i in range(6)]
    ranked = [
        rng.choice(ids) for _ in range(rng.randint(0, 8))
    ]  # repeats allowed: chunks of one file
    return ranked, rng.choice(ids)


register(
    "15.reciprocal_rank",
    reciprocal_rank,
    inputs=_rr_inputs,
    compare="exact",
    fixed=(([], "a"), (["a"], "a"), (["b", "a", "a"], "a"), (["b", "c"], "a")),
)


# ---------------------------------------------------------------- llmcourse/icl.py
def _fs_inputs(rng: random.Random) -> tuple[list[tuple[str, str]], str]:
    words = "fine dull great awful slow moving sharp flat".split()
    text = lambda: " ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))  # noqa: E731
    return [
        (text(), rng.choice(["positive", "negative"])) for _ in range(rng.randint(0, 4))
    ], text()


def few_shot_exercise(demos: list[tuple[str, str]], query: str) -> str:
    """few_shot_prompt(demos [(text, label)], query) -> str: each demo as "Review: {text}\\nSentiment: {label}",
    then "Review: {query}\\nSentiment:", joined by blank lines, no instruction."""
    fmt = PromptFormat(instruction="")
    return few_shot_prompt([Labeled(t, lab) for t, lab in demos], query, fmt)


register(
    "15.few_shot_prompt",
    few_shot_exercise,
    inputs=_fs_inputs,
    compare="exact",
    fixed=(([], "ok"), ([("a", "positive")], "b")),
)


# ---------------------------------------------------------------- llmcourse/rag.py
def _chunk_inputs(rng: random.Random) -> tuple[str, int, int]:
    max_words = rng.randint(1, 8)
    words = [f"w{i}" for i in range(rng.randint(0, 30))]
    return " ".join(words), max_words, rng.randint(0, max_words - 1)


register(
    "15.chunk_words",
    chunk_words,
    inputs=_chunk_inputs,
    compare="exact",
    fixed=(
        ("a b c d e", 3, 1),
        ("a b c d e f g", 3, 1),
        ("", 4, 1),
        ("a b", 5, 2),
        ("a b c d", 2, 0),
    ),
    hint="step forward by max_words - overlap, and stop once a window reaches the last word "
    "(a window lying inside the previous one is not a new chunk)",
)


def _top_k_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, int]:
    g = torch_generator(rng)
    n, d = rng.randint(1, 12), rng.randint(2, 16)
    norms = torch.exp(
        2 * torch.randn(n, 1, generator=g)
    )  # lengths from ~0.02 to ~50: dot product != cosine
    docs = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1) * norms
    return torch.randn(d, generator=g) * rng.choice([0.1, 1.0, 10.0]), docs, rng.randint(1, n)


register(
    "15.top_k_cosine",
    top_k_cosine,
    inputs=_top_k_inputs,
    compare="exact",
    fixed=(
        (torch.tensor([1.0, 0.0]), torch.tensor([[10.0, 10.0], [1.0, 0.1], [0.0, 1.0]]), 2),
        (torch.tensor([0.0, 2.0]), torch.tensor([[3.0, 0.0], [0.0, 0.5], [-1.0, 1.0]]), 3),
    ),
    hint="cosine similarity divides each dot product by both vectors' lengths: a long document "
    "vector must not win just for being long; best first means descending order",
)
