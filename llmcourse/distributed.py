"""Data parallelism: the same training loop on several processes (DistributedDataParallel).

`torchrun --nproc_per_node=N` starts N copies of a script and tells each its RANK and WORLD_SIZE
through environment variables. Every copy holds the whole model; each takes a different slice of the
global batch, computes its gradients, and DDP averages the gradients across processes (an all-reduce)
during backward, so every copy takes the identical optimizer step. With equal slices, the average of
the slice gradients equals the gradient of the whole batch: N processes train exactly like one
process with N times the batch (up to floating-point summation order) — tests/test_distributed.py
checks this with two CPU processes.

Backends: NCCL between GPUs, gloo on CPUs (what the course's CPU test and notebook 17 use).
Sharding instead of copying (FSDP2 = ZeRO-3) is `llmcourse.fsdp`, which reuses `setup` and `shard`;
the DeepSpeed config is `llmcourse.deepspeed_config`. Left out: tensor and pipeline parallelism
(explained in notebook 17).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0  # this process's index among all processes
    world_size: int = 1  # how many processes train together
    local_rank: int = 0  # index on this machine (which GPU to use)

    @property
    def is_main(self) -> bool:
        """Only the main process prints, draws and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(backend: str | None = None) -> DistEnv:
    """Join the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistEnv(rank=rank, world_size=world, local_rank=local)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard(batch, env: DistEnv):
    """This process's contiguous slice (along dim 0) of a global batch: a tensor, tuple or dict."""
    if not env.enabled:
        return batch
    if isinstance(batch, torch.Tensor):
        if batch.size(0) % env.world_size:
            raise ValueError(
                f"global batch of {batch.size(0)} does not split evenly over {env.world_size} "
                "processes: make the batch size a multiple of the number of processes"
            )
        per = batch.size(0) // env.world_size
        return batch[env.rank * per : (env.rank + 1) * per]
    if isinstance(batch, dict):
        return {k: shard(v, env) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(v, env) for v in batch)
    return batch


def mean_over_processes(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """The average of a scalar over all processes (for logging the global loss)."""
    if not env.enabled:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / env.world_size


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


# ------------------------------------------------------------------------- checked by notebook 17's exercises
def micro_batch_plan(global_batch: int, n_gpus: int, max_micro_batch: int) -> tuple[int, int]:
    """micro_batch_plan(global_batch, n_gpus, max_micro_batch) -> (micro_batch, accum_steps): the
    largest micro-batch per GPU of at most `max_micro_batch` sequences such that
    n_gpus * micro_batch * accum_steps == global_batch (global_batch is a multiple of n_gpus)."""
    share = global_batch // n_gpus  # sequences per GPU per optimizer step
    micro = max(m for m in range(1, min(share, max_micro_batch) + 1) if share % m == 0)
    return micro, share // micro


def sampler_indices(n: int, world_size: int, rank: int) -> list[int]:
    """sampler_indices(n, world_size, rank) -> list of int: the dataset indices rank `rank` gets from
    DistributedSampler(shuffle=False, drop_last=False): 0..n-1 padded by repeating from the start to a
    multiple of world_size, then every world_size-th index starting at `rank`."""
    total = math.ceil(n / world_size) * world_size  # every rank gets the same number of samples
    padded = [i % n for i in range(total)]  # wraps around as often as needed (n < world_size too)
    return padded[rank::world_size]
