"""llmcourse.cost.zero: per-GPU memory of DDP and ZeRO-1/2/3 against the ZeRO paper and llmcourse.cost.memory."""

import math
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmcourse.course import exercises
from llmcourse.cost import memory, zero


@pytest.mark.parametrize(
    "stage, paper_gb", [("ddp", 120.0), ("zero1", 31.4), ("zero2", 16.6), ("zero3", 1.9)]
)
def test_zero_paper_figure_1(stage, paper_gb):
    """Rajbhandari et al. 2020, Figure 1: Psi = 7.5B, N_d = 64, K = 12 (mixed-precision Adam).
    ddp (2+2+12) x 7.5 = 120; zero1 4 x 7.5 + 12 x 7.5/64 = 30 + 1.406 = 31.41;
    zero2 2 x 7.5 + 14 x 7.5/64 = 15 + 1.641 = 16.64; zero3 16 x 7.5/64 = 1.875.
    The paper prints one decimal, so we compare to within 0.05 GB."""
    got = zero.per_gpu_bytes(7.5e9, 64, stage)["total"] / 1e9
    assert got == pytest.approx(paper_gb, abs=0.05)


def test_ddp_matches_the_single_gpu_memory_estimate():
    """DDP keeps on each GPU exactly what one GPU needs: memory.training_memory's three state rows."""
    one = memory.training_memory(7e9, precision="bf16", optimizer="adamw", method="full")
    rows = zero.per_gpu_bytes(7e9, 8, "ddp")
    assert rows["weights"] == one.weights and rows["gradients"] == one.gradients
    assert rows["optimizer"] == one.optimizer


@given(n=st.floats(1e6, 1e12), gpus=st.integers(1, 4096), act=st.floats(0, 1e11))
def test_stages_never_use_more_memory_and_one_gpu_shards_nothing(n, gpus, act):
    totals = [zero.per_gpu_bytes(n, gpus, s, activation_bytes=act)["total"] for s in zero.STAGES]
    assert all(a >= b * (1 - 1e-12) for a, b in pairwise(totals))  # each stage shards more
    single = [zero.per_gpu_bytes(n, 1, s, activation_bytes=act)["total"] for s in zero.STAGES]
    assert max(single) == pytest.approx(min(single), rel=1e-12)  # nothing to shard over one GPU
    z3 = zero.per_gpu_bytes(n, gpus, "zero3", activation_bytes=act)
    assert z3["total"] == pytest.approx(
        16 * n / gpus + act, rel=1e-12
    )  # only activations stay whole


def test_min_gpus_is_the_smallest_count_that_fits():
    # 13B on 80 GB: zero1 52 + 156/n, zero2 26 + 182/n, zero3 208/n  ->  6, 4 and 3 GPUs
    for stage, expected in (("zero1", 6), ("zero2", 4), ("zero3", 3)):
        n = zero.min_gpus(13e9, 80, stage)
        assert n == expected
        assert (
            zero.per_gpu_bytes(13e9, n, stage)["total"]
            <= 80e9
            < zero.per_gpu_bytes(13e9, n - 1, stage)["total"]
        )
    # 70B: ZeRO-1 keeps 4 x 70 = 280 GB of 16-bit weights and gradients on every GPU: never fits 80 GB
    assert zero.min_gpus(70e9, 80, "zero1") is None and zero.min_gpus(70e9, 80, "ddp") is None
    assert zero.min_gpus(1e9, 80, "ddp") == 1
    assert zero.min_gpus(70e9, 80, "zero3") == math.ceil(16 * 70 / 80)  # 14


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="stage"):
        zero.per_gpu_bytes(1e9, 8, "zero4")
    with pytest.raises(ValueError, match="n_gpus"):
        zero.per_gpu_bytes(1e9, 0, "ddp")


def test_exercise_accepts_a_correct_solution_and_rejects_ddp_everywhere():
    def correct(n, g, stage):
        sharded = {"ddp": 0, "zero1": 12, "zero2": 14, "zero3": 16}[stage]
        return n * (16 - sharded) + n * sharded / g

    exercises.check("17.zero_bytes", correct, trials=10)
    with pytest.raises(exercises.ExerciseError, match="wrong value"):
        exercises.check("17.zero_bytes", lambda n, g, stage: 16.0 * n, trials=10)
