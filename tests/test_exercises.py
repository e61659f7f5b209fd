"""llmcourse.course.exercises: correct solutions pass; each kind of mistake gets a message that names it."""
from __future__ import annotations

import random

import pytest
import torch

from llmcourse.course import exercises
from llmcourse.course.exercises import ExerciseError


def _naive_softmax(x: torch.Tensor) -> torch.Tensor:
    return x.exp() / x.exp().sum(dim=-1, keepdim=True)  # overflows for large x: the classic bug


def _stable_softmax(x: torch.Tensor) -> torch.Tensor:
    z = x - x.amax(dim=-1, keepdim=True)
    return z.exp() / z.exp().sum(dim=-1, keepdim=True)


def _cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    return -logp[torch.arange(len(targets)), targets].mean()


CORRECT = {
    "softmax": _stable_softmax,
    "cross_entropy": _cross_entropy,
    "00.memory_inference": lambda n, p: n * {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 0.5}[p],
    "00.adam_state_bytes": lambda n, master: 2 * 4 * n + (4 * n if master else 0),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_solutions_pass(name, capsys):
    exercises.check(name, CORRECT[name], trials=10)
    fixed = len(exercises.get(name).fixed)
    assert capsys.readouterr().out == f"✓ {name}: passed 10 random cases and {fixed} fixed ones\n"


def test_golden_memory_numbers():
    """7e9 params: 28 GB in fp32, 14 GB in bf16, 3.5 GB in int4; Adam: 8 B/param, 12 B with fp32 master weights."""
    assert exercises.memory_inference(7_000_000_000, "fp32") == 28_000_000_000
    assert exercises.memory_inference(7_000_000_000, "bf16") == 14_000_000_000
    assert exercises.memory_inference(7_000_000_000, "int4") == 3_500_000_000
    assert exercises.adam_state_bytes(1000, False) == 8000
    assert exercises.adam_state_bytes(1000, True) == 12000


def test_wrong_shape_is_reported():
    with pytest.raises(ExerciseError, match=r"wrong shape: expected \(.*\), got \((.*, )?1,?\)"):
        exercises.check("softmax", lambda x: _stable_softmax(x).sum(dim=-1, keepdim=True))


def test_wrong_values_show_diff_and_an_example():
    with pytest.raises(ExerciseError) as info:
        exercises.check("softmax", lambda x: _stable_softmax(x) * 0.5, seed=0)
    msg = str(info.value)
    assert "wrong values: max abs diff" in msg and "on input: tensor(shape=" in msg
    assert "seed=0" in msg and "hint:" in msg


def test_overflow_is_caught():
    """exp(1000) overflows float32 (max 3.4e38 ~ e^88.7): the naive softmax returns NaN on the fixed
    edge case [1000, 0, -1000], whatever the random inputs."""
    with pytest.raises(ExerciseError, match=r"case 1 of .*NaN/inf"):
        exercises.check("softmax", _naive_softmax)


def test_wrong_type_and_missing_return():
    with pytest.raises(ExerciseError, match=r"expected torch.Tensor, got float"):
        exercises.check("cross_entropy", lambda lo, t: _cross_entropy(lo, t).item())
    with pytest.raises(ExerciseError, match="returned None"):
        exercises.check("softmax", lambda x: None)
    with pytest.raises(ExerciseError, match="expected a number, got str"):
        exercises.check("00.memory_inference", lambda n, p: "14 GB")


def test_exact_comparison_names_both_values():
    with pytest.raises(ExerciseError, match=r"wrong value: expected \d+, got \d+"):
        exercises.check("00.adam_state_bytes", lambda n, master: 8 * n)  # forgets the master weights


def test_learner_exception_is_reported_with_its_message():
    def broken(x):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(ExerciseError, match="raised RuntimeError: mat1 and mat2 shapes") as info:
        exercises.check("softmax", broken)
    assert isinstance(info.value.__cause__, RuntimeError)  # the learner's traceback is kept


def test_student_stub_gets_a_friendly_message():
    def stub(x):
        raise NotImplementedError("Exercise: write your solution here")

    with pytest.raises(ExerciseError, match="not implemented yet"):
        exercises.check("softmax", stub)


def test_inputs_are_fresh_and_replayable():
    def inputs_seen(seed: int | None) -> list[list[float]]:
        seen: list[list[float]] = []
        exercises.check("softmax", lambda x: seen.append(x.flatten().tolist()) or _stable_softmax(x),
                        trials=2, seed=seed)
        return seen[len(exercises.get("softmax").fixed):]  # the random cases only

    assert inputs_seen(None) != inputs_seen(None)  # new random inputs on each call
    assert inputs_seen(7) == inputs_seen(7)  # a seed replays them


def test_learner_cannot_corrupt_the_reference():
    def in_place(x):
        x.fill_(0.0)  # mutates its argument, then returns the wrong thing
        return torch.softmax(x, dim=-1)

    with pytest.raises(ExerciseError, match="wrong values"):
        exercises.check("softmax", in_place)


def test_global_rng_untouched():
    torch.manual_seed(0)
    random.seed(0)
    exercises.check("softmax", _stable_softmax)
    a, b = torch.rand(1).item(), random.random()
    torch.manual_seed(0)
    random.seed(0)
    assert (torch.rand(1).item(), random.random()) == (a, b)


def test_registering_a_topic_exercise():
    def _inputs(rng: random.Random) -> tuple[int]:
        return (rng.randint(1, 6),)

    @exercises.exercise("99.causal_mask", inputs=_inputs, compare="exact")
    def causal_mask(t: int) -> torch.Tensor:
        """causal_mask(t) -> (t, t) bool tensor, True where a query may attend (key <= query)."""
        return torch.ones(t, t).tril().bool()

    try:
        assert "99.causal_mask" in exercises.names()
        assert causal_mask(2).tolist() == [[True, False], [True, True]]  # the decorator returns the function
        exercises.check("99.causal_mask", lambda t: torch.ones(t, t, dtype=torch.bool).tril())
        with pytest.raises(ExerciseError, match="wrong values"):
            exercises.check("99.causal_mask", lambda t: torch.ones(t, t, dtype=torch.bool).triu(), trials=20)
        with pytest.raises(ValueError, match="already registered"):
            exercises.register("99.causal_mask", _stable_softmax, _inputs)
    finally:
        exercises._REGISTRY.pop("99.causal_mask", None)


def test_unknown_name_and_bad_comparison():
    with pytest.raises(KeyError, match="Known: .*softmax"):
        exercises.check("no.such_exercise", _stable_softmax)
    with pytest.raises(ValueError, match="compare="):
        exercises.register("99.x", _stable_softmax, lambda rng: (), compare="roughly")


def test_describe_prints_the_task(capsys):
    exercises.describe("cross_entropy")
    assert capsys.readouterr().out.startswith("cross_entropy: cross_entropy(logits (N, V), targets (N,)")


def test_exact_comparison_of_tensors():
    """An int32 answer equals an int64 reference; a float answer that truncates to it does not."""
    def _inputs(rng: random.Random) -> tuple[int]:
        return (rng.randint(2, 6),)

    exercises.register("99.arange", lambda n: torch.arange(n), _inputs, compare="exact")
    try:
        exercises.check("99.arange", lambda n: torch.arange(n, dtype=torch.int32))
        with pytest.raises(ExerciseError, match="wrong values"):
            exercises.check("99.arange", lambda n: torch.arange(n) + 0.25)
    finally:
        exercises._REGISTRY.pop("99.arange", None)


def test_matching_infinities_are_not_blamed():
    """Masked logits are -inf on both sides: the message must point at the real difference."""
    exercises.register("test.masked", lambda x: x.masked_fill(x < 0, float("-inf")),
                       inputs=lambda rng: (torch.tensor([-1.0, 2.0, 3.0]),), replace=True)
    with pytest.raises(ExerciseError) as info:
        exercises.check("test.masked", lambda x: x.masked_fill(x < 0, float("-inf")) + torch.tensor([0, 0, 1.0]))
    msg = str(info.value)
    assert "at index (2,) expected 3, got 4" in msg and "NaN/inf" not in msg
