"""The training loop: lr schedule, learning happens, gradient accumulation, NaN guard, models outside
the convention, frozen parameters, callbacks, History and the silent live plot. Checkpointing and exact
resume are tested in test_resume.py; the toy task lives in counting_task.py."""

import json
import math
import sys

import pytest
import torch
from counting_task import CPU, FP16, V, TinyLM, counting_sampler, small_cfg
from torch import nn

from llmcourse import checkpoint
from llmcourse.config import to_dict
from llmcourse.course.live_plot import LiveLossPlot
from llmcourse.train import (
    History,
    TrainConfig,
    estimate_loss,
    fit,
    lr_at,
    make_optimizer,
    nan_message,
)


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
