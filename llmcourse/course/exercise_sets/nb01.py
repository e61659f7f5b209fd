"""The exercises of notebook 01 (notebooks/01_ngram.ipynb).

`exercises.check("01.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import math
import random

from llmcourse.course.exercises import register


# ---------------------------------------------------------------- llmcourse/ngram.py
def add_k_prob(count_hw: int, count_h: int, vocab_size: int, *, k: float) -> float:
    """add_k_prob(count_hw, count_h, vocab_size, k) -> P(w | h) with add-k smoothing, given the
    n-gram count c(h, w), the context count c(h) and the vocabulary size V."""
    return (count_hw + k) / (count_h + k * vocab_size)


register(
    "01.add_k_prob",
    add_k_prob,
    inputs=lambda r: (
        r.randint(0, 9),
        r.randint(10, 99),
        r.randint(2, 999),
        r.choice([1.0, 0.5, 0.01]),
    ),
    rtol=1e-9,
    atol=0.0,
    hint="every one of the V words gets k extra counts, so the context total grows by k * V",
)


def perplexity_of(probs: list[float]) -> float:
    """perplexity_of(probs) -> the perplexity of a text whose tokens got these probabilities:
    exp(-(1/N) sum log p)."""
    return math.exp(-sum(math.log(p) for p in probs) / len(probs))


register(
    "01.perplexity",
    perplexity_of,
    inputs=lambda r: ([r.uniform(1e-4, 1.0) for _ in range(r.randint(1, 20))],),
    rtol=1e-9,
    atol=0.0,
    hint="average the log-probabilities first, then exponentiate the negative",
)


def _bigram_inputs(r: random.Random) -> tuple[list[tuple[str, str]], str]:
    bigrams = [(r.choice("abcdef"), r.choice("abcd")) for _ in range(r.randint(1, 30))]
    return bigrams, r.choice("abcd")


def continuation_count(bigrams: list[tuple[str, str]], word: str) -> int:
    """continuation_count(bigrams, word) -> N1+(. word): how many *different* words precede `word`
    in the list of bigram tokens (Kneser–Ney's unigram statistic)."""
    return len({a for a, b in bigrams if b == word})


register(
    "01.continuation_count",
    continuation_count,
    inputs=_bigram_inputs,
    compare="exact",
    hint="count distinct left neighbours: a set of the bigrams' first words, not a list",
)
