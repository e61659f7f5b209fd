"""llmcourse.course.exercises: correct solutions pass; each kind of mistake gets a message that names it."""

from __future__ import annotations

import ast
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

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
    "00.memory_inference": lambda n, p: (
        n * {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int4": 0.5}[p]
    ),
    "00.adam_state_bytes": lambda n, master: 2 * 4 * n + (4 * n if master else 0),
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_correct_solutions_pass(name, capsys):
    exercises.check(name, CORRECT[name], trials=10)
    fixed = len(exercises.get(name).fixed)
    assert capsys.readouterr().out == f"✓ {name}: passed 10 random cases and {fixed} fixed ones\n"


def test_golden_memory_numbers():
    """7e9 params: 28 GB in fp32, 14 GB in bf16, 3.5 GB in int4; Adam: 8 B/param, 12 B with fp32 master weights."""
    from llmcourse.course.exercise_sets.nb00 import adam_state_bytes, memory_inference

    assert memory_inference(7_000_000_000, "fp32") == 28_000_000_000
    assert memory_inference(7_000_000_000, "bf16") == 14_000_000_000
    assert memory_inference(7_000_000_000, "int4") == 3_500_000_000
    assert adam_state_bytes(1000, False) == 8000
    assert adam_state_bytes(1000, True) == 12000


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
        exercises.check(
            "00.adam_state_bytes", lambda n, master: 8 * n
        )  # forgets the master weights


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
        exercises.check(
            "softmax",
            lambda x: seen.append(x.flatten().tolist()) or _stable_softmax(x),
            trials=2,
            seed=seed,
        )
        return seen[len(exercises.get("softmax").fixed) :]  # the random cases only

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
        assert causal_mask(2).tolist() == [
            [True, False],
            [True, True],
        ]  # the decorator returns the function
        exercises.check("99.causal_mask", lambda t: torch.ones(t, t, dtype=torch.bool).tril())
        with pytest.raises(ExerciseError, match="wrong values"):
            exercises.check(
                "99.causal_mask", lambda t: torch.ones(t, t, dtype=torch.bool).triu(), trials=20
            )
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
    assert capsys.readouterr().out.startswith(
        "cross_entropy: cross_entropy(logits (N, V), targets (N,)"
    )


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
    exercises.register(
        "test.masked",
        lambda x: x.masked_fill(x < 0, float("-inf")),
        inputs=lambda rng: (torch.tensor([-1.0, 2.0, 3.0]),),
        replace=True,
    )
    with pytest.raises(ExerciseError) as info:
        exercises.check(
            "test.masked", lambda x: x.masked_fill(x < 0, float("-inf")) + torch.tensor([0, 0, 1.0])
        )
    msg = str(info.value)
    assert "at index (2,) expected 3, got 4" in msg and "NaN/inf" not in msg


# ---------------------------------------------------------------- one module per notebook, loaded lazily

ROOT = Path(__file__).resolve().parents[1]


def _notebook_exercise_names() -> set[str]:
    names: set[str] = set()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            names |= set(
                re.findall(
                    r"""exercises\.(?:check|describe|get)\(\s*["']([^"']+)["']""",
                    "".join(cell["source"]),
                )
            )
    return names


def test_every_notebook_exercise_loads_lazily_in_a_fresh_interpreter():
    """Each name a notebook checks resolves from `llmcourse.course.exercises` alone: its nbNN module is
    imported on first use, and no topic module has to be imported first."""
    names = sorted(_notebook_exercise_names())
    assert len(names) > 40
    code = (
        "import json, sys\n"
        "from llmcourse.course import exercises\n"
        "before = set(sys.modules)\n"
        "assert not any(m.startswith('llmcourse.course.exercise_sets.nb') for m in before), before\n"
        "out = {}\n"
        f"for name in {names!r}:\n"
        "    ex = exercises.get(name)\n"
        "    out[name] = [ex.reference.__module__, ex.task != '']\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert sorted(found) == names
    assert all(has_task for _, has_task in found.values()), (
        "every exercise needs a docstring (its task)"
    )


def test_names_lists_every_notebooks_exercises():
    listed = set(exercises.names())
    assert _notebook_exercise_names() <= listed
    assert {"softmax", "cross_entropy"} <= listed
    for name in listed - {"softmax", "cross_entropy"}:
        assert re.fullmatch(r"\d\d\.\w+", name) or name.startswith(("99.", "test.")), name


def test_each_exercise_is_registered_in_its_notebooks_module():
    for name in exercises.names():
        if re.fullmatch(r"\d\d\.\w+", name) and not name.startswith("99."):
            nn = name[:2]
            text = (ROOT / "llmcourse/course/exercise_sets" / f"nb{nn}.py").read_text(
                encoding="utf-8"
            )
            assert re.search(rf'register\(\s*"{re.escape(name)}",', text), name


def test_topic_modules_do_not_import_the_exercises():
    """Exercises live in llmcourse/course/exercise_sets/nbNN.py; the package itself knows nothing of them,
    and an exercise name ("09.top_k_probs") is written only in its nbNN module."""
    pkg = ROOT / "llmcourse"
    offenders, names_elsewhere = [], []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg).as_posix()
        if rel.startswith("course/exercise"):
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module and "exercise" in node.module:
                offenders.append(f"{rel}:{node.lineno} from {node.module} import ...")
            elif (
                isinstance(node, ast.ImportFrom)
                and node.module == "llmcourse.course"
                and any(a.name.startswith("exercise") for a in node.names)
            ):
                offenders.append(f"{rel}:{node.lineno} from llmcourse.course import exercises")
            elif isinstance(node, ast.Import) and any("exercise" in a.name for a in node.names):
                offenders.append(f"{rel}:{node.lineno} import ...exercises")
        names_elsewhere += [
            f"{rel}: {m}"
            for m in re.findall(r"""["'](\d\d\.[a-z_0-9]+)["']""", text)
            if m in set(exercises.names())
        ]
    assert not offenders, offenders
    assert not names_elsewhere, names_elsewhere
