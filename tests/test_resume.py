"""Resuming `fit` from its checkpoints: exact resume after an interruption (a callback raising, and a
real SIGKILL during a save), the resume announcement, a damaged checkpoint, and the refusal to resume
when the training or model config changed (logging fields may change). The toy task lives in
counting_task.py; the checkpoint format itself is tested in test_checkpoint.py."""

import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from counting_task import CPU, FP16, TinyLM, counting_sampler, small_cfg

from llmcourse import checkpoint
from llmcourse.resume import InexactResumeWarning
from llmcourse.train import fit, lr_at


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
from counting_task import TinyLM, counting_sampler, small_cfg, CPU
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
