"""The exercises of notebook 09 (notebooks/09_generation.ipynb).

`exercises.check("09.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

import torch

from llmcourse.cost.inference_cost import kv_cache_bytes
from llmcourse.course.exercises import register, torch_generator
from llmcourse.generate import top_k_probs, top_p_filter
from llmcourse.quantize import int8_roundtrip


# ---------------------------------------------------------------- llmcourse/cost/inference_cost.py
register(
    "09.kv_cache_bytes",
    kv_cache_bytes,
    compare="exact",
    inputs=lambda rng: (
        rng.randint(1, 80),
        rng.randint(1, 64),
        rng.randint(1, 8192),
        rng.choice([64, 768, 4096, 8192]),
        rng.choice([1, 2, 4]),
    ),
    fixed=((1, 1, 1, 1, 1),),
    hint="keys AND values: 2 x n_layer x batch x seq_len x n_embd x bytes",
)


def _probs_inputs(rng: random.Random) -> tuple[torch.Tensor, float]:
    g = torch_generator(rng)
    logits = torch.randn(rng.randint(1, 3), rng.randint(2, 12), generator=g) * rng.choice(
        [0.5, 2.0, 5.0]
    )
    return logits.softmax(dim=-1), rng.choice([0.1, 0.5, 0.8, 0.9, 0.95, 1.0])


register(
    "09.top_p_filter",
    top_p_filter,
    inputs=_probs_inputs,
    atol=1e-6,
    fixed=(
        (torch.tensor([[0.5, 0.3, 0.2]]), 0.45),
        (torch.tensor([[0.1, 0.6, 0.3]]), 0.7),
        (torch.tensor([[0.25, 0.25, 0.5]]), 1.0),
    ),
    hint="sort descending; keep a token if the mass of the tokens ranked ABOVE it is still < p; "
    "the most likely token is always kept; renormalise what is kept",
)


# ---------------------------------------------------------------- llmcourse/generate.py
def _top_k_inputs(rng: random.Random) -> tuple[torch.Tensor, int]:
    g = torch_generator(rng)
    B, V = rng.randint(1, 4), rng.randint(2, 12)
    if rng.random() < 0.5:  # small integers: ties with the k-th largest value are common
        logits = torch.randint(-3, 4, (B, V), generator=g).float()
    else:
        logits = torch.randn(B, V, generator=g) * rng.choice([1.0, 5.0])
    return logits, rng.randint(1, V + 3)  # k > V happens too


register(
    "09.top_k_probs",
    top_k_probs,
    inputs=_top_k_inputs,
    rtol=1e-5,
    atol=1e-6,
    fixed=(
        (torch.tensor([[2.0, 1.0, 2.0, 0.5]]), 1),
        (torch.tensor([[0.3, -1.0, 2.0], [1.0, 1.0, 1.0]]), 5),
    ),
    hint="per row, the k-th largest logit is torch.topk(logits, min(k, V)).values[:, -1:]; logits strictly "
    "below it become -inf (ties with it stay), then softmax; k >= V keeps every token",
)


# ---------------------------------------------------------------- llmcourse/quantize.py
def _weight_inputs(rng: random.Random) -> tuple[torch.Tensor]:
    w = torch.randn(rng.randint(1, 6), rng.randint(1, 10), generator=torch_generator(rng))
    w = w * rng.choice([0.02, 1.0, 30.0])
    if rng.random() < 0.3:  # one outlier row, as in real weight matrices
        w[rng.randrange(w.size(0))] *= 100.0
    return (w,)


register(
    "09.int8_roundtrip",
    int8_roundtrip,
    inputs=_weight_inputs,
    rtol=1e-5,
    atol=1e-7,
    fixed=(
        (torch.tensor([[0.6, -1.0, 0.25], [0.0, 0.0, 0.0]]),),
        (torch.tensor([[1.0, 100.0], [0.01, -0.02]]),),
    ),
    hint="one scale per ROW, s = max|w_row| / 127; q = round(w / s) (round, do not truncate with .to(int8)); "
    "return q * s; an all-zero row must stay zero, not 0 / 0 = NaN",
)
