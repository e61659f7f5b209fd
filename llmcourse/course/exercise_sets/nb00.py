"""The exercises of notebook 00 (notebooks/00_start_here.ipynb).

`exercises.check("00.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

from llmcourse.cost.memory import gpt_params
from llmcourse.course.exercises import register


# ---------------------------------------------------------------- memory by hand
BYTES_PER_PARAM = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 0.5}


def _param_count(rng: random.Random) -> int:
    return rng.randint(1, 999) * 10 ** rng.randint(5, 8)  # 100K .. 100B, always even


def memory_inference(n_params: int, precision: str) -> int:
    """memory_inference(n_params, precision) -> bytes for the weights alone, where precision is one
    of "fp32", "fp16", "bf16", "int8", "int4" (4, 2, 2, 1 and 0.5 bytes per parameter)."""
    return int(n_params * BYTES_PER_PARAM[precision])


register(
    "00.memory_inference",
    memory_inference,
    compare="exact",
    inputs=lambda rng: (_param_count(rng), rng.choice(sorted(BYTES_PER_PARAM))),
    fixed=tuple((7_000_000_000, p) for p in BYTES_PER_PARAM),
)


def adam_state_bytes(n_params: int, master_weights: bool) -> int:
    """adam_state_bytes(n_params, master_weights) -> bytes of optimizer state for Adam(W): the two
    moment estimates m and v in fp32, plus an fp32 master copy of the weights when
    `master_weights` is True (mixed-precision training keeps one)."""
    return n_params * (8 + (4 if master_weights else 0))


register(
    "00.adam_state_bytes",
    adam_state_bytes,
    compare="exact",
    inputs=lambda rng: (_param_count(rng), rng.random() < 0.5),
    fixed=((1_000_000, False), (1_000_000, True)),
)


# ---------------------------------------------------------------- llmcourse/cost/memory.py
def _shape_inputs(rng: random.Random) -> tuple[int, int, int, int, bool]:
    return (
        rng.randint(1, 12),
        16 * rng.randint(1, 32),
        rng.randint(50, 50_000),
        2 ** rng.randint(4, 11),
        rng.random() < 0.5,
    )


def _gpt_params_exercise(
    n_layer: int, n_embd: int, vocab_size: int, block_size: int, tied: bool
) -> int:
    """gpt_params(n_layer, n_embd, vocab_size, block_size, tied) -> int: the parameters of a
    GPT-2-style decoder (biases, learned positions, LayerNorms, a 4x MLP, a final LayerNorm), whose
    output head shares the token embedding when `tied` is True and is a separate V x d matrix if not."""
    return gpt_params(n_layer, n_embd, vocab_size, block_size=block_size, tied=tied)


register(
    "00.gpt_params",
    _gpt_params_exercise,
    inputs=_shape_inputs,
    compare="exact",
    fixed=((12, 768, 50257, 1024, True), (1, 2, 3, 4, False)),
    hint="per block: attention q,k,v (d*3d + 3d) and output (d*d + d), MLP d*4d + 4d and 4d*d + d, two "
    "LayerNorms (2d each); then token and position embeddings, the final LayerNorm (2d), and V*d "
    "more when the head is not tied",
)
