"""The exercises of notebook 04 (notebooks/04_attention.ipynb).

`exercises.check("04.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import torch

from llmcourse.attention import attention, causal_mask, padding_mask, split_heads
from llmcourse.course.exercises import register, torch_generator


# ---------------------------------------------------------------- llmcourse/attention.py
register(
    "04.causal_mask",
    causal_mask,
    inputs=lambda rng: (rng.randint(1, 12),),
    compare="exact",
    fixed=((1,),),
)


def _lengths_inputs(rng) -> tuple[torch.Tensor, int]:
    T = rng.randint(1, 10)
    return torch.tensor([rng.randint(0, T) for _ in range(rng.randint(1, 4))]), T


register(
    "04.padding_mask",
    padding_mask,
    inputs=_lengths_inputs,
    compare="exact",
    fixed=((torch.tensor([1, 3, 0]), 3),),
    hint="sequence b has real tokens at positions 0 .. lengths[b] - 1, so t < lengths[b] (not <=); "
    "compare a (1, T) arange with lengths as a (B, 1) column",
)


def _split_inputs(rng) -> tuple[torch.Tensor, int]:
    n_head = rng.randint(1, 4)
    shape = (rng.randint(1, 3), rng.randint(1, 6), n_head * rng.randint(1, 4))
    return torch.randn(shape, generator=torch_generator(rng)), n_head


register(
    "04.split_heads",
    split_heads,
    inputs=_split_inputs,
    compare="exact",
    fixed=((torch.arange(24.0).view(1, 3, 8), 2), (torch.arange(24.0).view(2, 3, 4), 4)),
    hint="each token's C features are n_head consecutive chunks of C // n_head: view as "
    "(B, T, n_head, C // n_head), then transpose(1, 2); a direct view(B, n_head, T, ...) mixes tokens",
)


def _attn_inputs(rng):
    g = torch_generator(rng)
    B, Tq, Tk, d = (
        rng.randint(1, 3),
        rng.randint(1, 6),
        rng.randint(1, 6),
        rng.choice([1, 4, 16, 64]),
    )
    q, k, v = (torch.randn(B, T, d, generator=g) for T in (Tq, Tk, Tk))
    mask = torch.rand(B, Tq, Tk, generator=g) < 0.7
    mask[..., 0] = True  # every query sees at least one key
    return q, k, v, mask


register(
    "04.attention",
    attention,
    inputs=_attn_inputs,
    hint="divide the scores by sqrt(d) (d = q.shape[-1]); "
    "fill blocked scores with -inf *before* the softmax over the last dim",
)
