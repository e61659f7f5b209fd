"""Compute estimates (hand-derived), the power-law fit, the callbacks inside fit, and 08's exercises."""

import math

import pytest
import torch

from llmcourse.course import exercises
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.pretraining import (
    SamplePrinter,
    SimulatedDisconnect,
    StopAt,
    fit_power_law,
    flops_per_token,
    train_seconds,
    unigram_loss,
)
from llmcourse.train import TrainConfig, fit


def test_flops_and_time_golden():
    # nanoGPT's baby GPT: N = 10.65M non-position parameters, 6 layers, T = 256, d = 384:
    # 6N = 63.9e6, attention 12 * 6 * 256 * 384 = 7,077,888 per token.
    assert (
        flops_per_token(10_650_000, n_layer=6, block_size=256, n_embd=384)
        == 6 * 10_650_000 + 7_077_888
    )
    # 5000 steps x 64 x 256 tokens at that rate on a T4 (65 TFLOP/s) at 30% MFU
    total = flops_per_token(10_650_000, n_layer=6, block_size=256, n_embd=384) * 5000 * 64 * 256
    assert train_seconds(total, 65.0, 0.3) == pytest.approx(total / 19.5e12)
    with pytest.raises(ValueError):
        train_seconds(1.0, 65.0, 0.0)


def test_power_law_recovers_its_parameters():
    xs = [1e5, 3e5, 1e6, 3e6]
    a, b = fit_power_law(xs, [7.0 * x**-0.08 for x in xs])
    assert a == pytest.approx(7.0, rel=1e-9) and b == pytest.approx(-0.08, abs=1e-12)
    with pytest.raises(ValueError):
        fit_power_law([1.0, 1.0], [2.0, 3.0])


def test_unigram_loss_golden_and_beaten_by_training():
    # p(0) = 4/6, p(1) = 2/6 after add-one smoothing of the counts (3, 1); token 2 is unseen: 1/7 of 7
    assert unigram_loss([0, 0, 0, 1], [0, 1], 2) == pytest.approx(
        -(math.log(4 / 6) + math.log(2 / 6)) / 2
    )
    assert unigram_loss([0, 0, 0, 1], [2], 3) == pytest.approx(-math.log(1 / 7))
    # a uniform text: the unigram loss is ln V; a GPT trained on "next = this + 1" goes far below it
    ids = torch.arange(8).repeat(50)
    assert unigram_loss(ids, ids, 8) == pytest.approx(math.log(8))
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    h = fit(
        model,
        _data,
        TrainConfig(max_steps=60, lr=1e-2, warmup_steps=5, eval_every=0),
        val_data=_data,
        progress=False,
    )
    assert h.val_loss[-1] < 0.5 * math.log(8)


def _data(g):
    x = torch.randint(0, 8, (4, 8), generator=g)
    return x, (x + 1) % 8  # next token = this one + 1: learnable


def test_stop_at_and_sample_printer_in_fit(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0))
    lines = []
    printer = SamplePrinter(
        model,
        lambda ids: " ".join(map(str, ids)),
        [0, 1],
        max_new_tokens=5,
        every=2,
        printer=lines.append,
    )
    cfg = TrainConfig(
        max_steps=12, warmup_steps=1, eval_every=2, eval_batches=1, ckpt_every=0, log_every=1
    )
    h = fit(model, _data, cfg, val_data=_data, callbacks=[printer, StopAt(6)], progress=False)
    assert h.steps[-1] == 6  # stopped after step 6
    assert (
        len(h.val_steps) == 3 and len(lines) == 2
    )  # evals at steps 2, 4, 6; printed at the 1st and 2nd
    assert lines[0].startswith("--- step 2, val loss") and lines[1].startswith("--- step 4,")
    assert len(lines[0].splitlines()[1].split()) == 5
    assert model.training  # the sampler restored train mode


def test_crash_loses_work_since_the_last_checkpoint_and_resume_is_exact(tmp_path):
    cfg = TrainConfig(max_steps=10, warmup_steps=1, eval_every=0, ckpt_every=4, log_every=1)

    def run(callbacks=(), ckpt_dir=None):
        torch.manual_seed(0)
        m = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
        return m, fit(m, _data, cfg, callbacks=callbacks, ckpt_dir=ckpt_dir, progress=False)

    with pytest.raises(SimulatedDisconnect):
        run([StopAt(6, crash=True)], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000004"]  # steps 5-6 are lost
    resumed, h = run(ckpt_dir=tmp_path)
    straight, _ = run()
    assert h.steps[-1] == 10
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)


def test_exercises():
    exercises.check("08.bits_per_char", lambda loss, nt, nc: loss / math.log(2) * nt / nc, seed=0)
    with pytest.raises(exercises.ExerciseError):  # per token instead of per character
        exercises.check("08.bits_per_char", lambda loss, nt, nc: loss / math.log(2), seed=0)
    exercises.check(
        "08.train_seconds", lambda n, d, peak, mfu: 6 * n * d / (peak * 1e12 * mfu), seed=0
    )
    with pytest.raises(exercises.ExerciseError):  # forgot the backward pass: 2ND instead of 6ND
        exercises.check(
            "08.train_seconds", lambda n, d, peak, mfu: 2 * n * d / (peak * 1e12 * mfu), seed=0
        )


def test_lr_schedule_exercise_matches_fit():
    """The reference is the schedule fit uses; at step 0 the warmup already gives lr / W (not 0)."""

    def correct(step, max_steps, warmup, lr, ratio):
        if step < warmup:
            return lr * (step + 1) / warmup
        floor = lr * ratio
        p = min(1.0, (step - warmup) / max(1, max_steps - warmup))
        return floor + (lr - floor) * (1 + math.cos(math.pi * p)) / 2

    exercises.check("08.lr_schedule", correct, trials=30, seed=0)
    with pytest.raises(
        exercises.ExerciseError, match="08.lr_schedule"
    ):  # warmup from 0: step 0 gets lr 0
        exercises.check(
            "08.lr_schedule",
            lambda s, m, w, lr, r: correct(s, m, w, lr, r) if s >= w else lr * s / w,
            seed=0,
        )
    with pytest.raises(exercises.ExerciseError):  # decays to 0 instead of to the floor
        exercises.check("08.lr_schedule", lambda s, m, w, lr, r: correct(s, m, w, lr, 0.0), seed=0)
