"""The exercises of notebook 17 (notebooks/17_many_gpus.ipynb).

`exercises.check("17.<name>", fn)` imports this module on first use. Each reference is the package
function that does the job, imported from its topic module; a function defined here exists only for
its exercise.
"""

from __future__ import annotations

import random

from llmcourse.cost.zero import STAGES, zero_bytes
from llmcourse.course.exercises import register
from llmcourse.distributed import micro_batch_plan, sampler_indices
from llmcourse.fsdp import shard_rows


# ---------------------------------------------------------------- llmcourse/cost/zero.py
def _zero_inputs(rng: random.Random) -> tuple[float, int, str]:
    return (
        rng.randint(1, 999) * 10.0 ** rng.randint(6, 9),
        rng.choice([1, 2, 4, 8, 16, 64, 512]),
        rng.choice(STAGES),
    )


register(
    "17.zero_bytes",
    zero_bytes,
    inputs=_zero_inputs,
    rtol=1e-9,
    atol=0.0,
    fixed=(
        (7.5e9, 64, "ddp"),
        (7.5e9, 64, "zero1"),
        (7.5e9, 64, "zero2"),
        (7.5e9, 64, "zero3"),
        (1e9, 1, "zero3"),
    ),
    hint="ZeRO-1 shards only the 12 bytes of optimizer state, ZeRO-2 also the 2 of gradients, "
    "ZeRO-3 also the 2 of weights; divide the sharded bytes by n_gpus",
)


# ---------------------------------------------------------------- llmcourse/distributed.py
def _plan_inputs(rng: random.Random) -> tuple[int, int, int]:
    n_gpus = rng.choice([1, 2, 4, 8, 16])
    return n_gpus * rng.randint(1, 64), n_gpus, rng.randint(1, 32)


register(
    "17.micro_batch_plan",
    micro_batch_plan,
    inputs=_plan_inputs,
    compare="exact",
    fixed=((96, 4, 16), (64, 8, 8), (14, 2, 4), (512, 8, 1000)),
    hint="the micro-batch must divide the per-GPU share global_batch / n_gpus exactly; take the "
    "largest such divisor that fits, then accumulate share / micro_batch times",
)


def _sampler_inputs(rng: random.Random) -> tuple[int, int, int]:
    world = rng.choice([1, 2, 3, 4, 8])
    return rng.randint(1, 40), world, rng.randrange(world)


register(
    "17.sampler_indices",
    sampler_indices,
    inputs=_sampler_inputs,
    compare="exact",
    fixed=((8, 2, 1), (10, 4, 3), (2, 5, 4), (7, 1, 0)),
    hint="strided, not contiguous: rank r takes indices r, r + world_size, ...; first pad the list "
    "0..n-1 with its own first indices up to a multiple of world_size",
)


# ---------------------------------------------------------------- llmcourse/fsdp.py
def _rows_inputs(rng: random.Random) -> tuple[int, int, int]:
    world = rng.choice([1, 2, 3, 4, 8, 16])
    return rng.randint(1, 100), world, rng.randrange(world)


register(
    "17.shard_rows",
    shard_rows,
    inputs=_rows_inputs,
    compare="exact",
    fixed=((8, 2, 1), (5, 4, 2), (5, 4, 3), (50257, 8, 7), (3, 8, 5)),
    hint="torch.chunk's rule: every piece has ceil(dim0 / world_size) rows except the last; ranks "
    "after the last piece hold nothing, (dim0, dim0)",
)
