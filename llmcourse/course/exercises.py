"""Self-checking exercises: run the learner's function against a reference on fresh random inputs.

    from llmcourse.course import exercises
    exercises.describe("softmax")          # prints the task
    exercises.check("softmax", my_softmax)  # "✓ softmax: passed 5 random cases", or ExerciseError

Every call draws a new seed, so a solution cannot be fitted to one input; a failure names the seed,
and `check(..., seed=S)` replays it. An exercise is a reference function plus an input generator
`inputs(rng: random.Random) -> tuple of arguments` and a comparison: "exact", "allclose" (with
`rtol`/`atol`) or "shape" (type and shape only, for outputs that are random by design).

A notebook's exercises ("NN.name") are registered in one module per notebook,
`llmcourse.course.exercise_sets.nbNN`, usually with the package function itself as the reference:

    register("04.causal_mask", causal_mask, inputs=_mask_inputs, compare="exact")

`get`, `check` and `describe` import that module on first use of an "NN." name, and `names()` imports
them all; the topic modules know nothing about exercises. Bare names ("softmax") are the generic
exercises defined at the end of this module.

Left out: grading, hidden tests, timing limits. Checks are for the learner, not for marks.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import pkgutil
import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

COMPARISONS = ("exact", "allclose", "shape")


class ExerciseError(AssertionError):
    """The learner's function disagrees with the reference; the message says how."""


@dataclass(frozen=True)
class Exercise:
    name: str
    reference: Callable[..., Any]
    inputs: Callable[[random.Random], tuple]  # draws one tuple of positional arguments
    compare: str = "allclose"
    rtol: float = 1e-5
    atol: float = 1e-6
    hint: str = ""  # shown when values are wrong
    fixed: tuple[
        tuple, ...
    ] = ()  # argument tuples checked on every call (edge cases), before random ones

    @property
    def task(self) -> str:
        return (self.reference.__doc__ or "").strip()


_REGISTRY: dict[str, Exercise] = {}


def register(
    name: str,
    reference: Callable[..., Any],
    inputs: Callable[[random.Random], tuple],
    *,
    compare: str = "allclose",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    hint: str = "",
    fixed: tuple[tuple, ...] = (),
    replace: bool = False,
) -> Exercise:
    """Add an exercise. Names are "NN.topic_name" for a notebook's exercises, bare for generic ones."""
    if compare not in COMPARISONS:
        raise ValueError(f"compare={compare!r}: use one of {COMPARISONS}")
    old = _REGISTRY.get(name)
    same = old is not None and (old.reference.__module__, old.reference.__qualname__) == (
        reference.__module__,
        reference.__qualname__,
    )  # the same module imported again
    if old is not None and not (replace or same):
        raise ValueError(
            f"exercise {name!r} is already registered (pass replace=True to redefine it)"
        )
    ex = Exercise(name, reference, inputs, compare, rtol, atol, hint, tuple(fixed))
    _REGISTRY[name] = ex
    return ex


def exercise(
    name: str,
    inputs: Callable[[random.Random], tuple],
    *,
    compare: str = "allclose",
    rtol: float = 1e-5,
    atol: float = 1e-6,
    hint: str = "",
    fixed: tuple[tuple, ...] = (),
) -> Callable:
    """Decorator form of `register`; returns the reference function unchanged."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        register(name, fn, inputs, compare=compare, rtol=rtol, atol=atol, hint=hint, fixed=fixed)
        return fn

    return wrap


SETS = "llmcourse.course.exercise_sets"  # the package of the nbNN modules, one per notebook


def _load(name: str) -> None:
    """Import the module of the notebook that "NN.name" belongs to (which registers its exercises)."""
    prefix = name.split(".", 1)[0]
    if name in _REGISTRY or "." not in name or not (len(prefix) == 2 and prefix.isdigit()):
        return
    module = f"{SETS}.nb{prefix}"
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:  # a missing dependency inside the module is a real error
            raise


def get(name: str) -> Exercise:
    _load(name)
    if name not in _REGISTRY:
        raise KeyError(f"no exercise {name!r}. Known: {', '.join(names())}.")
    return _REGISTRY[name]


def names() -> list[str]:
    """Every exercise name, the notebooks' ones included (imports all the nbNN modules)."""
    package = importlib.import_module(SETS)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("nb"):
            importlib.import_module(f"{SETS}.{info.name}")
    return sorted(_REGISTRY)


def describe(name: str) -> None:
    """Print what the exercise asks for (the reference's docstring)."""
    print(f"{name}: {get(name).task}")


def torch_generator(rng: random.Random) -> torch.Generator:
    """A torch generator seeded from `rng`, for tensor inputs (never touches the global RNG)."""
    return torch.Generator().manual_seed(rng.getrandbits(62))


# ---------------------------------------------------------------- showing and comparing values


def _short(x: Any, limit: int = 8) -> str:
    """A compact, one-line description of a value, for error messages."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        dt = str(x.dtype).replace("torch.", "")
        flat = x.detach().flatten().cpu()
        vals = [round(v, 4) if isinstance(v, float) else v for v in flat[:limit].tolist()]
        more = ", ..." if flat.numel() > limit else ""
        return f"tensor(shape={tuple(x.shape)}, {dt}, values=[{', '.join(map(str, vals))}{more}])"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(_short(v, limit) for v in x)
        return (
            f"({inner},)"
            if isinstance(x, tuple) and len(x) == 1
            else (f"({inner})" if isinstance(x, tuple) else f"[{inner}]")
        )
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _type_name(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return "torch.Tensor"
    return "numpy.ndarray" if isinstance(x, np.ndarray) else type(x).__name__


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _difference(expected: Any, got: Any, ex: Exercise, where: str = "output") -> str | None:
    """None if `got` matches `expected` under the exercise's comparison, else what is wrong."""
    if got is None and expected is not None:
        return f"{where}: your function returned None (is a `return` missing?)"
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        kind = torch.Tensor if isinstance(expected, torch.Tensor) else np.ndarray
        if not isinstance(got, kind):
            return f"{where}: wrong type: expected {_type_name(expected)}, got {_type_name(got)}"
        exp_t, got_t = torch.as_tensor(expected), torch.as_tensor(got)
        if exp_t.shape != got_t.shape:
            return f"{where}: wrong shape: expected {tuple(exp_t.shape)}, got {tuple(got_t.shape)}"
        if exp_t.is_floating_point() and not got_t.is_floating_point():
            return f"{where}: wrong dtype: expected a floating-point tensor, got {got_t.dtype}"
        if ex.compare == "shape":
            return None
        exp_d, got_d = exp_t.detach().cpu().double(), got_t.detach().cpu().double()
        if ex.compare == "exact" and (exp_t.is_floating_point() or got_t.is_floating_point()):
            ok = torch.equal(exp_d, got_d)
        elif ex.compare == "exact":  # integers and bools as int64: ids above 2**53 stay exact
            ok = torch.equal(exp_t.detach().cpu().long(), got_t.detach().cpu().long())
        else:
            ok = torch.allclose(got_d, exp_d, rtol=ex.rtol, atol=ex.atol)
        if ok:
            return None
        same = got_d == exp_d  # equal infinities (a -inf mask on both sides) are not a difference
        diff = torch.where(same, 0.0, (got_d - exp_d).abs().nan_to_num(nan=math.inf))
        idx = (
            tuple(int(i) for i in np.unravel_index(int(diff.argmax()), tuple(diff.shape)))
            if diff.ndim
            else ()
        )
        tol = "exact match" if ex.compare == "exact" else f"rtol={ex.rtol:g}, atol={ex.atol:g}"
        nan = " (your output has NaN/inf)" if not (torch.isfinite(got_d) | same).all() else ""
        return (
            f"{where}: wrong values{nan}: max abs diff {float(diff.max()):.3g} ({tol}); at index {idx} "
            f"expected {exp_d[idx].item():.6g}, got {got_d[idx].item():.6g}"
        )
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return (
                f"{where}: wrong type: expected a {type(expected).__name__}, got {_type_name(got)}"
            )
        if len(got) != len(expected):
            return f"{where}: expected {len(expected)} items, got {len(got)}"
        for i, (e, g) in enumerate(zip(expected, got)):
            problem = _difference(e, g, ex, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if _is_number(expected):
        if not _is_number(got):
            return f"{where}: wrong type: expected a number, got {_type_name(got)} {_short(got)}"
        if ex.compare == "shape":
            return None
        ok = (
            got == expected
            if ex.compare == "exact"
            else math.isclose(float(got), float(expected), rel_tol=ex.rtol, abs_tol=ex.atol)
        )
        return None if ok else f"{where}: wrong value: expected {expected!r}, got {got!r}"
    if type(got) is not type(expected):
        return f"{where}: wrong type: expected {_type_name(expected)}, got {_type_name(got)}"
    return (
        None
        if got == expected
        else f"{where}: wrong value: expected {_short(expected)}, got {_short(got)}"
    )


def _call(fn: Callable[..., Any], args: tuple, reference: Callable[..., Any]) -> Any:
    """Call `fn` with the inputs in the reference's parameter order: the reference's keyword-only
    parameters go by name, so a package function with `*` in its signature can be the reference.
    A learner's function with other parameter names gets them all positionally."""
    try:
        params = list(inspect.signature(reference).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature
        return fn(*args)
    pos = [a for a, p in zip(args, params) if p.kind != p.KEYWORD_ONLY]
    kw = {p.name: a for a, p in zip(args, params) if p.kind == p.KEYWORD_ONLY}
    if not kw:
        return fn(*args)
    try:
        inspect.signature(fn).bind(*pos, **kw)
    except (TypeError, ValueError):
        return fn(*args)
    return fn(*pos, **kw)


def check(name: str, fn: Callable[..., Any], *, trials: int = 5, seed: int | None = None) -> None:
    """Run `fn` and the reference on the fixed cases and `trials` fresh random inputs.

    Prints "✓ name: passed N random cases" or raises ExerciseError saying what is wrong.
    """
    ex = get(name)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)  # fresh each call; global RNGs untouched
    rng = random.Random(seed)
    replay = f"(replay with check({name!r}, fn, seed={seed}))"
    total = len(ex.fixed) + trials
    for trial in range(1, total + 1):
        args = ex.fixed[trial - 1] if trial <= len(ex.fixed) else ex.inputs(rng)
        expected = _call(ex.reference, copy.deepcopy(args), ex.reference)
        shown = ", ".join(_short(a) for a in args)
        try:
            got = _call(fn, copy.deepcopy(args), ex.reference)
        except NotImplementedError:
            raise ExerciseError(
                f"✗ {name}: not implemented yet — replace the "
                "`raise NotImplementedError` line with your solution"
            ) from None
        except Exception as e:
            raise ExerciseError(
                f"✗ {name}: your function raised {type(e).__name__}: {e}\n"
                f"  on input: {shown}  {replay}"
            ) from e
        problem = _difference(expected, got, ex)
        if problem:
            hint = f"\n  hint: {ex.hint}" if ex.hint and "wrong value" in problem else ""
            raise ExerciseError(
                f"✗ {name}: case {trial} of {total}: {problem}\n  on input: {shown}  {replay}{hint}"
            ) from None
    extra = f" and {len(ex.fixed)} fixed ones" if ex.fixed else ""
    print(f"✓ {name}: passed {trials} random cases{extra}")


# ---------------------------------------------------------------- generic exercises


def _logits(rng: random.Random, dims: int) -> torch.Tensor:
    shape = [rng.randint(1, 6) for _ in range(dims - 1)] + [rng.randint(2, 12)]
    scale = rng.choice([1.0, 10.0, 100.0])  # large logits overflow a naive exp in float32
    return torch.randn(shape, generator=torch_generator(rng)) * scale


@exercise(
    "softmax",
    inputs=lambda rng: (_logits(rng, rng.randint(1, 3)),),
    atol=1e-6,
    fixed=((torch.tensor([[1000.0, 0.0, -1000.0], [-1000.0, -1001.0, -1002.0]]),),),
    hint="normalise over the last dim (dim=-1); subtract the row max first so exp cannot overflow",
)
def softmax(x: torch.Tensor) -> torch.Tensor:
    """softmax(x) -> tensor of x's shape: softmax over the last dimension (rows sum to 1)."""
    return torch.softmax(x, dim=-1)


def _ce_inputs(rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    logits = _logits(rng, 2)  # (N, V)
    targets = torch.randint(0, logits.shape[-1], logits.shape[:1], generator=torch_generator(rng))
    return logits, targets


@exercise(
    "cross_entropy",
    inputs=_ce_inputs,
    rtol=1e-5,
    atol=1e-5,
    fixed=((torch.tensor([[1000.0, 0.0, -1000.0], [0.0, 0.0, 0.0]]), torch.tensor([1, 2])),),
    hint="use log-softmax via logsumexp (x - max) for stability, then average over the N rows",
)
def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """cross_entropy(logits (N, V), targets (N,) int64) -> scalar tensor: mean over rows of
    -log softmax(logits)[row, target]; must match torch.nn.functional.cross_entropy."""
    return F.cross_entropy(logits, targets)
