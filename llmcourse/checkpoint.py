"""Checkpoints you can trust: safetensors weights + JSON state, written atomically, resumed exactly.

A training run saves into `ckpt_dir`, any folder (a local disk, or a mounted Google Drive on Colab):

    ckpt_dir/
      step_00001000/
        model.safetensors       the weights (tied tensors stored once)
        optimizer.safetensors   the optimizer's tensors (AdamW's exp_avg, exp_avg_sq, step), flattened
        state.json              step, History, config, RNG states, GradScaler, optimizer hyper-parameters,
                                and the environment (device, precision, CPU threads) the run used
      .tmp-step_00002000-4242/  a save in progress, or one killed half-way: ignored, deleted by the next save

Why these formats: safetensors holds raw tensors and nothing else, so opening a file can never run
code (unpickling with `torch.load` can); JSON is readable in any editor. Why it is safe to kill:
a checkpoint is written into a temporary folder next to its final place and renamed when complete.
A rename inside one file system is atomic, so a crash (a Colab disconnect, SIGKILL, a full disk)
leaves the previous checkpoint or the new one, never half of one. Only the newest one is kept, and
the older ones are deleted only after it is complete. Reading one that is damaged anyway (a
truncated copy, a hand-edited JSON, weights of another model) raises `CheckpointError`, naming the
file and what to do, instead of a deep safetensors or torch traceback.

References: the safetensors format (Hugging Face); nanochat's split into weights + JSON metadata;
POSIX rename(2) for the atomic write. Left out: sharded files for models of many GB, asynchronous
saving, keeping the best-N checkpoints, and checksums (we only check file sizes).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
MODEL_FILE, OPTIMIZER_FILE, STATE_FILE = "model.safetensors", "optimizer.safetensors", "state.json"
_STEP_DIR = re.compile(r"step_(\d+)")


class CheckpointError(RuntimeError):
    """A checkpoint could not be read or does not fit the model/optimizer it is loaded into."""


_WEIGHTS_ADVICE = (
    "Was it saved from a model with another config? Build the model the way it was built then."
)


def _error(file: Path, problem: str, advice: str | None = None) -> CheckpointError:
    """An error naming the file, the problem and what to do (by default: start the run afresh)."""
    advice = advice or (
        f"The checkpoint is damaged or was saved from a different model/config. Delete "
        f"{file.parent} to start fresh (or call fit(..., resume=False))."
    )
    return CheckpointError(f"{file}: {problem}.\n{advice}")


@contextlib.contextmanager
def _reading(file: Path, action: str = "read", advice: str | None = None):
    """Turn any failure while reading `file` into one CheckpointError that says what to do."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as e:  # safetensors, json, torch and numpy all raise their own types
        raise _error(file, f"cannot {action} it ({type(e).__name__}: {e})", advice) from None


# ---------------------------------------------------------------- plain weights


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The one place that strips torch.compile's wrapper (whose keys gain an `_orig_mod.` prefix)."""
    return getattr(model, "_orig_mod", model)


def _tied_groups(state: dict[str, torch.Tensor]) -> list[list[str]]:
    """Group the names whose tensors are the same memory (tied weights: lm_head.weight is tok_emb.weight)."""
    groups: dict[Any, list[str]] = {}
    for name, t in state.items():
        same = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride())
        groups.setdefault(same if t.numel() else name, []).append(name)
    return list(groups.values())


def save_model(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Write the model's weights to one safetensors file (atomically; tied tensors stored once).

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_model(torch.nn.Linear(2, 3), path); sorted(load_file(path))
    ['bias', 'weight']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _unwrap(model).state_dict()
    tensors = {group[0]: state[group[0]].detach().cpu() for group in _tied_groups(state)}
    # safetensors refuses two entries sharing memory; views into one buffer (rare) get their own copy
    storages = [t.untyped_storage().data_ptr() for t in tensors.values()]
    tensors = {
        k: t.clone() if storages.count(t.untyped_storage().data_ptr()) > 1 else t.contiguous()
        for k, t in tensors.items()
    }
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    _fsync(tmp)
    os.replace(tmp, path)


def _load_weights(
    model: torch.nn.Module, tensors: dict[str, torch.Tensor], file: Path, advice: str | None = None
) -> None:
    """Check keys and shapes of `tensors` against `model` first, then copy them in."""
    model = _unwrap(model)
    expected = model.state_dict()
    full, missing, wrong = {}, [], []
    for group in _tied_groups(expected):
        stored = [name for name in group if name in tensors]
        if not stored:
            missing.append(group[0])
            continue
        for name in group:  # a tied group is filled from whichever of its names the file has
            full[name] = tensors[stored[0]]
            got, want = tuple(full[name].shape), tuple(expected[name].shape)
            if got != want:
                wrong.append(f"{name} {got} in the file vs {want} in the model")
    unexpected = sorted(set(tensors) - set(expected))
    problems = [f"wrong shapes: {'; '.join(wrong[:5])}"] if wrong else []
    problems += [f"missing keys: {missing[:5]}"] if missing else []
    problems += [f"unexpected keys: {unexpected[:5]}"] if unexpected else []
    if problems:
        raise _error(file, "does not fit this model: " + ", ".join(problems), advice)
    with _reading(file, "load", advice):
        model.load_state_dict(full, strict=True)


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a safetensors file written by `save_model` (or a checkpoint's model.safetensors) into `model`.

    Keys and shapes must match exactly; a mismatch raises CheckpointError listing the first few.
    """
    file = Path(path)
    if not file.is_file():
        raise CheckpointError(
            f"{file}: no such file. Save weights first with save_model(model, path)."
        )
    with _reading(file, "read", _WEIGHTS_ADVICE):
        tensors = load_file(str(file))
    _load_weights(model, tensors, file, _WEIGHTS_ADVICE)


# ---------------------------------------------------------------- pieces of the training state


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors named "<param index>.<name>" and a JSON-able rest."""
    tensors, rest = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for index, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                rest["state"].setdefault(str(index), {})[name] = value
    return tensors, rest


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(i): dict(values) for i, values in rest["state"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def _bytes_to_text(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _text_to_bytes(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a training run depends on, as JSON-safe data (torch states as base64)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "python": [version, list(internal), gauss_next],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "torch": _bytes_to_text(torch.get_rng_state()),  # dropout on the CPU draws from this one
    }
    if torch.cuda.is_available():
        state["cuda"] = [_bytes_to_text(s) for s in torch.cuda.get_rng_state_all()]
    if generator is not None:
        state["generator"] = _bytes_to_text(generator.get_state())
    return state


def set_rng_state(
    state: dict[str, Any], generator: torch.Generator | None = None, global_rngs: bool = True
) -> None:
    """Inverse of `rng_state`: restore the loop's generator and (if `global_rngs`) Python, NumPy, torch."""
    if generator is not None:
        generator.set_state(_text_to_bytes(state["generator"]))
    if not global_rngs:
        return
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(_text_to_bytes(state["torch"]))
    if torch.cuda.is_available() and len(state.get("cuda", [])) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([_text_to_bytes(s) for s in state["cuda"]])


def _fsync(path: Path) -> None:
    """Push a file to the disk, so a power cut right after the rename cannot leave it empty."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


# ---------------------------------------------------------------- whole checkpoints


def _step_dirs(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints in `ckpt_dir`, oldest first (temporary folders never match the pattern)."""
    if not ckpt_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in ckpt_dir.iterdir()
        if (m := _STEP_DIR.fullmatch(p.name)) and p.is_dir()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(ckpt_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder in `ckpt_dir` (highest step), or None if there is none."""
    found = _step_dirs(Path(ckpt_dir))
    return found[-1] if found else None


def _remove_leftovers(ckpt_dir: Path) -> None:
    for p in ckpt_dir.glob(".tmp-*"):  # saves that a crash interrupted
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The step, training config and model config of a checkpoint folder, without loading weights."""
    state_file = Path(path) / STATE_FILE
    with _reading(state_file):
        state = json.loads(state_file.read_text())
        return {
            "step": int(state["step"]),
            "config": state.get("config"),
            "model_config": state.get("model_config"),
            "environment": state.get("environment"),
            "path": Path(path),
        }


def remove_checkpoints(ckpt_dir: str | os.PathLike) -> int:
    """Delete every checkpoint (and interrupted save) in `ckpt_dir`; return how many were deleted."""
    ckpt_dir = Path(ckpt_dir)
    found = _step_dirs(ckpt_dir)
    for old in found:
        shutil.rmtree(old)
    if ckpt_dir.is_dir():
        _remove_leftovers(ckpt_dir)
    return len(found)


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    step: int,
    model: torch.nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    generator: torch.Generator | None = None,
    history: dict | None = None,
    config: dict | None = None,
    model_config: dict | None = None,
    environment: dict | None = None,
) -> Path:
    """Write `ckpt_dir/step_<step>/` atomically, then delete the other checkpoints; return its path.

    `history`, `config` (the training config), `model_config` and `environment` (device, precision,
    threads: `resume.run_environment`) are JSON-able dicts (`History.to_dict()`,
    `config.to_dict(cfg)`): `fit` compares them before it resumes.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(ckpt_dir)
    name = f"step_{step:08d}"
    tmp = ckpt_dir / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    save_model(model, tmp / MODEL_FILE)
    state: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "step": step,
        "torch_version": torch.__version__,
        "history": history,
        "config": config,
        "model_config": model_config,
        "environment": environment,
        "rng": rng_state(generator),
        "scaler": scaler.state_dict() if scaler is not None else {},
    }
    if optimizer is not None:
        tensors, state["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, str(tmp / OPTIMIZER_FILE))
        _fsync(tmp / OPTIMIZER_FILE)
    # sizes let a reader tell a complete file from a truncated copy (e.g. still syncing to Drive)
    state["file_sizes"] = {p.name: p.stat().st_size for p in tmp.iterdir()}
    (tmp / STATE_FILE).write_text(json.dumps(state))
    _fsync(tmp / STATE_FILE)
    final = ckpt_dir / name
    if (
        final.exists()
    ):  # a fresh run reaching a step an old run saved: move the old one out of the way
        os.replace(final, ckpt_dir / f".tmp-old-{name}-{os.getpid()}")
    os.replace(
        tmp, final
    )  # the atomic moment: before it the old checkpoint counts, after it the new one
    for old in _step_dirs(ckpt_dir):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    _remove_leftovers(ckpt_dir)
    return final


def load_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: torch.amp.GradScaler | None = None,
    generator: torch.Generator | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote; return {"step", "history", "config", "path"}.

    `path` is a checkpoint folder or a `ckpt_dir` (its latest checkpoint is used). Everything is read
    and checked before the model is touched; any problem raises CheckpointError. `restore_rng=False`
    leaves the global RNGs alone (the `generator`, if given, is always restored).
    """
    path = Path(path)
    if not (path / STATE_FILE).exists() and (latest := latest_checkpoint(path)) is not None:
        path = latest
    state_file = path / STATE_FILE
    if not state_file.exists():
        raise CheckpointError(f"{path}: no checkpoint here (no {STATE_FILE}, no step_* folder).")
    with _reading(state_file):
        state = json.loads(state_file.read_text())
        version, step = state["format_version"], int(state["step"])
    if version != FORMAT_VERSION:
        raise _error(
            state_file, f"format version {version}, this code reads version {FORMAT_VERSION}"
        )
    for name, size in state.get("file_sizes", {}).items():
        actual = (path / name).stat().st_size if (path / name).exists() else 0
        if actual != size:
            raise _error(
                path / name,
                f"has {actual} bytes, {size} expected: the file is missing or incomplete",
            )
    with _reading(path / MODEL_FILE):
        model_tensors = load_file(str(path / MODEL_FILE))
    if optimizer is not None:
        if "optimizer" not in state:
            raise _error(state_file, "holds no optimizer state (it was saved without an optimizer)")
        with _reading(path / OPTIMIZER_FILE):
            optim_state = _unflatten_optimizer(
                load_file(str(path / OPTIMIZER_FILE)), state["optimizer"]
            )
        saved_groups = [len(g["params"]) for g in optim_state["param_groups"]]
        if saved_groups != [len(g["params"]) for g in optimizer.param_groups]:
            raise _error(
                path / OPTIMIZER_FILE,
                f"has parameter groups of sizes {saved_groups}, the optimizer "
                f"{[len(g['params']) for g in optimizer.param_groups]} (different trainable parameters?)",
            )
    _load_weights(model, model_tensors, path / MODEL_FILE)
    if optimizer is not None:
        with _reading(path / OPTIMIZER_FILE, "load"):
            optimizer.load_state_dict(optim_state)
    with _reading(state_file, "restore the RNG and scaler states from"):
        if scaler is not None and scaler.is_enabled() and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"], generator, global_rngs=restore_rng)
    return {
        "step": step,
        "history": state.get("history"),
        "config": state.get("config"),
        "path": path,
    }
