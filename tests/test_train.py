"""The training loop: lr schedule, learning happens, gradient accumulation, NaN guard, frozen
parameters, and exact resume after an interruption (a callback raising, and a real SIGKILL)."""

import json
import math
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmcourse import checkpoint
from llmcourse.config import to_dict
from llmcourse.course.live_plot import LiveLossPlot
from llmcourse.resume import InexactResumeWarning
from llmcourse.runtime import Runtime, detect
from llmcourse.train import (
    History,
    TrainConfig,
    estimate_loss,
    fit,
    lr_at,
    make_optimizer,
    nan_message,
)

V = 8  # vocabulary of the toy task
CPU = detect("cpu")


class TinyLM(nn.Module):
    """Embedding -> LayerNorm -> dropout -> linear head; the course's (idx, targets) -> (logits, loss)."""

    def __init__(self, dropout: float = 0.2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.tok_emb = nn.Embedding(V, 16)
        self.norm = nn.LayerNorm(16)
        self.drop = nn.Dropout(dropout)
        self.lm_head = nn.Linear(16, V)

    def forward(self, idx, targets=None):
        logits = self.lm_head(self.drop(self.norm(self.tok_emb(idx))))  # (B, T, V)
        loss = (
            None if targets is None else F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        )
        return logits, loss


def counting_sampler(batch_size: int = 8, T: int = 6, as_dict: bool = False):
    """Windows of 0,1,2,...,7,0,1,... at random offsets: the next token is (token + 1) mod V."""

    def sample(generator):
        start = torch.randint(0, V, (batch_size, 1), generator=generator)
        seq = (start + torch.arange(T + 1)) % V  # (B, T+1)
        idx, targets = seq[:, :-1], seq[:, 1:]
        return {"idx": idx, "targets": targets} if as_dict else (idx, targets)

    return sample


def small_cfg(**changes) -> TrainConfig:
    base = dict(
        max_steps=12,
        lr=0.02,
        warmup_steps=2,
        eval_every=3,
        eval_batches=2,
        ckpt_every=4,
        log_every=1,
        seed=5,
        precision="fp32",
        grad_clip=1.0,
    )
    return TrainConfig(**{**base, **changes})


def test_lr_schedule_endpoints_and_midpoint():
    """Warmup reaches lr at step W-1; the cosine is at (lr + floor)/2 halfway; the floor at max_steps."""
    cfg = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)  # 1/10 of lr: the first update already moves
    assert lr_at(9, cfg) == pytest.approx(1.0) and lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)  # (1.0 + 0.1) / 2
    assert lr_at(110, cfg) == pytest.approx(0.1) and lr_at(500, cfg) == pytest.approx(0.1)
    lrs = [lr_at(s, cfg) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))  # monotone decay
    assert lr_at(0, TrainConfig(lr=0.5, warmup_steps=0, max_steps=10)) == 0.5  # no warmup


def test_smoke_size_shrinks_only_the_budget():
    smoke, full = TrainConfig.for_size("smoke"), TrainConfig.for_size("full")
    assert smoke.max_steps < full.max_steps and smoke.lr == full.lr
    assert json.loads(json.dumps(to_dict(smoke)))["max_steps"] == smoke.max_steps


def test_learning_happens_with_dict_batches():
    """The counting task is deterministic, so its loss can fall far below the uniform guess ln V."""
    model = TinyLM(dropout=0.0)
    data = counting_sampler(as_dict=True)
    before = estimate_loss(model, data, 4, runtime=CPU)
    history = fit(
        model, data, small_cfg(max_steps=60, lr=0.05), val_data=data, runtime=CPU, progress=False
    )
    assert before == pytest.approx(math.log(V), abs=0.5)
    assert history.val_loss[-1] < 0.25 * math.log(V)
    assert history.best_val == min(history.val_loss) and history.steps[-1] == 60
    assert history.lr[0] == pytest.approx(0.025) and len(history.elapsed) == len(history.steps)


def test_grad_accumulation_equals_one_big_batch():
    """2 micro-batches of 4 with loss/2 give the gradient of one batch of 8 (no dropout, so equal up
    to float rounding), hence the same weights after 3 steps. The gradient itself is compared because
    Adam is blind to a gradient's scale: weights alone would not catch a missing division by k."""
    g = torch.Generator().manual_seed(0)
    big = [counting_sampler(batch_size=8)(g) for _ in range(3)]
    micro = [(x[i : i + 4], y[i : i + 4]) for x, y in big for i in (0, 4)]
    a, b = TinyLM(dropout=0.0), TinyLM(dropout=0.0)
    grads_a, grads_b = [], []  # lm_head.weight.grad each time a backward has added to it
    a.lm_head.weight.register_post_accumulate_grad_hook(lambda p: grads_a.append(p.grad.clone()))
    b.lm_head.weight.register_post_accumulate_grad_hook(lambda p: grads_b.append(p.grad.clone()))
    cfg = small_cfg(max_steps=3, grad_clip=0.0, lr=0.01, ckpt_every=0)
    ha = fit(a, big, cfg, runtime=CPU, progress=False)
    hb = fit(
        b,
        micro,
        TrainConfig(**{**to_dict(cfg), "grad_accum_steps": 2}),
        runtime=CPU,
        progress=False,
    )
    assert len(grads_a) == 3 and len(grads_b) == 6
    for step in range(3):  # the gradient after the 2nd micro-batch is the one the optimizer uses
        torch.testing.assert_close(grads_b[2 * step + 1], grads_a[step], atol=1e-6, rtol=0)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=0)
    assert ha.train_loss == pytest.approx(hb.train_loss, abs=1e-6)


class NaNAt(nn.Module):
    """A model whose loss turns NaN on its third call."""

    def __init__(self, call: int = 3):
        super().__init__()
        self.w, self.calls, self.nan_call = nn.Parameter(torch.ones(2)), 0, call

    def forward(self, x, y):
        self.calls += 1
        loss = ((self.w * x - y) ** 2).mean()
        return None, loss * float("nan") if self.calls == self.nan_call else loss


def test_nan_loss_raises_with_advice():
    data = [(torch.ones(2), torch.zeros(2))]
    with pytest.raises(
        FloatingPointError,
        match=r"nan at step 3\. Try a lower learning rate \(lr=0.02\), or "
        r"gradient clipping \(grad_clip=1.0\)\.$",
    ):
        fit(NaNAt(3), data, small_cfg(grad_clip=0.0), runtime=CPU, progress=False)
    with pytest.raises(FloatingPointError, match="before any update"):
        fit(NaNAt(1), data, small_cfg(), runtime=CPU, progress=False)
    assert "or full precision (precision='fp32' instead of float16)." in nan_message(
        math.inf, 5, small_cfg(), runtime=FP16
    )


def test_models_outside_the_convention_are_told_what_is_expected():
    data = [(torch.ones(2, 3),)]
    with pytest.raises(ValueError, match=r"must return \(logits, loss\)"):  # logits only
        fit(nn.Linear(3, 2), data, small_cfg(), runtime=CPU, progress=False)
    with pytest.raises(
        ValueError, match=r"must return \(logits, loss\)"
    ):  # no targets in the batch: loss None
        fit(
            TinyLM(),
            [(torch.zeros(2, 3, dtype=torch.long),)],
            small_cfg(),
            runtime=CPU,
            progress=False,
        )


def test_only_trainable_params_are_optimized_and_decay_skips_vectors():
    model = TinyLM(dropout=0.0)
    model.tok_emb.weight.requires_grad_(False)  # frozen, as LoRA freezes the base model
    frozen = model.tok_emb.weight.clone()
    opt = make_optimizer(model, small_cfg(), torch.device("cpu"))
    optimized = {id(p) for group in opt.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in model.parameters() if p.requires_grad}
    decayed, plain = opt.param_groups
    assert all(p.dim() == 2 for p in decayed["params"]) and decayed["weight_decay"] > 0
    assert all(p.dim() == 1 for p in plain["params"]) and plain["weight_decay"] == 0
    head = model.lm_head.weight.clone()
    fit(model, counting_sampler(), small_cfg(max_steps=3), runtime=CPU, progress=False)
    assert torch.equal(model.tok_emb.weight, frozen) and not torch.equal(model.lm_head.weight, head)
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="nothing to train"):
        make_optimizer(model, small_cfg(), torch.device("cpu"))


class StopAt:
    """A callback that interrupts training at `step`, as a Colab disconnect or Ctrl-C would."""

    def __init__(self, step: int):
        self.step = step

    def on_step(self, step, history):
        if step == self.step:
            raise KeyboardInterrupt


def _scramble_global_rngs():
    """A new process would start from other global RNG states: resuming must restore them."""
    torch.manual_seed(12345), np.random.seed(12345), random.seed(12345)


# fp16 with a GradScaler is what a T4 runs; CPU autocast in float16 stands in for it here
FP16 = Runtime(
    device=torch.device("cpu"),
    dtype=torch.float16,
    platform="local",
    device_name="CPU, fp16 autocast",
)


@pytest.mark.parametrize("kind", ["sampler", "list", "fp16-scaler"])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, kind):
    """12 steps in one go == 6 steps (killed after the checkpoint at step 4) + resume from step 4.
    Dropout and random batch sampling make this fail if any RNG state or the optimizer is not restored."""
    data = (
        [counting_sampler()(torch.Generator().manual_seed(i)) for i in range(5)]
        if kind == "list"
        else counting_sampler()
    )
    val = counting_sampler(batch_size=4)
    rt, cfg = (FP16, small_cfg(precision=None)) if kind == "fp16-scaler" else (CPU, small_cfg())
    reference = TinyLM(seed=1)
    ref_hist = fit(reference, data, cfg, val_data=val, runtime=rt, progress=False)

    with pytest.raises(KeyboardInterrupt):
        fit(
            TinyLM(seed=1),
            data,
            cfg,
            val_data=val,
            runtime=rt,
            ckpt_dir=tmp_path,
            callbacks=[StopAt(6)],
            progress=False,
        )
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_00000004"
    _scramble_global_rngs()
    resumed = TinyLM(seed=99)  # different initial weights: all must come from the checkpoint
    hist = fit(resumed, data, cfg, val_data=val, runtime=rt, ckpt_dir=tmp_path, progress=False)
    for (name, a), b in zip(reference.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    assert hist.train_loss == ref_hist.train_loss and hist.val_loss == ref_hist.val_loss
    assert (
        hist.steps == list(range(1, 13))
        and checkpoint.latest_checkpoint(tmp_path).name == "step_00000012"
    )
    scaler = json.loads((tmp_path / "step_00000012" / "state.json").read_text())["scaler"]
    assert scaler.get("_growth_tracker") == (
        12 if kind == "fp16-scaler" else None
    )  # 12 good steps, resume included


KILLED_RUN = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)  # pinned, as the resumed run is: exact resume needs the same thread count
from llmcourse import checkpoint
from test_train import TinyLM, counting_sampler, small_cfg, CPU
from llmcourse.train import fit

real_save_file = checkpoint.save_file
def save_file(tensors, path, metadata=None):  # die half-way through writing the step-8 checkpoint
    if "step_00000008" in path and "optimizer" in path:
        os.kill(os.getpid(), signal.SIGKILL)
    real_save_file(tensors, path, metadata=metadata)
checkpoint.save_file = save_file
fit(TinyLM(seed=1), counting_sampler(), small_cfg(), runtime=CPU, ckpt_dir={ckpt!r}, progress=False)
"""


@pytest.mark.slow  # a second Python process has to import torch
def test_sigkill_during_a_save_then_resume_gives_identical_weights(tmp_path):
    """A real process, killed with SIGKILL while writing its second checkpoint, leaves a half-written
    temporary folder; resuming ignores it, starts from step 4, and ends with the reference weights."""
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), ckpt=str(tmp_path))
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "LLMCOURSE_THREADS": "1",
        "PYTHONPATH": str(Path(__file__).parents[1]),
    }
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers and checkpoint.latest_checkpoint(tmp_path).name == "step_00000004"
    assert checkpoint.read_meta(tmp_path / "step_00000004")["environment"]["threads"] == 1

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed run's count, whatever this process was started with
    try:
        reference = TinyLM(seed=1)
        fit(reference, counting_sampler(), small_cfg(), runtime=CPU, progress=False)
        _scramble_global_rngs()
        resumed = TinyLM(seed=7)
        with warnings.catch_warnings():
            warnings.simplefilter("error", InexactResumeWarning)  # same environment: no warning
            fit(
                resumed,
                counting_sampler(),
                small_cfg(),
                runtime=CPU,
                ckpt_dir=tmp_path,
                progress=False,
            )
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(reference.parameters(), resumed.parameters()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000012"]  # leftovers cleaned up


def test_callback_can_stop_early_and_the_stop_is_checkpointed(tmp_path):
    class Stop:
        def __init__(self):
            self.evals = []

        def on_eval(self, step, history):
            self.evals.append(step)

        def on_step(self, step, history):
            return step == 5

    stop = Stop()
    history = fit(
        TinyLM(),
        counting_sampler(),
        small_cfg(),
        val_data=counting_sampler(),
        callbacks=[stop],
        runtime=CPU,
        ckpt_dir=tmp_path,
        progress=False,
    )
    assert history.steps[-1] == 5 and stop.evals == [3]
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_00000005"


def test_damaged_checkpoint_stops_fit_with_advice_and_resume_false_starts_fresh(tmp_path):
    fit(
        TinyLM(),
        counting_sampler(),
        small_cfg(max_steps=4),
        runtime=CPU,
        ckpt_dir=tmp_path,
        progress=False,
    )
    (tmp_path / "step_00000004" / "state.json").write_text("garbage")
    with pytest.raises(checkpoint.CheckpointError, match=r"state\.json(.|\n)*resume=False"):
        fit(
            TinyLM(),
            counting_sampler(),
            small_cfg(max_steps=8),
            runtime=CPU,
            ckpt_dir=tmp_path,
            progress=False,
        )
    history = fit(
        TinyLM(),
        counting_sampler(),
        small_cfg(max_steps=3),
        runtime=CPU,
        ckpt_dir=tmp_path,
        resume=False,
        progress=False,
    )
    assert history.steps == [1, 2, 3] and [p.name for p in tmp_path.iterdir()] == ["step_00000003"]


def test_history_round_trips_through_json():
    h = History(
        steps=[1, 2],
        train_loss=[2.0, 1.5],
        lr=[0.1, 0.2],
        elapsed=[0.1, 0.2],
        val_steps=[2],
        val_loss=[float("nan")],
    )
    assert History.from_dict(json.loads(json.dumps(h.to_dict()))).steps == [1, 2]
    assert h.best_val is None and History(val_loss=[3.0, 2.5, 2.7]).best_val == 2.5


def test_live_plot_is_silent_outside_a_notebook():
    # figures other tests in this worker left open are theirs: count only the ones made here
    before = (
        set(sys.modules["matplotlib.pyplot"].get_fignums())
        if "matplotlib.pyplot" in sys.modules
        else set()
    )
    plot = LiveLossPlot(every=1)
    plot.on_step(1, History(steps=[1], train_loss=[1.0], lr=[0.1], elapsed=[0.0]))
    plot.on_eval(
        1,
        History(
            steps=[1], train_loss=[1.0], lr=[0.1], elapsed=[0.0], val_steps=[1], val_loss=[1.0]
        ),
    )
    assert plot._handle is None  # nothing displayed
    assert (
        "matplotlib.pyplot" not in sys.modules
        or set(sys.modules["matplotlib.pyplot"].get_fignums()) <= before
    )


def test_resume_is_announced_with_step_folder_and_how_to_start_fresh(tmp_path, capsys):
    cfg = small_cfg(max_steps=8, ckpt_every=4)
    fit(
        TinyLM(),
        counting_sampler(),
        cfg,
        runtime=CPU,
        ckpt_dir=tmp_path,
        callbacks=[_StopAfter(4)],
        progress=False,
    )
    capsys.readouterr()
    history = fit(TinyLM(), counting_sampler(), cfg, runtime=CPU, ckpt_dir=tmp_path, progress=False)
    out = capsys.readouterr().out
    assert "resuming from step 4 of 8" in out and str(tmp_path) in out and "resume=False" in out
    assert history.steps[-1] == 8 and 5 in history.steps  # it trained steps 5..8, and only those
    assert history.steps.count(4) == 1


class _StopAfter:
    def __init__(self, step):
        self.step = step

    def on_step(self, step, history):
        return step == self.step


def test_changed_learning_rate_refuses_to_resume_naming_the_field_then_trains_when_asked(tmp_path):
    """The issue's case: a learner changes the lr and re-runs the cell in the same checkpoint folder."""
    first = TinyLM(seed=1)
    fit(
        first,
        counting_sampler(),
        small_cfg(lr=0.02),
        runtime=CPU,
        ckpt_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(checkpoint.CheckpointError) as err:
        fit(
            TinyLM(seed=1),
            counting_sampler(),
            small_cfg(lr=0.005),
            runtime=CPU,
            ckpt_dir=tmp_path,
            progress=False,
        )
    message = str(err.value)
    assert "lr: 0.02 -> 0.005" in message and "resume=False" in message and str(tmp_path) in message
    assert "seed" not in message  # only the fields that differ are named
    # the explicit restart trains all 12 steps with the new lr from the first step on
    second = TinyLM(seed=1)
    history = fit(
        second,
        counting_sampler(),
        small_cfg(lr=0.005),
        runtime=CPU,
        ckpt_dir=tmp_path,
        resume=False,
        progress=False,
    )
    assert history.steps[0] == 1 and history.steps[-1] == 12
    assert history.lr[-1] == pytest.approx(lr_at(11, small_cfg(lr=0.005)))
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))


def test_changed_model_config_refuses_to_resume(tmp_path):
    from llmcourse.gpt import GPT, GPTConfig

    def sample(generator):
        x = torch.randint(0, 16, (2, 9), generator=generator)
        return x[:, :-1], x[:, 1:]

    cfg = small_cfg(max_steps=2, ckpt_every=1)
    fit(
        GPT(GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.2)),
        sample,
        cfg,
        runtime=CPU,
        ckpt_dir=tmp_path,
        progress=False,
    )
    with pytest.raises(checkpoint.CheckpointError, match=r"model config: dropout: 0\.2 -> 0\.1"):
        fit(
            GPT(
                GPTConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.1)
            ),
            sample,
            cfg,
            runtime=CPU,
            ckpt_dir=tmp_path,
            progress=False,
        )


def test_logging_fields_may_change_on_resume(tmp_path, capsys):
    fit(
        TinyLM(),
        counting_sampler(),
        small_cfg(max_steps=8),
        runtime=CPU,
        ckpt_dir=tmp_path,
        callbacks=[_StopAfter(4)],
        progress=False,
    )
    history = fit(
        TinyLM(),
        counting_sampler(),
        small_cfg(max_steps=8, log_every=2, eval_every=0),
        runtime=CPU,
        ckpt_dir=tmp_path,
        progress=False,
    )
    assert "resuming from step 4" in capsys.readouterr().out and history.steps[-1] == 8


def test_config_differences_names_only_changed_fields():
    from llmcourse.resume import config_differences

    assert (
        config_differences({"lr": 0.1, "betas": [0.9, 0.95]}, {"lr": 0.1, "betas": (0.9, 0.95)})
        == []
    )
    assert config_differences({"lr": 0.1}, {"lr": 0.1, "new": 3}) == ["new: (absent) -> 3"]
    assert config_differences(
        {"lr": 0.1, "log_every": 1}, {"lr": 0.2, "log_every": 5}, ignore=["log_every"]
    ) == ["lr: 0.1 -> 0.2"]
