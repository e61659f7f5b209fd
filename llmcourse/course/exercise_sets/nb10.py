"""The exercises of notebook 10 (notebooks/10_llama.ipynb).

`exercises.check("10.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

import torch

from llmcourse.course.exercises import register, torch_generator
from llmcourse.llama import apply_rope, repeat_kv, rms_norm, rope_cos_sin, rope_frequencies


# ---------------------------------------------------------------- llmcourse/llama.py
register(
    "10.apply_rope",
    apply_rope,
    inputs=lambda rng: _rope_inputs(rng),
    rtol=1e-5,
    atol=1e-5,
    hint="split the head into halves x1, x2 (pair i is (x1[i], x2[i])); rotate_half(x) = cat(-x2, x1); "
    "the result is x * cos + rotate_half(x) * sin, with cos/sin broadcast over batch and heads",
)


def _rope_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch_generator(rng)
    B, H, T, hd = rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 6), 2 * rng.randint(1, 4)
    cos, sin = rope_cos_sin(rope_frequencies(hd, theta=rng.choice([100.0, 10000.0])), T + 3)
    return torch.randn(B, H, T, hd, generator=g), cos[3:], sin[3:]


register(
    "10.repeat_kv",
    repeat_kv,
    inputs=lambda rng: _repeat_inputs(rng),
    compare="exact",
    hint="(B, n_kv, T, hd) -> (B, n_kv * n_rep, T, hd) with each kv head repeated n_rep times *in place* "
    "(head 0, 0, 1, 1 for n_rep=2), e.g. x[:, :, None].expand(B, n_kv, n_rep, T, hd).reshape(...) "
    "or torch.repeat_interleave(x, n_rep, dim=1)",
)


def _repeat_inputs(rng: random.Random) -> tuple[torch.Tensor, int]:
    g = torch_generator(rng)
    return torch.randn(
        rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 5), 4, generator=g
    ), rng.randint(1, 4)


def _norm_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor, float]:
    g = torch_generator(rng)
    shape = (rng.randint(1, 3), rng.randint(1, 5), rng.randint(1, 9))
    scale = rng.choice([1e-3, 1.0, 50.0])
    return (
        torch.randn(*shape, generator=g) * scale,
        torch.randn(shape[-1], generator=g),
        rng.choice([1e-6, 1e-5]),
    )


register(
    "10.rms_norm",
    rms_norm,
    inputs=_norm_inputs,
    rtol=1e-4,
    atol=1e-5,
    fixed=((torch.zeros(1, 3), torch.ones(3), 1e-5),),
    hint="divide x by sqrt(mean(x², last dim) + eps), then multiply by weight; no mean is subtracted "
    "and there is no bias (torch.rsqrt helps)",
)
