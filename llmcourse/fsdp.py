"""Fully sharded data parallelism (FSDP2 = ZeRO-3): every process keeps only 1/N of the model.

DDP (`llmcourse.distributed`) gives each of N processes a full copy of the weights, gradients and
AdamW states. PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`) turns each parameter into a
DTensor of which every process stores one slice along dim 0, and installs hooks on the modules it
wraps:

1. before a wrapped module (here: one transformer block, then the root with the embeddings, the
   final norm and the head) runs forward, its shards are **all-gathered** into full weights;
2. after forward the full weights are freed again (`reshard_after_forward=True`; False keeps them
   until backward, which is ZeRO-2's memory for less traffic) and gathered once more for backward;
3. after backward each full gradient is **reduce-scattered** with an average: every process ends
   with the mean over processes of *its* slice of the gradient;
4. AdamW then updates each slice with slice-sized state: optimizer states are sharded too.

The loop does not change. `train()` below calls the course's one loop, `llmcourse.train.fit`, on
this rank's slice of each global batch, because the hooks already do all the communication. With
equal slices the averaged gradient is the full-batch gradient, so N processes learn what one process
learns on the whole batch (tests/test_fsdp.py checks weights and losses with two CPU processes).

Collectives: FSDP2 calls `all_gather_single` and `reduce_scatter_single` (the 2.13 names of
`all_gather_into_tensor` / `reduce_scatter_tensor`) with `ReduceOp.AVG` for fp32 gradients. gloo
has both, AVG included, on CPU in torch 2.13 (tests/test_fsdp.py checks them): no workaround needed.

    torchrun --standalone --nproc_per_node=2 -m llmcourse.fsdp --size=smoke --out_dir=out/fsdp
    python -m llmcourse.fsdp --size=smoke --out_dir=out/one      # one process, nothing sharded

Options are those of `llmcourse.cli.pretrain` (same data, model and TrainConfig). Reference: Zhao et
al., "PyTorch FSDP" (2023); the FSDP2 `fully_shard` docs; Rajbhandari et al., "ZeRO" (2020), whose
arithmetic is `llmcourse.cost.zero`. Left out: mixed-precision policies (`MixedPrecisionPolicy`),
CPU offload, HSDP (shard within a node, replicate across nodes), sharded checkpoints
(`torch.distributed.checkpoint`; `fit` is called without `ckpt_dir` here) and tensor parallelism.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

from llmcourse.distributed import DistEnv, shard
from llmcourse.train import History, TrainConfig, fit, make_optimizer


def shard_model(
    model: torch.nn.Module, env: DistEnv, *, reshard_after_forward: bool = True
) -> torch.nn.Module:
    """Shard `model` (a course GPT: anything with `.blocks`) over the `env.world_size` processes.

    Each block becomes one FSDP unit (gathered and freed on its own, so at most one block is whole
    at a time), then the root collects the rest (embeddings, final norm, tied head). Modifies and
    returns `model`; every process must call it on identical weights (seed first).
    """
    if not env.enabled:
        raise ValueError(
            "shard_model needs several processes: launch with torchrun --nproc_per_node=N "
            "and call llmcourse.distributed.setup() first"
        )
    if not hasattr(model, "blocks"):
        raise ValueError("shard_model wraps each of model.blocks: pass a course GPT or Llama")
    device = next(model.parameters()).device.type  # "cpu" over gloo, "cuda" over NCCL
    mesh = init_device_mesh(device, (env.world_size,))  # one dimension: N data-parallel shards
    for block in model.blocks:
        fully_shard(block, mesh=mesh, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard_after_forward)
    return model


def local_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes this process stores for `tensors`: the local shard of a DTensor, all of a plain tensor.

    >>> local_bytes([torch.zeros(3, 4), torch.zeros(5, dtype=torch.float16)])   # 48 + 10
    58
    """
    total = 0
    for t in tensors:
        local = t.to_local() if isinstance(t, DTensor) else t
        total += local.numel() * local.element_size()
    return total


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """What this process holds of the model states, in bytes: the rows of `cost.zero.per_gpu_bytes`.

    `weights` and `gradients` count each parameter once (tied weights too); `optimizer` counts the
    AdamW tensors (m, v and the step counters), which exist after the first `optimizer.step()`.
    """
    params = list(model.parameters())  # parameters() yields a tied tensor only once
    rows = {
        "weights": local_bytes(params),
        "gradients": local_bytes(p.grad for p in params if p.grad is not None),
        "optimizer": local_bytes(
            v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)
        ),
    }
    rows["total"] = sum(rows.values())
    return rows


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights as plain CPU tensors. Collective: every process must call it."""
    state = model.state_dict()
    return {
        k: (v.full_tensor() if isinstance(v, DTensor) else v).detach().cpu().clone()
        for k, v in state.items()  # clone: a copy, not a view of the live (CPU) weights
    }


def rank_slice(train_data: Callable, env: DistEnv) -> Callable:
    """A sampler that draws the global batch (same generator state on every rank) and returns this
    rank's contiguous slice of it (`distributed.shard`): FSDP's ranks must see different data."""

    def sample(generator: torch.Generator):
        return shard(train_data(generator), env)

    return sample


def train(
    model: torch.nn.Module,
    train_data: Callable,
    cfg: TrainConfig,
    env: DistEnv,
    *,
    val_data: Callable | Iterable | None = None,
    runtime=None,
) -> History:
    """`fit` a model sharded by `shard_model` on this rank's slice of each global batch.

    `fit` runs unchanged (no DDP wrapper: FSDP's hooks communicate); the History's training losses
    are then averaged over the ranks, so they are the losses of the global batches, as with DDP.
    Validation batches are not sliced: each rank computes the same validation loss.
    """
    if not isinstance(model, FSDPModule):
        raise ValueError("call fsdp.shard_model(model, env) before fsdp.train")
    if not callable(train_data):
        raise ValueError("train_data must be a sampler sample(generator) -> global batch")
    history = fit(
        model,
        rank_slice(train_data, env),
        cfg,
        val_data=val_data,
        runtime=runtime,
        progress=env.is_main,
    )
    losses = torch.tensor(history.train_loss, dtype=torch.float64)
    dist.all_reduce(losses, op=dist.ReduceOp.SUM)  # each rank logged the loss of its slice
    history.train_loss = (losses / env.world_size).tolist()
    return history


def _measure(model, train_data, cfg, env, runtime) -> dict[str, int]:
    """One more forward/backward and AdamW step (after the weights are saved) to fill gradients and
    optimizer states, then count what this process holds."""
    optimizer = make_optimizer(model, cfg, runtime.device)
    x, y = shard(train_data(torch.Generator().manual_seed(cfg.seed)), env)
    model(x.to(runtime.device), y.to(runtime.device))[1].backward()
    optimizer.step()
    return state_bytes(model, optimizer)


def main(argv: list[str] | None = None) -> int:
    """Pretrain like `llmcourse.cli.pretrain`, sharded with FSDP2 when launched by torchrun.

    Writes (rank 0) `model.safetensors`, `vocab.json`, `model_config.json`, `history.json` and
    `state_bytes.json` (one row per rank: what each process held after one more step).
    """
    from llmcourse import checkpoint, data, distributed, runtime
    from llmcourse.cli.pretrain import parse
    from llmcourse.config import to_dict
    from llmcourse.gpt import GPT

    run, model_cfg, train_cfg = parse(sys.argv[1:] if argv is None else argv)
    env = distributed.setup()
    rt = runtime.detect(f"cuda:{env.local_rank}" if torch.cuda.is_available() else "cpu")
    text = data.load_text(run.corpus, max_chars=run.max_chars)
    vocab = data.CharVocab.from_text(text, specials=())
    ids = torch.tensor(vocab.encode(text), dtype=torch.long)
    train_ids, val_ids = data.train_val_split(ids, run.val_fraction)
    model_cfg = dataclasses.replace(model_cfg, vocab_size=len(vocab))
    runtime.seed_all(train_cfg.seed)  # identical initial weights in every process
    model = GPT(model_cfg).to(rt.device)
    batches = data.next_token_batches(train_ids, model_cfg.block_size, run.batch_size)
    val = data.next_token_batches(val_ids, model_cfg.block_size, run.batch_size)
    if env.enabled:
        shard_model(model, env)
        history = train(model, batches, train_cfg, env, val_data=val, runtime=rt)
    else:  # the reference: one process, the whole batch, nothing sharded
        history = fit(model, batches, train_cfg, val_data=val, runtime=rt)
    weights = full_state_dict(model)  # collective: before rank 0 writes
    rows = _measure(model, batches, train_cfg, env, rt)
    every = [rows] * env.world_size
    if env.enabled:
        dist.all_gather_object(every, rows)
    if env.is_main:
        out = Path(run.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        plain = GPT(model_cfg)
        plain.load_state_dict(weights)
        checkpoint.save_model(plain, out / "model.safetensors")
        vocab.save(out / "vocab.json")
        (out / "model_config.json").write_text(json.dumps(to_dict(model_cfg), indent=2))
        (out / "history.json").write_text(json.dumps(history.to_dict()))
        (out / "state_bytes.json").write_text(json.dumps(every))
        print(f"{env.world_size} process(es): final train loss {history.train_loss[-1]:.6f}")
    distributed.cleanup()
    return 0


# ------------------------------------------------------------------------- checked by notebook 17's exercises
def shard_rows(dim0: int, world_size: int, rank: int) -> tuple[int, int]:
    """shard_rows(dim0, world_size, rank) -> (start, stop): the rows of a parameter's first
    dimension that rank `rank` stores under FSDP2, which cuts dim 0 like torch.chunk: pieces of
    ceil(dim0 / world_size) rows, the last one shorter, ranks past the end get none (start == stop).

    >>> [shard_rows(5, 4, r) for r in range(4)]    # pieces of 2 rows: 2 + 2 + 1 + 0
    [(0, 2), (2, 4), (4, 5), (5, 5)]
    """
    piece = -(-dim0 // world_size)  # ceil(dim0 / world_size)
    return min(rank * piece, dim0), min((rank + 1) * piece, dim0)


if __name__ == "__main__":
    sys.exit(main())
