"""Data parallelism: 2 CPU processes under torchrun train exactly like 1 process with the same global batch."""
import os
import subprocess
import sys

import pytest
import torch

from llmcourse.checkpoint import load_model_weights
from llmcourse.distributed import DistEnv, shard
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.runtime import seed_all
from llmcourse.train import TrainConfig
from llmcourse.vocab import CharVocab


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
    common = ["-m", "llmcourse.cli.pretrain", "--size=smoke", "--train.max_steps=6", "--batch_size=8",
              "--train.grad_accum_steps=2", "--resume=false"]
    _run([sys.executable, *common, f"--out_dir={tmp_path / 'one'}"], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *common,
          f"--out_dir={tmp_path / 'two'}"], tmp_path)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    seed_all(TrainConfig.for_size("smoke").seed)  # the CLI's initial weights, before training
    start = GPT(GPTConfig.for_size("smoke", vocab_size=len(CharVocab.load(tmp_path / "one" / "vocab.json"))))
    moved = 0
    for key in one:
        # same result up to the order of floating-point sums (all-reduce vs one big batch)
        torch.testing.assert_close(two[key], one[key], atol=2e-6, rtol=1e-5, msg=key)
        moved += not torch.allclose(one[key], start.state_dict()[key])
    assert moved == len(one)  # training really changed every tensor
