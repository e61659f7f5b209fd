"""Configs as typed dataclasses, with two named sizes and one code path.

Every notebook and script in the course is configured by a `@dataclass` whose defaults are the
**full** size (a learner with a GPU, real data, minutes of training). The **smoke** size is the same
code on a CPU in seconds: the class lists the fields it changes in `smoke_overrides`. Which size is
used is decided by `current_size()`, one environment variable, or automatically under CI / nbmake.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo(Sized):
    ...     n_layer: int = 12   # transformer blocks
    ...     smoke_overrides = {"n_layer": 2}
    >>> Demo.for_size("smoke").n_layer, Demo.for_size("full", n_layer=6).n_layer
    (2, 6)

A notebook overrides fields with `dataclasses.replace(cfg, n_layer=4)` or `for_size(..., n_layer=4)`,
never by editing package code. Scripts map `--field=value` onto the dataclass with `from_cli`, which
checks that the value parses as the field's type.
"""
from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

SIZES = ("smoke", "full")
SIZE_ENV = "LLMCOURSE_SIZE"

T = TypeVar("T")


def current_size() -> str:
    """Return "smoke" or "full".

    Order of precedence: the `LLMCOURSE_SIZE` variable if set; otherwise "smoke" under CI
    (`CI` set, as every CI service does) or inside pytest/nbmake; otherwise "full".
    """
    return size_and_reason()[0]


def size_and_reason() -> tuple[str, str]:
    """The size `current_size()` picks, and why (notebooks print the reason)."""
    value = os.environ.get(SIZE_ENV, "").strip().lower()
    if value:
        if value not in SIZES:
            raise ValueError(f"{SIZE_ENV}={value!r}: use one of {SIZES}")
        return value, f"set by {SIZE_ENV}"
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        return "smoke", "automatic: CI is set"
    if "PYTEST_CURRENT_TEST" in os.environ or "NBMAKE" in os.environ:
        return "smoke", "automatic: running under pytest/nbmake"
    return "full", f"default; {SIZE_ENV}=smoke runs in seconds on a CPU"


def is_smoke() -> bool:
    return current_size() == "smoke"


class Sized:
    """Mixin for config dataclasses: defaults are the full size, `smoke_overrides` the smoke size."""

    smoke_overrides: ClassVar[dict[str, Any]] = {}

    @classmethod
    def for_size(cls: type[T], size: str | None = None, **overrides: Any) -> T:
        size = size or current_size()
        if size not in SIZES:
            raise ValueError(f"size={size!r}: use one of {SIZES}")
        cfg = cls()
        if size == "smoke":
            cfg = dataclasses.replace(cfg, **cls.smoke_overrides)  # type: ignore[attr-defined]
        return dataclasses.replace(cfg, **overrides)  # type: ignore[type-var]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (paths become strings)."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return out


def to_json(cfg: Any, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n")


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build `cls` from a dict, refusing unknown keys (a typo must not be silently ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {unknown}; known fields: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    data = {k: Path(v) if hints.get(k) is Path and isinstance(v, str) else v for k, v in data.items()}
    return cls(**data)


def from_json(cls: type[T], path: str | os.PathLike) -> T:
    return from_dict(cls, json.loads(Path(path).read_text()))


def _parse(value: str, typ: Any, name: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", "null"):
            return None
        return _parse(value, args[0], name)
    if typ is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{name}={value}: expected true/false")
    if typ in (int, float, str, Path):
        try:
            return typ(value)
        except ValueError:
            raise ValueError(f"--{name}={value}: expected {typ.__name__}") from None
    return json.loads(value)


def from_cli(cfg: T, argv: list[str]) -> T:
    """Apply `--field=value` arguments to a config dataclass, checking each value's type.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C:
    ...     lr: float = 1e-3
    ...     steps: int = 10
    >>> from_cli(C(), ["--steps=20", "--lr", "3e-4"])
    C(lr=0.0003, steps=20)
    """
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r}: use --field=value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if not args:
                raise ValueError(f"--{key} needs a value")
            value = args.pop(0)
        key = key.replace("-", "_")
        if key not in names:
            raise ValueError(f"unknown option --{key}; known: {', '.join(sorted(names))}")
        changes[key] = _parse(value, hints[key], key)
    return dataclasses.replace(cfg, **changes)  # type: ignore[type-var]
