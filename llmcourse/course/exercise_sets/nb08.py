"""The exercises of notebook 08 (notebooks/08_gpt_pretraining.ipynb).

`exercises.check("08.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import math

from llmcourse.course.exercises import register
from llmcourse.gpt import gpt_num_params
from llmcourse.pretraining import PEAK_TFLOPS, bits_per_char, lr_schedule, train_seconds


# ---------------------------------------------------------------- llmcourse/gpt.py
def _shape_inputs(rng) -> tuple[int, int, int, int]:
    return (
        rng.randint(2, 60_000),
        rng.choice([8, 64, 256, 1024]),
        rng.randint(1, 24),
        rng.choice([16, 64, 128, 384, 768, 1024]),
    )


register(
    "08.num_params",
    gpt_num_params,
    inputs=_shape_inputs,
    compare="exact",
    fixed=((65, 256, 6, 384), (50257, 1024, 12, 768), (2, 1, 1, 4)),
    hint="per block: two LayerNorms (weight + bias each), qkv C->3C and proj C->C, MLP C->4C->C, "
    "all with biases; plus token and position embeddings and the final LayerNorm; the head "
    "is tied (no new parameters)",
)


# ---------------------------------------------------------------- llmcourse/pretraining.py
register(
    "08.bits_per_char",
    bits_per_char,
    compare="allclose",
    rtol=1e-9,
    atol=0.0,
    inputs=lambda rng: (rng.uniform(0.5, 6.0), rng.randint(100, 10**6), rng.randint(100, 10**6)),
    fixed=((math.log(2), 10, 10),),
    hint="nats -> bits is a division by ln 2; then spread the total over characters, not tokens",
)


def estimate_train_seconds(
    n_params: int, n_tokens: int, *, peak_tflops: float, mfu: float
) -> float:
    """estimate_train_seconds(n_params, n_tokens, peak_tflops, mfu) -> seconds of training at 6·N·D FLOPs."""
    return train_seconds(6.0 * n_params * n_tokens, peak_tflops, mfu)


register(
    "08.train_seconds",
    estimate_train_seconds,
    compare="allclose",
    rtol=1e-9,
    atol=0.0,
    inputs=lambda rng: (
        rng.randint(10**6, 10**10),
        rng.randint(10**7, 10**11),
        rng.choice(list(PEAK_TFLOPS.values())),
        rng.choice([0.1, 0.3, 0.5]),
    ),
    fixed=((10**6, 10**9, 100.0, 0.5),),
    hint="6 * n_params * n_tokens FLOPs, divided by peak_tflops * 1e12 * mfu FLOP/s",
)


def _schedule_inputs(rng) -> tuple[int, int, int, float, float]:
    max_steps = rng.randint(2, 5000)
    warmup = rng.randint(0, max_steps // 2)
    return (
        rng.randint(0, max_steps + 10),
        max_steps,
        warmup,
        rng.choice([1e-3, 6e-4, 3e-4]),
        rng.choice([0.1, 0.0]),
    )


register(
    "08.lr_schedule",
    lr_schedule,
    compare="allclose",
    rtol=1e-9,
    atol=1e-15,
    inputs=_schedule_inputs,
    fixed=(
        (0, 100, 10, 1e-3, 0.1),
        (9, 100, 10, 1e-3, 0.1),
        (55, 100, 10, 1e-3, 0.1),
        (100, 100, 10, 1e-3, 0.1),
        (150, 100, 10, 1e-3, 0.1),
        (0, 10, 0, 1.0, 0.0),
    ),
    hint="warmup: lr * (step + 1) / warmup_steps; then p = (step - warmup) / (max_steps - warmup), "
    "capped at 1, and floor + (lr - floor) * (1 + cos(pi * p)) / 2 with floor = lr * min_lr_ratio",
)
