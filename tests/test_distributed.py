"""Data parallelism: 2 CPU processes under torchrun train exactly like 1 process with the same global batch."""

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DistributedSampler

from llmcourse.course import exercises
from llmcourse.checkpoint import load_model_weights
from llmcourse.distributed import DistEnv, micro_batch_plan, sampler_indices, shard
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.runtime import seed_all
from llmcourse.train import TrainConfig
from llmcourse.data.vocab import CharVocab


def test_shard_splits_the_global_batch_evenly():
    batch = {"x": torch.arange(8).view(4, 2), "y": (torch.arange(4), torch.arange(4) * 2)}
    a, b = shard(batch, DistEnv(0, 2)), shard(batch, DistEnv(1, 2))
    assert torch.equal(torch.cat([a["x"], b["x"]]), batch["x"])
    assert torch.equal(b["y"][1], torch.tensor([4, 6]))
    assert shard(batch, DistEnv()) is batch
    with pytest.raises(ValueError, match="multiple"):
        shard(torch.zeros(3, 2), DistEnv(0, 2))


def _run(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "LLMCOURSE_SIZE": "smoke"}
    env.pop("PYTEST_CURRENT_TEST", None)
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def _weights(path):
    vocab = CharVocab.load(path / "vocab.json")
    cfg = GPTConfig.for_size("smoke", vocab_size=len(vocab))
    model = GPT(cfg)
    load_model_weights(model, path / "model.safetensors")
    return model.state_dict()


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    common = [
        "-m",
        "llmcourse.cli.pretrain",
        "--size=smoke",
        "--train.max_steps=6",
        "--batch_size=8",
        "--train.grad_accum_steps=2",
        "--resume=false",
    ]
    _run([sys.executable, *common, f"--out_dir={tmp_path / 'one'}"], tmp_path)
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            *common,
            f"--out_dir={tmp_path / 'two'}",
        ],
        tmp_path,
    )
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    seed_all(TrainConfig.for_size("smoke").seed)  # the CLI's initial weights, before training
    start = GPT(
        GPTConfig.for_size("smoke", vocab_size=len(CharVocab.load(tmp_path / "one" / "vocab.json")))
    )
    moved = 0
    for key in one:
        # same result up to the order of floating-point sums (all-reduce vs one big batch)
        torch.testing.assert_close(two[key], one[key], atol=2e-6, rtol=1e-5, msg=key)
        moved += not torch.allclose(one[key], start.state_dict()[key])
    assert moved == len(one)  # training really changed every tensor


@given(n=st.integers(1, 50), world=st.integers(1, 9), data=st.data())
def test_sampler_indices_match_torch_distributed_sampler(n, world, data):
    rank = data.draw(st.integers(0, world - 1))
    expected = list(DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False))
    assert sampler_indices(n, world, rank) == expected


def test_sampler_indices_exercise_rejects_contiguous_slices():
    def correct(n, world_size, rank):
        per_rank = -(-n // world_size)  # ceil(n / world_size)
        return [(rank + j * world_size) % n for j in range(per_rank)]

    def contiguous(
        n, world_size, rank
    ):  # what `shard` does to a batch, but not what the sampler does
        per_rank = -(-n // world_size)
        return [i % n for i in range(rank * per_rank, (rank + 1) * per_rank)]

    exercises.check("17.sampler_indices", correct, trials=20)
    with pytest.raises(exercises.ExerciseError, match="wrong value"):
        exercises.check("17.sampler_indices", contiguous, seed=0)
    with pytest.raises(exercises.ExerciseError):  # no padding: ranks get different numbers of items
        exercises.check("17.sampler_indices", lambda n, w, r: list(range(r, n, w)), seed=0)


def test_micro_batch_plan():
    """96 sequences on 4 GPUs = 24 each; at most 16 at a time: 12 x 2 (16 does not divide 24)."""
    assert micro_batch_plan(96, 4, 16) == (12, 2)
    assert micro_batch_plan(512, 8, 1000) == (64, 1)

    def correct(global_batch, n_gpus, max_micro_batch):
        per_gpu = global_batch // n_gpus
        micro = min(per_gpu, max_micro_batch)
        while per_gpu % micro:
            micro -= 1
        return micro, per_gpu // micro

    def capped(
        global_batch, n_gpus, max_micro_batch
    ):  # the slip: the cap need not divide the share
        micro = min(global_batch // n_gpus, max_micro_batch)
        return micro, global_batch // (n_gpus * micro)

    exercises.check("17.micro_batch_plan", correct, trials=20)
    with pytest.raises(exercises.ExerciseError, match="wrong value"):
        exercises.check("17.micro_batch_plan", capped, seed=0)
    with pytest.raises(exercises.ExerciseError, match="wrong value"):  # forgot the GPUs
        exercises.check("17.micro_batch_plan", lambda g, n, m: correct(g, 1, m), seed=0)
