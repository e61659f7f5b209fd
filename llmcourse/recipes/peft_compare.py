"""Full fine-tuning vs Freeze vs prompt tuning / P-Tuning (v1, v2) vs LoRA, on one task and one model.

Notebook 12's comparison, as functions a test can check: `make_variant(base, method)` returns a copy of
the base GPT set up for one method (what trains, what is frozen), `training_bytes(model)` counts the
bytes training holds for weights, gradients and AdamW state, and `run_variant` trains a variant through
`llmcourse.train.fit` and reports trainable parameters, memory, time and held-out accuracy.

Time: the total seconds of `fit` include one-off costs (the first steps allocate memory and warm up
kernels, the optimizer creates its state), so the comparison uses the median wall time of one step
after `warmup` steps (`StepTimer`), and `step_parts` splits one step into forward, backward and
optimizer (medians over repeats) to show what dominates.

Memory: on a GPU we report `torch.cuda.max_memory_allocated()` (the true peak, activations included).
On a CPU there is no allocator counter, so we report `training_bytes`: weights (every parameter, tied
ones once) + one fp32 gradient per trainable parameter + AdamW's two fp32 moments per trainable
parameter. It leaves out activations, which are the same for every method here (the full network
runs forward and backward in all of them), so it is exactly the part the methods change.
Left out: (IA)^3, adapters between layers, and QLoRA (needs a GPU; see llmcourse.cost.memory).
"""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llmcourse.config import cap_steps
from llmcourse.lora import apply_lora, trainable_report
from llmcourse.prefix_tuning import PrefixTuned
from llmcourse.ptuning import PromptTuned, freeze
from llmcourse.runtime import Runtime
from llmcourse.sft import accuracy, sft_sampler
from llmcourse.train import TrainConfig, fit, make_optimizer

METHODS = ("full", "freeze", "prompt", "ptuning", "ptuning_v2", "lora", "tokens")
LORA_TARGETS = (
    "qkv",
    "proj",
    "fc",
)  # every Linear of a block: attention in/out and both MLP layers


class NewTokenRows(nn.Module):
    """Trainable corrections for the embedding rows of tokens the base model never saw.

    A chat template adds tokens ("<|assistant|>", ...) whose embeddings pretraining never trained, and
    LoRA or prompt tuning cannot change an embedding. Hugging Face peft's answer is
    `trainable_token_indices` (or training the whole matrix with `modules_to_save`); this is the same
    idea as a parametrization: weight -> weight + delta on the given rows, delta starting at zero.
    """

    def __init__(self, token_ids: Sequence[int], n_embd: int):
        super().__init__()
        self.register_buffer("token_ids", torch.tensor(sorted(set(token_ids)), dtype=torch.long))
        self.delta = nn.Parameter(torch.zeros(len(self.token_ids), n_embd))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # (V, C) -> (V, C)
        return weight.index_add(0, self.token_ids.to(weight.device), self.delta.to(weight.dtype))


def train_token_rows(gpt: nn.Module, token_ids: Sequence[int]) -> NewTokenRows:
    """Make only these rows of the GPT's (tied) embedding and output head trainable."""
    from torch.nn.utils import parametrize

    rows = NewTokenRows(token_ids, gpt.cfg.n_embd).to(gpt.tok_emb.weight.device)
    parametrize.register_parametrization(gpt.tok_emb, "weight", rows)
    if (
        gpt.lm_head.weight is gpt.tok_emb.parametrizations.weight.original
    ):  # tied: the head sees them too
        parametrize.register_parametrization(gpt.lm_head, "weight", rows)
    return rows


def merge_token_rows(gpt: nn.Module) -> nn.Module:
    """Fold `train_token_rows` corrections into the embedding (and re-tie the head); in place."""
    from torch.nn.utils import parametrize

    if parametrize.is_parametrized(gpt.tok_emb, "weight"):
        tied = parametrize.is_parametrized(gpt.lm_head, "weight")
        parametrize.remove_parametrizations(gpt.tok_emb, "weight", leave_parametrized=True)
        if tied:
            parametrize.remove_parametrizations(gpt.lm_head, "weight", leave_parametrized=False)
            gpt.lm_head.weight = gpt.tok_emb.weight
    return gpt


CHEAP = (
    "prompt",
    "ptuning",
    "ptuning_v2",
    "lora",
    "tokens",
)  # the methods that leave the embedding and final norm frozen
WRAPPED = ("prompt", "ptuning", "ptuning_v2")  # the methods whose model wraps the GPT (`.model`)


def make_variant(
    base: nn.Module,
    method: str,
    *,
    r: int = 8,
    n_virtual: int = 8,
    top_blocks: int = 1,
    new_token_ids: Sequence[int] = (),
    train_norm: bool = False,
    prefix_hidden: int | None = None,
) -> nn.Module:
    """A deep copy of `base` prepared for `method` (base itself is never modified).

    full: everything trains. freeze: the top `top_blocks` blocks, final norm and (tied) head train.
    prompt: `n_virtual` trainable input vectors, the model frozen. ptuning: the same vectors produced by
    a small MLP. ptuning_v2: a prefix of `n_virtual` trainable key/value positions in every attention
    layer (`prefix_tuning.PrefixTuned`; through an MLP of width `prefix_hidden` if given).
    lora: rank-`r` adapters (alpha = 2r) on every block Linear, the rest frozen.
    tokens: the control for the cheap methods: nothing of its own trains, only the extras below.
    Extras for prompt, ptuning, ptuning_v2, lora and tokens (full and freeze train these anyway):
    `new_token_ids`: also train those embedding rows (`train_token_rows`);
    `train_norm`: also train the final LayerNorm (2 * n_embd numbers; peft's `modules_to_save`). Its
    gain sets how large the logits can get through the frozen tied head: a base model that rarely saw
    a token (digits, after a brief pretraining) has a small embedding row for it, and without this
    the adapted model can rank the right answer first but never become confident in it.
    """
    model = copy.deepcopy(base)
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif method == "freeze":
        freeze(model, train_top_blocks=top_blocks, train_head=True)
    elif method in ("prompt", "ptuning"):
        hidden = 2 * model.cfg.n_embd if method == "ptuning" else None
        model = PromptTuned(model, n_virtual=n_virtual, reparam_hidden=hidden)
    elif method == "ptuning_v2":
        model = PrefixTuned(model, n_prefix=n_virtual, reparam_hidden=prefix_hidden)
    elif method == "lora":
        apply_lora(model, LORA_TARGETS, r=r, alpha=2.0 * r)
    elif method == "tokens":
        freeze(model, train_top_blocks=0, train_head=False)
    else:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    if method in CHEAP:
        gpt = model.model if method in WRAPPED else model
        if new_token_ids:
            train_token_rows(gpt, new_token_ids)
        if train_norm:
            for p in gpt.final_norm.parameters():
                p.requires_grad_(True)
    return model


def training_bytes(model: nn.Module) -> dict[str, int]:
    """Bytes of weights (all, tied once), fp32 gradients and AdamW moments (trainable only)."""
    report = trainable_report(model)
    weights = sum(
        p.numel() * p.element_size() for p in {p.data_ptr(): p for p in model.parameters()}.values()
    )
    return {
        "weights": weights,
        "gradients": 4 * report["trainable"],
        "optimizer": 8 * report["trainable"],
        "total": weights + 12 * report["trainable"],
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # kernels run asynchronously: wait before reading the clock


class StepTimer:
    """A `fit` callback that reads the clock after every step: `step_ms(warmup=...)` is the median
    milliseconds of one step once the first `warmup` steps (allocation, kernel warm-up) are left
    out.

    >>> timer = StepTimer(); fit(model, data, cfg, callbacks=[timer]); timer.step_ms(warmup=10)
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.stamps: list[float] = []  # perf_counter after each step

    def on_step(self, step: int, history) -> bool:
        _sync(self.device)
        self.stamps.append(time.perf_counter())
        return False

    def step_ms(self, *, warmup: int = 10) -> float:
        # step i's duration is stamp i - stamp i-1, so the first step (setup included) is never one
        durations = [b - a for a, b in zip(self.stamps, self.stamps[1:])][max(0, warmup - 1) :]
        if not durations:
            raise ValueError(
                f"only {len(self.stamps)} steps were timed: run more than warmup={warmup} + 1 steps"
            )
        return 1000 * statistics.median(durations)


def step_parts(
    model: nn.Module,
    batch: tuple[torch.Tensor, torch.Tensor],
    cfg: TrainConfig,
    *,
    repeats: int = 20,
    warmup: int = 5,
    runtime: Runtime | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median milliseconds of the forward pass, the backward pass and the AdamW update of one
    training step on `batch`, over `repeats` steps after `warmup` untimed ones.

    The optimizer runs with lr = 0 (AdamW still does all its arithmetic), and the weights and the
    train/eval mode are put back afterwards, so the model leaves exactly as it came. Returns
    {"forward ms", "backward ms", "optimizer ms"}. `clock` reads seconds: wall time by default;
    `time.process_time` (this process's CPU time) is steadier on a shared CPU, but on a GPU it
    would miss the kernels' time.
    """
    device = runtime.device if runtime is not None else next(model.parameters()).device
    warmup, repeats = cap_steps(warmup), cap_steps(repeats)  # fewer in a rehearsal
    saved, was_training = copy.deepcopy(model.state_dict()), model.training
    model.to(device).train()
    batch = tuple(t.to(device) for t in batch)
    optimizer = make_optimizer(model, cfg, device)
    for group in optimizer.param_groups:
        group["lr"] = 0.0
    times: dict[str, list[float]] = {"forward ms": [], "backward ms": [], "optimizer ms": []}
    for i in range(warmup + repeats):
        _sync(device)
        t0 = clock()
        with runtime.autocast() if runtime is not None else contextlib.nullcontext():
            _, loss = model(*batch)  # the course convention: (logits, loss)
        _sync(device)
        t1 = clock()
        loss.backward()
        _sync(device)
        t2 = clock()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        t3 = clock()
        if i >= warmup:
            for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[key].append(seconds)
    model.load_state_dict(saved)
    model.train(was_training)
    return {key: 1000 * statistics.median(values) for key, values in times.items()}


def run_variant(
    name: str,
    model: nn.Module,
    tokenizer,
    *,
    rows: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    test_examples: Sequence,
    cfg: TrainConfig,
    block_size: int,
    batch_size: int,
    runtime: Runtime | None = None,
    warmup: int = 10,
) -> dict:
    """Train one variant with `fit` and measure it: one row of the comparison table.

    "time s" is the whole of `fit`; "ms / step" the median step after `warmup` steps (`StepTimer`);
    "forward ms", "backward ms" and "optimizer ms" split one step of the trained model
    (`step_parts`).
    """
    on_gpu = runtime is not None and runtime.device.type == "cuda"
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(runtime.device)
    sampler = sft_sampler(rows, pad_id, block_size, batch_size=batch_size)
    timer = StepTimer(runtime.device if runtime is not None else "cpu")
    t0 = time.perf_counter()
    hist = fit(model, sampler, cfg, runtime=runtime, progress=False, callbacks=[timer])
    seconds = time.perf_counter() - t0
    peak = (
        torch.cuda.max_memory_allocated(runtime.device)
        if on_gpu
        else training_bytes(model)["total"]
    )
    report = trainable_report(model)
    test_accuracy = accuracy(model, tokenizer, test_examples)
    return {
        "method": name,
        "trainable": report["trainable"],
        "trainable %": report["percent"],
        "memory MB": peak / 1e6,
        "memory kind": "cuda peak" if on_gpu else "weights+grads+AdamW",
        "time s": seconds,
        # the steps fit ran (a rehearsal's single step has no duration to time: nan)
        "ms / step": (
            timer.step_ms(warmup=min(warmup, len(timer.stamps) // 2))
            if len(timer.stamps) > 1
            else float("nan")
        ),
        **step_parts(model, sampler(torch.Generator().manual_seed(0)), cfg, runtime=runtime),
        "final loss": hist.train_loss[-1],
        "accuracy": test_accuracy,
    }


# ------------------------------------------------------------------------- checked by notebook 12's exercises
def lora_forward(
    x: torch.Tensor, W: torch.Tensor, *, A: torch.Tensor, B: torch.Tensor, scaling: float
) -> torch.Tensor:
    """lora_forward(x (N, in), W (out, in), A (r, in), B (out, r), scaling) -> (N, out): the base output plus the scaled low-rank update."""
    return F.linear(x, W) + scaling * F.linear(F.linear(x, A), B)
