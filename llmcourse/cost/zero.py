"""Memory per GPU under data parallelism: DDP and the three ZeRO stages (= FSDP's sharding strategies).

With plain data parallelism (DDP) every GPU holds a full copy of the *model states*: with mixed
precision and Adam, 2 bytes of 16-bit weights + 2 of 16-bit gradients + K = 12 of optimizer state
(fp32 master weights 4, Adam m 4, Adam v 4) per parameter. ZeRO (Rajbhandari et al. 2020) removes
the redundancy by giving each of the N_d GPUs one 1/N_d shard of a state instead of a copy:

    stage          what is sharded                      bytes per GPU (Psi parameters)
    ddp            nothing                              (2 + 2 + K) Psi
    zero1  (P_os)  optimizer states                     (2 + 2) Psi + K Psi / N_d
    zero2  (P_os+g)  + gradients                        2 Psi + (2 + K) Psi / N_d
    zero3  (P_os+g+p) + the 16-bit weights              (2 + 2 + K) Psi / N_d

The paper's Figure 1 (Psi = 7.5B, N_d = 64, K = 12): 120 GB, 31.4 GB, 16.6 GB and 1.9 GB per GPU.
PyTorch's FSDP implements the same stages: ShardingStrategy.NO_SHARD = ddp, SHARD_GRAD_OP = zero2,
FULL_SHARD = zero3 (FSDP2's `fully_shard` is zero3; with reshard_after_forward=False it behaves like
zero2). Communication per step, in parameters sent and received per GPU: DDP's all-reduce and
ZeRO-1/2's reduce-scatter + all-gather both move 2 Psi; ZeRO-3 also gathers the weights again for
the backward pass, 3 Psi (the paper's Sec. 7).

Not sharded by any stage: the activations (each GPU keeps those of its own micro-batch; pass them as
`activation_bytes`), temporary buffers, and the CUDA context. Left out: CPU/NVMe offload
(ZeRO-Offload, ZeRO-Infinity), ZeRO++'s quantised communication, tensor and pipeline parallelism
(each shards weights and activations in another way; see notebook 17). Units: GB = 10^9 bytes, as in
`llmcourse.cost.memory` and the paper.
"""

from __future__ import annotations

import math


STAGES = ("ddp", "zero1", "zero2", "zero3")
# The paper's names for the stages, for tables and legends.
PAPER_NAMES = {"ddp": "baseline DP", "zero1": "P_os", "zero2": "P_os+g", "zero3": "P_os+g+p"}
# PyTorch FSDP's ShardingStrategy for each stage (None: FSDP has no ZeRO-1).
FSDP_STRATEGY = {"ddp": "NO_SHARD", "zero1": None, "zero2": "SHARD_GRAD_OP", "zero3": "FULL_SHARD"}
# Parameters each GPU sends (and receives) per training step, in units of Psi.
COMM_VOLUME = {"ddp": 2.0, "zero1": 2.0, "zero2": 2.0, "zero3": 3.0}


def per_gpu_bytes(
    n_params: float,
    n_gpus: int,
    stage: str,
    *,
    weight_bytes: float = 2.0,
    grad_bytes: float = 2.0,
    optimizer_bytes: float = 12.0,
    activation_bytes: float = 0.0,
) -> dict[str, float]:
    """Bytes each GPU holds for the model states under `stage`, row by row, and their `total`.

    Defaults are mixed-precision Adam (2 + 2 + K with K = 12). `activation_bytes` (per GPU, never
    sharded by ZeRO) is added as its own row. Shards are fractional bytes: no rounding to GPUs.

    >>> row = per_gpu_bytes(7.5e9, 64, "zero3")
    >>> round(row["total"] / 1e9, 3)     # 16 bytes x 7.5e9 / 64
    1.875
    """
    if stage not in STAGES:
        raise ValueError(f"stage={stage!r}: use one of {STAGES}")
    if n_gpus < 1:
        raise ValueError(f"n_gpus={n_gpus}: need at least one GPU")
    level = STAGES.index(stage)  # 0 ddp, 1 shards the optimizer, 2 + gradients, 3 + weights

    def share(bytes_per_param: float, sharded: bool) -> float:
        return n_params * bytes_per_param / (n_gpus if sharded else 1)

    rows = {
        "weights": share(weight_bytes, level >= 3),
        "gradients": share(grad_bytes, level >= 2),
        "optimizer": share(optimizer_bytes, level >= 1),
        "activations": float(activation_bytes),
    }
    rows["total"] = sum(rows.values())
    return rows


def memory_vs_gpus(
    n_params: float,
    gpu_counts: list[int],
    *,
    activation_bytes: float = 0.0,
    stages: tuple[str, ...] = STAGES,
) -> dict[str, list[float]]:
    """Total GB per GPU for each stage at each number of GPUs (for the notebook's plot)."""
    return {
        s: [
            per_gpu_bytes(n_params, n, s, activation_bytes=activation_bytes)["total"] / 1e9
            for n in gpu_counts
        ]
        for s in stages
    }


def min_gpus(
    n_params: float, gpu_gb: float, stage: str, *, activation_bytes: float = 0.0
) -> int | None:
    """The fewest GPUs of `gpu_gb` GB on which `stage` fits, or None if no number of GPUs does.

    Per GPU the bytes are A + B / n (A unsharded, B sharded), so n = ceil(B / (capacity - A)),
    possible only while the unsharded part A leaves room (DDP shards nothing: B = 0).
    >>> min_gpus(7.5e9, 80, "zero3"), min_gpus(7.5e9, 80, "ddp")
    (2, None)
    """
    t1 = per_gpu_bytes(n_params, 1, stage, activation_bytes=activation_bytes)["total"]
    t2 = per_gpu_bytes(n_params, 2, stage, activation_bytes=activation_bytes)["total"]
    sharded = 2 * (t1 - t2)
    unsharded = t1 - sharded
    capacity = gpu_gb * 1e9
    if t1 <= capacity:
        return 1
    if unsharded >= capacity or sharded == 0:
        return None
    n = max(1, math.ceil(sharded / (capacity - unsharded)))
    while per_gpu_bytes(n_params, n, stage, activation_bytes=activation_bytes)["total"] > capacity:
        n += 1  # guards against rounding in the division above
    return n


# ------------------------------------------------------------------------- checked by notebook 17's exercises
def zero_bytes(n_params: float, n_gpus: int, stage: str) -> float:
    """zero_bytes(n_params, n_gpus, stage) -> bytes of model states per GPU (mixed-precision Adam:
    2 weights + 2 gradients + 12 optimizer per parameter) for stage "ddp", "zero1", "zero2" or "zero3"."""
    return per_gpu_bytes(n_params, n_gpus, stage)["total"]
