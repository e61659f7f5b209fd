"""FSDP2 (ZeRO-3): 2 CPU processes over gloo learn what 1 process learns, holding half the bytes each."""

import json
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from llmcourse import fsdp
from llmcourse.cost import zero
from llmcourse.course import exercises
from llmcourse.distributed import DistEnv
from llmcourse.gpt import GPT, GPTConfig
from llmcourse.train import TrainConfig

COMMON = [
    "--size=smoke",
    "--train.max_steps=6",
    "--batch_size=8",
    "--train.precision=fp32",
    "--train.eval_every=0",
    "--resume=false",
]


def _run(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PYTEST_CURRENT_TEST", None)
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training as 1 process (whole batch of 8) and as 2 FSDP2 processes (4 each)."""
    tmp = tmp_path_factory.mktemp("fsdp")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    _run([*launch, "-m", "llmcourse.fsdp", *COMMON, f"--out_dir={tmp / 'two'}"], tmp)
    _run([sys.executable, "-m", "llmcourse.fsdp", *COMMON, f"--out_dir={tmp / 'one'}"], tmp)
    return tmp / "one", tmp / "two"


def _read(path, name):
    return json.loads((path / name).read_text())


@pytest.mark.slow
def test_two_fsdp_processes_match_one_process(runs):
    one, two = runs
    w1, w2 = load_file(one / "model.safetensors"), load_file(two / "model.safetensors")
    cfg = GPTConfig(**_read(one, "model_config.json"))
    torch.manual_seed(TrainConfig.for_size("smoke").seed)  # the entry point's initial weights
    start = GPT(cfg).state_dict()
    assert w1.keys() == w2.keys() and len(w1) > 10
    for key in w1:
        # equal up to the order of float32 sums (two half-batch gradients averaged by the
        # reduce-scatter, instead of one batch); measured: max |diff| ~ 7e-7
        torch.testing.assert_close(w2[key], w1[key], atol=2e-6, rtol=1e-5, msg=key)
        assert not torch.allclose(w1[key], start[key])  # training moved every tensor
    h1, h2 = _read(one, "history.json"), _read(two, "history.json")
    assert len(h1["train_loss"]) == 6  # smoke TrainConfig logs every step
    # the global loss: the mean of the two ranks' slice losses (float32 rounding: ~1e-7)
    torch.testing.assert_close(h2["train_loss"], h1["train_loss"], atol=1e-6, rtol=0)
    torch.testing.assert_close(h2["val_loss"], h1["val_loss"], atol=1e-6, rtol=0)
    assert h1["train_loss"][-1] < h1["train_loss"][0] - 0.2  # and it learned something


@pytest.mark.slow
def test_each_rank_holds_half_of_the_model_states(runs):
    one, two = runs
    (full,) = _read(one, "state_bytes.json")  # one process = what every DDP rank holds
    ranks = _read(two, "state_bytes.json")
    model = GPT(GPTConfig(**_read(one, "model_config.json")))
    n_params, n_tensors = model.num_params(), len(list(model.parameters()))
    assert full["weights"] == full["gradients"] == 4 * n_params  # fp32, the tied head once
    # AdamW: m and v (4 + 4 bytes per parameter) and one float32 step counter per tensor
    counters = 4 * n_tensors
    assert full["optimizer"] == 8 * n_params + counters
    # the ZeRO-3 arithmetic with fp32 weights and gradients (4 + 4) and AdamW's m and v (8)
    expected = zero.per_gpu_bytes(
        n_params, 2, "zero3", weight_bytes=4, grad_bytes=4, optimizer_bytes=8
    )
    assert len(ranks) == 2
    for r in ranks:  # every dim 0 of the smoke GPT is even: exact halves, no padding
        assert r["weights"] == expected["weights"] == full["weights"] / 2
        assert r["gradients"] == expected["gradients"] == full["gradients"] / 2
        # the step counters are scalars, kept whole on every rank
        assert r["optimizer"] == expected["optimizer"] + counters


def test_gloo_has_the_collectives_fsdp2_calls(tmp_path):
    """all_gather_single, reduce_scatter_single with AVG: what FSDP2 uses for fp32 on CPU."""
    script = tmp_path / "collectives.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo'); r = dist.get_rank()\n"
        "x = torch.arange(4.0) + 10 * r  # rank 0: 0 1 2 3, rank 1: 10 11 12 13\n"
        "out = torch.empty(2); dist.reduce_scatter_single(out, x, op=dist.ReduceOp.AVG)\n"
        "assert out.tolist() == ([5.0, 6.0] if r == 0 else [7.0, 8.0]), out\n"
        "full = torch.empty(8); dist.all_gather_single(full, x)\n"
        "assert full.tolist() == [0, 1, 2, 3, 10, 11, 12, 13], full\n"
        "dist.destroy_process_group()\n"
    )
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    _run([*launch, str(script)], tmp_path)


def test_each_rank_trains_on_its_own_half_of_the_global_batch():
    """Without this the 2-process test could pass with both ranks on the whole batch."""

    def sample(generator):
        x = torch.randint(0, 9, (8, 3), generator=generator)
        return x, x + 1

    halves = [
        fsdp.rank_slice(sample, DistEnv(r, 2))(torch.Generator().manual_seed(0)) for r in (0, 1)
    ]
    whole = sample(torch.Generator().manual_seed(0))  # every rank draws the same global batch
    assert halves[0][0].shape == (4, 3)
    torch.testing.assert_close(torch.cat([halves[0][0], halves[1][0]]), whole[0], rtol=0, atol=0)
    torch.testing.assert_close(torch.cat([halves[0][1], halves[1][1]]), whole[1], rtol=0, atol=0)


@given(dim0=st.integers(1, 300), world=st.integers(1, 16))
def test_shard_rows_matches_fsdp2s_torch_chunk(dim0, world):
    # FSDP2 cuts dim 0 with torch.chunk and pads the list with empty pieces (_chunk_with_empty)
    pieces = list(torch.arange(dim0).chunk(world))
    pieces += [torch.arange(0)] * (world - len(pieces))
    for rank, piece in enumerate(pieces):
        start, stop = fsdp.shard_rows(dim0, world, rank)
        assert torch.equal(torch.arange(start, stop), piece)


def test_shard_rows_exercise_rejects_a_floor_division():
    def correct(dim0, world_size, rank):
        piece = -(-dim0 // world_size)
        return min(rank * piece, dim0), min(rank * piece + piece, dim0)

    def floor(dim0, world_size, rank):  # the slip: dim0 // world_size loses the remainder rows
        piece = dim0 // world_size
        return rank * piece, (rank + 1) * piece

    exercises.check("17.shard_rows", correct, trials=20)
    with pytest.raises(exercises.ExerciseError, match="wrong value"):
        exercises.check("17.shard_rows", floor, seed=0)


def test_local_bytes_and_bad_input():
    assert fsdp.local_bytes([torch.zeros(3, 4), torch.zeros(5, dtype=torch.float16)]) == 58
    with pytest.raises(ValueError, match="torchrun"):
        fsdp.shard_model(GPT(GPTConfig.for_size("smoke")), DistEnv())
    with pytest.raises(ValueError, match="blocks"):
        fsdp.shard_model(torch.nn.Linear(2, 2), DistEnv(0, 2))
    with pytest.raises(ValueError, match="shard_model"):
        fsdp.train(torch.nn.Linear(2, 2), lambda g: None, TrainConfig(), DistEnv(0, 2))
