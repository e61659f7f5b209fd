"""Checkpoints: exact round trips (weights, tied weights, optimizer, RNGs), atomic writes, and a
clear CheckpointError for every kind of damage (truncation, garbage, another model's weights)."""

import json
import random

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from llmcourse import checkpoint
from llmcourse.checkpoint import CheckpointError


class Tied(nn.Module):
    """A tiny LM whose output matrix is its embedding matrix (GPT-2's weight tying)."""

    def __init__(self, vocab: int = 10, width: int = 4):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, width)
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.tok_emb.weight

    def forward(self, idx):
        return self.lm_head(self.norm(self.tok_emb(idx)))


def trained(seed: int = 0, width: int = 4):
    """A Tied model, its AdamW after two steps, and a generator: a realistic state to save."""
    torch.manual_seed(seed)
    model = Tied(width=width)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    for _ in range(2):
        model(torch.arange(10)).logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
    return model, opt, torch.Generator().manual_seed(seed)


def save(tmp_path, step=3):
    model, opt, gen = trained()
    return checkpoint.save_checkpoint(
        tmp_path,
        step,
        model,
        optimizer=opt,
        scaler=None,
        generator=gen,
        history={"steps": [1]},
        config={"lr": 0.1},
    )


def test_tied_weights_round_trip_stored_once(tmp_path):
    model, _, _ = trained()
    with pytest.raises(RuntimeError):  # why we dedupe: plain safetensors refuses shared tensors
        save_file(model.state_dict(), str(tmp_path / "plain.safetensors"))
    checkpoint.save_model(model, tmp_path / "w.safetensors")
    assert sorted(load_file(str(tmp_path / "w.safetensors"))) == [
        "norm.bias",
        "norm.weight",
        "tok_emb.weight",
    ]
    fresh = Tied()
    checkpoint.load_model_weights(fresh, tmp_path / "w.safetensors")
    assert fresh.lm_head.weight is fresh.tok_emb.weight  # still tied after loading
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_restores_optimizer_and_every_rng(tmp_path):
    model, opt, gen = trained()
    path = checkpoint.save_checkpoint(
        tmp_path,
        7,
        model,
        optimizer=opt,
        scaler=None,
        generator=gen,
        history={"steps": [7]},
        config={"lr": 0.1},
    )

    def draws(g):
        return torch.rand(3, generator=g), torch.rand(3), np.random.rand(3), random.random()

    after_save = draws(gen)
    model2, opt2, gen2 = trained(seed=1)  # other weights, other optimizer state, other generator
    state = checkpoint.load_checkpoint(
        tmp_path, model2, optimizer=opt2, scaler=None, generator=gen2
    )
    assert state["step"] == 7 and state["path"] == path and state["history"] == {"steps": [7]}
    for a, b in zip(after_save, draws(gen2)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    for (i, s), s2 in zip(opt.state_dict()["state"].items(), opt2.state_dict()["state"].values()):
        assert all(torch.equal(s[k], s2[k]) for k in s), i
    assert opt2.state_dict()["param_groups"][0]["lr"] == 0.1
    assert torch.equal(model.tok_emb.weight, model2.tok_emb.weight)


def test_leftover_temporary_folder_is_ignored_and_cleaned_up(tmp_path):
    """A save killed half-way leaves `.tmp-step_...`: never picked as latest, deleted by the next save."""
    save(tmp_path, step=3)
    crashed = tmp_path / ".tmp-step_00000009-4242"
    crashed.mkdir()
    (crashed / "model.safetensors").write_bytes(b"half a file")
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_00000003"
    assert checkpoint.load_checkpoint(tmp_path, Tied())["step"] == 3
    save(tmp_path, step=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step_00000004"
    ]  # old one and leftover gone
    assert checkpoint.latest_checkpoint(tmp_path / "nowhere") is None


def test_latest_is_the_highest_step_not_the_last_name(tmp_path):
    for name in ["step_9", "step_10", ".tmp-step_11", "step_12.txt"]:
        (tmp_path / name).mkdir()
    assert (
        checkpoint.latest_checkpoint(tmp_path).name == "step_10"
    )  # 10 > 9, though "step_9" > "step_10"


def test_truncated_weights_raise_checkpoint_error(tmp_path):
    path = save(tmp_path)
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: has \d+ bytes.*incomplete(.|\n)*Delete"
    ):
        checkpoint.load_checkpoint(path, Tied())
    # same size but garbage: the size check passes, safetensors fails, we still say which file
    (path / "model.safetensors").write_bytes(b"\xff" * len(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot read it"):
        checkpoint.load_checkpoint(path, Tied())
    (path / "optimizer.safetensors").unlink()
    with pytest.raises(
        CheckpointError, match=r"optimizer\.safetensors: has 0 bytes, \d+ expected: .* missing"
    ):
        checkpoint.load_checkpoint(path, Tied())


def test_garbage_state_json_raises_checkpoint_error(tmp_path):
    path = save(tmp_path)
    (path / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"state\.json: cannot read it.*JSONDecodeError"):
        checkpoint.load_checkpoint(path, Tied())
    (path / "state.json").write_text(json.dumps({"format_version": 99, "step": 1}))
    with pytest.raises(CheckpointError, match="format version 99"):
        checkpoint.load_checkpoint(path, Tied())


def test_other_models_weights_raise_before_anything_is_changed(tmp_path):
    path = save(tmp_path)
    wide = Tied(width=6)
    before = wide.tok_emb.weight.clone()
    with pytest.raises(
        CheckpointError, match=r"wrong shapes: tok_emb\.weight \(10, 4\) in the file vs \(10, 6\)"
    ):
        checkpoint.load_checkpoint(path, wide)
    assert torch.equal(wide.tok_emb.weight, before)
    with pytest.raises(CheckpointError, match=r"missing keys: \['extra'\]"):
        model = Tied()
        model.extra = nn.Parameter(torch.zeros(1))
        checkpoint.load_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="unexpected keys(.|\n)*another config") as info:
        checkpoint.load_model_weights(nn.Linear(4, 10, bias=False), path / "model.safetensors")
    assert "Delete" not in str(info.value)  # plain weights: never advise deleting the user's folder
    with pytest.raises(CheckpointError, match="no such file"):
        checkpoint.load_model_weights(Tied(), path / "nothing.safetensors")


def test_optimizer_of_other_parameters_is_refused(tmp_path):
    path = save(tmp_path)
    model = Tied()
    opt = torch.optim.AdamW([model.norm.weight], lr=0.1)  # one trainable tensor instead of three
    with pytest.raises(CheckpointError, match="parameter groups of sizes"):
        checkpoint.load_checkpoint(path, model, optimizer=opt)
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        checkpoint.load_checkpoint(tmp_path / "empty", model)


def _fit_with_threads(n: int, ckpt_dir, *, stop_at: int | None = None):
    """Train test_train's TinyLM for its 12 steps on `n` CPU threads, checkpointing in `ckpt_dir`;
    `stop_at` stops (and checkpoints) early, as an interrupted run would."""
    from counting_task import CPU, TinyLM, counting_sampler, small_cfg

    from llmcourse.train import fit

    class Stop:
        def on_step(self, step, history):
            return step == stop_at

    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        model = TinyLM(seed=1)
        fit(
            model,
            counting_sampler(),
            small_cfg(),
            callbacks=[Stop()],
            runtime=CPU,
            ckpt_dir=ckpt_dir,
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    return model


def test_checkpoint_records_device_precision_and_threads(tmp_path):
    _fit_with_threads(1, tmp_path, stop_at=4)
    env = checkpoint.read_meta(checkpoint.latest_checkpoint(tmp_path))["environment"]
    assert env == {"device": "cpu", "gpu": None, "precision": "float32", "threads": 1}


def test_resume_with_another_thread_count_warns_in_one_line(tmp_path):
    """Exact resume needs the same thread count: another one resumes, with one warning line."""
    from llmcourse.resume import InexactResumeWarning

    _fit_with_threads(1, tmp_path, stop_at=4)
    with pytest.warns(InexactResumeWarning) as caught:
        _fit_with_threads(2, tmp_path)
    (warning,) = [w for w in caught if w.category is InexactResumeWarning]
    text = str(warning.message)
    assert "threads 1 -> 2" in text and "not bit-identical" in text and "\n" not in text
    assert checkpoint.latest_checkpoint(tmp_path).name == "step_00000012"  # it did go on


def test_environment_differences_count_threads_on_a_cpu_only():
    from llmcourse.resume import environment_differences

    cpu = {"device": "cpu", "gpu": None, "precision": "float32", "threads": 4}
    assert environment_differences(cpu, {**cpu, "threads": 1}) == ["threads 4 -> 1"]
    assert environment_differences(cpu, {**cpu, "precision": "bfloat16"}) == [
        "precision float32 -> bfloat16"
    ]
    gpu = {"device": "cuda", "gpu": "Tesla T4", "precision": "float16", "threads": 4}
    assert environment_differences(gpu, {**gpu, "threads": 1}) == []
    assert environment_differences(gpu, {**gpu, "gpu": "NVIDIA L4"}) == [
        "gpu Tesla T4 -> NVIDIA L4"
    ]
    assert "older checkpoint" in environment_differences(None, cpu)[0]  # an older checkpoint
