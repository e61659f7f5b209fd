"""The one training loop of the course: `history = fit(model, train_data, cfg)`.

Char-RNNs, Transformers, BERT's masked LM, GPT pretraining, SFT with loss masks, LoRA and DPO all
train through this function. What differs between them lives in the batches (masking, loss masks,
preference pairs) and in the model's loss, never in a second loop. The contract:

* a batch is a dict, called as `model(**batch)`, or a tuple, called as `model(*batch)`; the model
  returns `(logits, loss)` (a Hugging Face output with a `.loss` works too);
* `train_data` is a sampler `sample(generator) -> batch`, or a re-iterable of batches (a list, a
  DataLoader) that is cycled for as many epochs as the steps need.

One optimizer step = `grad_accum_steps` forward/backward passes → (unscale → clip) → AdamW update
at the learning rate `lr_at(step)` (linear warmup, cosine decay). Every `eval_every` steps the mean
loss over `eval_batches` validation batches goes into the History; every `ckpt_every` steps the
whole state (weights, optimizer, RNGs, History) is saved with `llmcourse.checkpoint`, and a later
`fit(..., ckpt_dir=same)` continues exactly where it stopped, after saying so; a checkpoint saved
with another config is refused (`llmcourse.resume`). `llmcourse.course.live_plot.LiveLossPlot` is
the callback that draws the loss curves live in a notebook. The progress bar is tqdm's, or one
static line when nobody watches (`LLMCOURSE_UNATTENDED=1`, `llmcourse.course.live_output`). In a
full-size rehearsal (`LLMCOURSE_REHEARSAL=<steps>`, `config.rehearsal_steps`) `fit` and
`estimate_loss` stop after that many steps and batches: the full shapes run, only shorter.

References: nanoGPT's train.py (Karpathy) for the recipe: warmup + cosine, AdamW with decay on
matrices only, GradScaler, gradient accumulation; Loshchilov & Hutter, "Decoupled Weight Decay
Regularization" (2019) and "SGDR" (2017, the cosine); fastai's callbacks (Howard & Gugger, 2020).
Data parallelism across GPUs or processes is one optional argument: with `dist_env` (from
`llmcourse.distributed.setup()` under torchrun) the model is wrapped in DistributedDataParallel.
Left out on purpose: model and pipeline parallelism (ZeRO/FSDP are explained in notebook 17, not
run here), optimizers other than AdamW, per-group learning rates, and LR finders. A callback stops
training early by returning True from `on_step`.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from llmcourse import checkpoint
from llmcourse.config import Sized, cap_steps, rehearsal_steps, to_dict
from llmcourse.course import live_output
from llmcourse.distributed import DistEnv, barrier, mean_over_processes, shard
from llmcourse.resume import model_config, resume_point, run_environment
from llmcourse.runtime import Runtime, detect, make_generator, seed_all


@dataclass
class TrainConfig(Sized):
    max_steps: int = 5000  # optimizer steps; each one sees grad_accum_steps batches
    lr: float = 1e-3  # peak learning rate, reached at the end of the warmup
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio (nanoGPT and Chinchilla: 0.1)
    warmup_steps: int = 100  # linear warmup from lr / warmup_steps up to lr
    weight_decay: float = 0.1  # AdamW's decoupled decay, for matrices only (see make_optimizer)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW's moment decays; 0.95 steadier than 0.999
    grad_clip: float = 1.0  # clip the gradients' global norm to this; 0 = off
    grad_accum_steps: int = 1  # batches per optimizer step: effective batch = this x batch size
    eval_every: int = 250  # steps between validation estimates (+ one at the end); 0 = end only
    eval_batches: int = 20  # validation batches averaged per estimate
    ckpt_every: int = (
        1000  # steps between checkpoints with ckpt_dir (+ one at the end); 0 = end only
    )
    log_every: int = 10  # steps between History records and bar updates (step 1 always recorded)
    seed: int = 1337  # seeds the loop's data generator and the global RNGs (dropout)
    # None = the runtime's rule (bf16 / fp16 + scaler / fp32), or "fp32", "fp16", "bf16"
    precision: str | None = None
    compile: bool = False  # torch.compile the model: faster steps on recent GPUs after a slow first
    fused_adamw: bool | None = None  # None = AdamW's fused kernel on CUDA, the plain one elsewhere

    smoke_overrides = {
        "max_steps": 40,
        "warmup_steps": 4,
        "eval_every": 20,
        "eval_batches": 2,
        "ckpt_every": 20,
        "log_every": 1,
    }


@dataclass
class History:
    steps: list[int] = field(default_factory=list)  # steps at which the next three were recorded
    train_loss: list[float] = field(default_factory=list)  # mean loss over that step's batches
    lr: list[float] = field(default_factory=list)  # learning rate used by that step
    elapsed: list[float] = field(default_factory=list)  # seconds since the run began (resumes add)
    val_steps: list[int] = field(default_factory=list)  # steps at which val_loss was estimated
    val_loss: list[float] = field(default_factory=list)  # mean validation loss (see estimate_loss)

    @property
    def best_val(self) -> float | None:
        """The lowest finite validation loss so far, or None before the first estimate."""
        finite = [v for v in self.val_loss if math.isfinite(v)]
        return min(finite) if finite else None

    def to_dict(self) -> dict[str, list]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, list]) -> "History":
        return cls(**{f.name: list(data.get(f.name, [])) for f in fields(cls)})


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (counted from 0): linear warmup, then a cosine to the floor.

    The warmup climbs lr/W, 2·lr/W, ..., lr (so even the first update moves the weights); then
    lr_floor + (lr - lr_floor)·(1 + cos(π·p))/2 with p going from 0 at step W to 1 at max_steps.
    >>> cfg = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=2, max_steps=6)
    >>> [round(lr_at(s, cfg), 3) for s in range(7)]   # step 4 is the midpoint: (1.0 + 0.1) / 2
    [0.5, 1.0, 1.0, 0.868, 0.55, 0.232, 0.1]
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    floor = cfg.lr * cfg.min_lr_ratio
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters only (LoRA and freezing set requires_grad=False on the rest).

    Weight decay pulls weights towards 0. That regularises matrices (embeddings, linear layers), but
    biases and LayerNorm gains (the 1-D tensors) have few values and no redundancy: decaying a gain
    only fights the normalisation. So, as in GPT-2/3 and nanoGPT, tensors with >= 2 dims are decayed.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter has requires_grad=True: there is nothing to train")
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fused = cfg.fused_adamw if cfg.fused_adamw is not None else device.type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), fused=fused or None)


def _to_device(batch: Any, device: torch.device) -> Any:
    """Move the tensors of a dict/tuple/list batch to `device`; other values pass through."""
    if torch.is_tensor(batch):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _loss(model: Callable, batch: Any) -> torch.Tensor:
    """Run the model on a batch by the course convention and return the scalar loss."""
    if isinstance(batch, Mapping):
        out = model(**batch)
    elif isinstance(batch, (tuple, list)):
        out = model(*batch)
    else:
        raise TypeError(f"a batch must be a dict or a tuple, got {type(batch).__name__}")
    if isinstance(out, Mapping):  # a Hugging Face output (a dict) with a "loss" entry
        loss = out.get("loss")
    else:
        loss = out[1] if isinstance(out, (tuple, list)) and len(out) >= 2 else None
    if not torch.is_tensor(loss) or loss.dim() != 0:
        raise ValueError(
            "the model must return (logits, loss) with a scalar loss: do the batches hold targets?"
        )
    return loss


def _batches(data: Callable | Iterable, generator: torch.Generator, skip: int = 0):
    """Endless batches: call a sampler with the generator, or cycle a re-iterable skipping `skip` first."""
    if callable(data):  # a sampler; resuming restores the generator instead of skipping
        while True:
            yield data(generator)
    try:
        skip %= len(data)  # whole epochs need no replay
    except (TypeError, ZeroDivisionError):  # no length (a streaming dataset) or empty
        pass
    while True:
        count = 0
        for count, batch in enumerate(data, start=1):
            if count > skip:
                yield batch
        if count == 0:
            raise ValueError(
                "the data yielded no batches on this pass: pass a re-iterable (a list, a DataLoader; "
                "not a one-shot generator) or a sampler function sample(generator) -> batch"
            )
        skip = max(0, skip - count)


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module,
    data: Callable | Iterable,
    n_batches: int,
    *,
    runtime: Runtime | None = None,
    generator: torch.Generator | None = None,
) -> float:
    """Mean loss over `n_batches` batches in eval mode (dropout off), without gradients.

    `data` is a sampler (given `generator`, default seed 0) or a re-iterable, of which the first
    n_batches are used. The model's train/eval mode is restored afterwards.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches={n_batches}: average over at least one batch")
    n_batches = cap_steps(n_batches)
    runtime = runtime or detect()
    generator = generator if generator is not None else make_generator(0)
    was_training = model.training
    model.eval()
    total = 0.0
    try:
        for batch in itertools.islice(_batches(data, generator), n_batches):
            with runtime.autocast():
                total += _loss(model, _to_device(batch, runtime.device)).float().item()
    finally:
        model.train(was_training)
    return total / n_batches


def nan_message(loss: float, step: int, cfg: TrainConfig, *, runtime: Runtime) -> str:
    """What to say when the training loss is not finite: at step 1 the data or the loss is wrong;
    later, the usual cures for a run that diverged, those `cfg` and `runtime` do not use yet."""
    if step == 1:
        return (
            f"the training loss is {loss} at step 1, before any update: "
            "check the data and the model's loss."
        )
    tips = [f"a lower learning rate (lr={cfg.lr:g})"]
    if cfg.grad_clip <= 0:
        tips.append("gradient clipping (grad_clip=1.0)")
    if runtime.dtype != torch.float32:
        tips.append(
            f"full precision (precision='fp32' instead of {str(runtime.dtype).replace('torch.', '')})"
        )
    return f"the training loss is {loss} at step {step}. Try " + ", or ".join(tips) + "."


def rehearsal_config(cfg: TrainConfig) -> TrainConfig:
    """`cfg` as a rehearsal runs it (`config.rehearsal_steps()`): at most that many optimizer
    steps and validation batches; unchanged outside a rehearsal."""
    if rehearsal_steps() is None:
        return cfg
    return replace(
        cfg, max_steps=cap_steps(cfg.max_steps), eval_batches=cap_steps(cfg.eval_batches)
    )


def _due(step: int, every: int, cfg: TrainConfig) -> bool:
    """True every `every` steps (0 = never) and always at the last step."""
    return step == cfg.max_steps or (every > 0 and step % every == 0)


def _hook(callback: Any, name: str, step: int, history: History) -> Any:
    method = getattr(callback, name, None)
    return method(step, history) if method is not None else None


def fit(
    model: torch.nn.Module,
    train_data: Callable | Iterable,
    cfg: TrainConfig,
    *,
    val_data: Callable | Iterable | None = None,
    callbacks: Sequence[Any] = (),
    runtime: Runtime | None = None,
    ckpt_dir: str | Path | None = None,
    resume: bool = True,
    progress: bool = True,
    dist_env: DistEnv | None = None,
) -> History:
    """Train `model` for `cfg.max_steps` optimizer steps and return the History of losses.

    `callbacks` are objects with optional `on_step(step, history)` (after every step; returning True
    stops) and `on_eval(step, history)` methods. With `ckpt_dir`, checkpoints are written there and,
    if `resume`, the latest one is loaded first, and `fit` says so (step, folder, how to start fresh);
    a checkpoint saved with another training or model config is refused with the differing fields
    named, and `resume=False` deletes it and starts fresh. On the same device, precision and CPU thread
    count the resumed run ends with exactly the weights of an uninterrupted one; otherwise it warns
    (resume.InexactResumeWarning) and ends close to them. That holds for a sampler, and for a
    re-iterable that yields the same batches in the same order on every pass (a list; a DataLoader
    with shuffle=True reshuffles differently after a restart). Note that fit seeds the global RNGs
    with `cfg.seed` (dropout draws from them), and leaves the model in train mode on runtime.device.

    With `dist_env` (from `llmcourse.distributed.setup()` under torchrun) the model is wrapped in
    DistributedDataParallel: every process draws the same global batch and trains on its own slice,
    only the main process shows progress and writes checkpoints, and the logged loss is the global one.
    """
    if cfg.grad_accum_steps < 1 or cfg.log_every < 1:
        raise ValueError("grad_accum_steps and log_every must be at least 1")
    cfg = rehearsal_config(cfg)
    if runtime is None or cfg.precision is not None:
        runtime = detect(None if runtime is None else str(runtime.device), precision=cfg.precision)
    model.to(runtime.device)
    optimizer = make_optimizer(model, cfg, runtime.device)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.use_grad_scaler)
    seed_all(cfg.seed)  # dropout draws from the global RNG: make it the same on every run
    # the data's randomness, owned by the loop and saved in checkpoints
    generator = make_generator(cfg.seed)
    history, start = History(), 0
    model_cfg = model_config(model)
    environment = run_environment(runtime)  # device, precision, threads: saved, compared on resume
    latest = resume_point(
        ckpt_dir,
        cfg,
        model_cfg,
        resume=resume,
        announce=(dist_env or DistEnv()).is_main,
        environment=environment,
    )
    if latest is not None:
        state = checkpoint.load_checkpoint(
            latest, model, optimizer=optimizer, scaler=scaler, generator=generator
        )
        start, history = state["step"], History.from_dict(state["history"] or {})
    batches = _batches(train_data, generator, skip=start * cfg.grad_accum_steps)
    env = dist_env or DistEnv()
    forward = model
    if env.enabled:  # gradients are averaged across processes during backward
        forward = DDP(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
    # compile the wrapper, not `model`: checkpoints save `model`, whose keys have no prefixes
    forward = torch.compile(forward) if cfg.compile else forward
    params = [p for p in model.parameters() if p.requires_grad]

    def save(step: int) -> None:
        if env.is_main:
            checkpoint.save_checkpoint(
                ckpt_dir,
                step,
                model,
                optimizer=optimizer,
                scaler=scaler,
                generator=generator,
                history=history.to_dict(),
                config=to_dict(cfg),
                model_config=model_cfg,
                environment=environment,
            )
        barrier(env)  # nobody runs ahead (or resumes) before the checkpoint is complete

    t0 = time.perf_counter() - (history.elapsed[-1] if history.elapsed else 0.0)
    step = saved = start
    # tqdm's live bar for a person; unattended (LLMCOURSE_UNATTENDED=1) one static line at the end
    bar = live_output.progress(
        cfg.max_steps, initial=start, disable=not (progress and env.is_main), desc="fit"
    )
    model.train()
    try:
        for step in range(start + 1, cfg.max_steps + 1):  # `step` counts updates, this one included
            # 1. the learning rate of this update: warmup, then cosine (lr_at counts from 0)
            lr = lr_at(step - 1, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=runtime.device)
            for micro in range(cfg.grad_accum_steps):
                batch = _to_device(shard(next(batches), env), runtime.device)
                # with DDP, all-reduce gradients only once, after the last micro-batch
                sync = micro == cfg.grad_accum_steps - 1 or not env.enabled
                with contextlib.nullcontext() if sync else forward.no_sync():
                    # 2. forward under autocast: matmuls in bf16/fp16 on a GPU, fp32 on the CPU
                    with runtime.autocast():
                        loss = _loss(forward, batch)
                    # 3. backward of loss / k: the mean of k micro-batch gradients is the gradient
                    # of one k-times bigger batch (exactly so when every micro-batch weighs the
                    # same, e.g. holds as many unmasked tokens). With fp16 the scaler first
                    # multiplies the loss, so small gradients do not underflow to 0.
                    scaler.scale(loss / cfg.grad_accum_steps).backward()
                # gradients add up in .grad across micro-batches; the loss, detached, is for logs
                loss_sum += loss.detach().float()
            # 4. the logged loss: the mean over micro-batches (and processes); .item() syncs with
            # the GPU once per step, a fair price for catching a NaN right away
            loss_sum = mean_over_processes(loss_sum, env)
            train_loss = (loss_sum / cfg.grad_accum_steps).item()
            if not math.isfinite(train_loss):
                raise FloatingPointError(nan_message(train_loss, step, cfg, runtime=runtime))
            # 5. unscale, then clip the global gradient norm: clip the true gradients, not the
            # fp16-scaled ones, so grad_clip means the same in every precision
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            # 6. the AdamW update; with fp16 the scaler skips it when a gradient overflowed ...
            scaler.step(optimizer)
            # ... and adapts the loss scale: smaller after an overflow, larger after a calm stretch
            scaler.update()
            # 7. forget the gradients: set_to_none frees their memory until the next backward
            optimizer.zero_grad(set_to_none=True)

            # 8. bookkeeping: History, validation, checkpoints, callbacks

            if step % cfg.log_every == 0 or step in (1, cfg.max_steps):
                history.steps.append(step)
                history.train_loss.append(train_loss)
                history.lr.append(lr)
                history.elapsed.append(time.perf_counter() - t0)
                bar.set_postfix(loss=f"{train_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            if val_data is not None and _due(step, cfg.eval_every, cfg):
                # a fresh generator each time: every estimate sees the same validation batches
                val = estimate_loss(
                    model,
                    val_data,
                    cfg.eval_batches,
                    runtime=runtime,
                    generator=make_generator(cfg.seed + 1),
                )
                history.val_steps.append(step)
                history.val_loss.append(val)
                bar.set_postfix(
                    loss=f"{train_loss:.4f}", val=f"{val:.4f}", lr=f"{lr:.2e}", refresh=False
                )
                for cb in callbacks:
                    _hook(cb, "on_eval", step, history)
            if ckpt_dir is not None and _due(step, cfg.ckpt_every, cfg):
                save(step)
                saved = step
            bar.update(1)
            # a list, not a generator: every callback runs, even after one asked to stop
            if any([_hook(cb, "on_step", step, history) for cb in callbacks]):
                break
    finally:
        bar.close()
    if ckpt_dir is not None and saved != step:  # stopped early by a callback: save where we are
        save(step)
    return history
