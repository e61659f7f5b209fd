"""The exercises of notebook 02 (notebooks/02_word_vectors.ipynb).

`exercises.check("02.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from llmcourse.course.exercises import register, torch_generator


# ---------------------------------------------------------------- llmcourse/tasks/embeddings_eval.py
def _analogy_inputs(r):
    rng = np.random.default_rng(r.randrange(2**32))
    vocab = r.randint(5, 30)
    a, b, c = rng.choice(vocab, size=3, replace=False)
    return rng.standard_normal((vocab, r.randint(2, 10))), int(a), int(b), int(c)


def three_cos_add(vectors: np.ndarray, *, a: int, b: int, c: int) -> int:
    """three_cos_add(vectors, a, b, c) -> the row index x (not a, b or c) that maximises
    cos(x, b) - cos(x, a) + cos(x, c) for the word vectors in the rows of `vectors` (V, D)."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ unit[b] - unit @ unit[a] + unit @ unit[c]
    scores[[a, b, c]] = -np.inf
    return int(scores.argmax())


register(
    "02.three_cos_add",
    three_cos_add,
    inputs=_analogy_inputs,
    compare="exact",
    hint="normalise the rows first, and never answer a, b or c",
)


# ---------------------------------------------------------------- llmcourse/word2vec.py
def keep_probability(count: int, total: int, sample: float) -> float:
    """keep_probability(count, total, sample) -> the probability that subsampling keeps one occurrence
    of a word seen `count` times in `total` words: min(1, sqrt(t/f) + t/f) with f = count/total."""
    f = count / total
    return min(1.0, math.sqrt(sample / f) + sample / f)


register(
    "02.keep_probability",
    keep_probability,
    inputs=lambda r: (r.randint(1, 10**6), 10**6, r.choice([1e-3, 1e-4, 1e-5])),
    rtol=1e-9,
    atol=0.0,
    hint="f = count / total; the result is never above 1",
)


def _sgns_inputs(r):
    g = torch_generator(r)
    d, k = r.randint(2, 8), r.randint(1, 6)
    return torch.randn(d, generator=g), torch.randn(d, generator=g), torch.randn(k, d, generator=g)


def sgns_loss(v: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor) -> torch.Tensor:
    """sgns_loss(v, u_pos, u_neg) -> the skip-gram negative-sampling loss of one pair, a 0-d tensor:
    -log σ(u_pos·v) - Σ_k log σ(-u_neg[k]·v), for v (D,), u_pos (D,), u_neg (K, D)."""
    return -F.logsigmoid(u_pos @ v) - F.logsigmoid(-(u_neg @ v)).sum()


register(
    "02.sgns_loss",
    sgns_loss,
    inputs=_sgns_inputs,
    rtol=1e-5,
    atol=1e-6,
    hint="-log σ(x) is softplus(-x); the negatives' scores enter with a minus sign",
)
