"""Resuming a training run: announced, never silent, and refused when the configuration changed.

`fit(..., ckpt_dir=d)` continues from the latest checkpoint in `d`. Picking a checkpoint up is the
moment a run can go quietly wrong: a notebook cell re-run with a new learning rate, or a bigger
model, would otherwise mix two runs into one curve. So `resume_point`, which `fit` calls first:

* says which checkpoint it continues from (its step and folder) and how to start fresh instead;
* compares the training config and the model config saved with the checkpoint to the current
  ones (`config_differences`) and raises `CheckpointError` naming every field that differs;
* ignores only `RESUME_MAY_CHANGE`, the fields that change what is logged or saved, not what is
  trained (so a resumed run may log more often, or evaluate on more batches);
* compares the environment saved with the checkpoint (`run_environment`: device, GPU model,
  precision, and on a CPU torch's thread count) to the current one, and warns in one line
  (`InexactResumeWarning`) when they differ: the run goes on, and ends close to an uninterrupted
  run's weights but not bit-identical to them. "Exact" resume means the same config, data order,
  device, precision and thread count: floating-point sums split over another number of threads,
  or run by other kernels, round differently;
* with `resume=False`, deletes the old checkpoints and says so.

`model_config(model)` is the model's config dataclass as the JSON-able dict a checkpoint stores.

References: nanoGPT's train.py (`init_from='resume'`), which forces the architecture fields of a
resumed model to equal the checkpoint's; nanochat's JSON metadata saved next to each checkpoint;
`llmcourse.checkpoint` for the files themselves. Left out: resuming with a deliberately changed
config (start a new run from the old weights instead), and merging the histories of two runs.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import torch

from llmcourse import checkpoint
from llmcourse.config import to_dict

if TYPE_CHECKING:  # only for the annotations: llmcourse.train imports this module
    from llmcourse.runtime import Runtime
    from llmcourse.train import TrainConfig

# Fields that change what is logged or saved, not the training itself: a resume may change them.
RESUME_MAY_CHANGE = ("log_every", "eval_every", "eval_batches", "ckpt_every", "compile")


class InexactResumeWarning(UserWarning):
    """A resume on another device, precision or thread count: close to exact, not bit-identical."""


def run_environment(runtime: Runtime) -> dict:
    """What decides a run's rounding besides its config: device type, GPU model, autocast precision
    and torch's CPU thread count (CPU sums are split over the threads). Saved in each checkpoint,
    e.g. {"device": "cpu", "gpu": None, "precision": "float32", "threads": 2}."""
    return {
        "device": runtime.device.type,
        "gpu": runtime.device_name if runtime.device.type == "cuda" else None,
        "precision": str(runtime.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
    }


def environment_differences(saved: dict | None, current: dict) -> list[str]:
    """How the current environment differs from a checkpoint's, as "name saved -> current".
    The thread count matters on a CPU only (GPU kernels do not split sums over CPU threads).

    >>> environment_differences({"device": "cpu", "threads": 4}, {"device": "cpu", "threads": 1})
    ['threads 4 -> 1']
    """
    if not saved:
        return ["an unknown device, precision and thread count (this older checkpoint has none)"]
    names = ["device", "gpu", "precision"] + (["threads"] if current.get("device") == "cpu" else [])
    return [
        f"{k} {saved.get(k)} -> {current.get(k)}" for k in names if saved.get(k) != current.get(k)
    ]


def model_config(model: torch.nn.Module) -> dict | None:
    """The model's config dataclass (`model.cfg` or `model.config`) as a JSON-able dict, or None if
    it has none. Tuples become lists, as they do after a checkpoint is saved and read back."""
    for name in ("cfg", "config"):
        value = getattr(model, name, None)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return json.loads(json.dumps(to_dict(value), default=str))
    return None


def config_differences(
    saved: dict | None, current: dict | None, *, ignore: Sequence[str] = ()
) -> list[str]:
    """The fields on which two config dicts differ, as "name: saved -> current" (empty when equal).

    >>> config_differences({"lr": 0.001, "seed": 1}, {"lr": 0.002, "seed": 1})
    ['lr: 0.001 -> 0.002']
    """
    saved, current = saved or {}, json.loads(json.dumps(current or {}, default=str))
    names = [k for k in dict.fromkeys([*saved, *current]) if k not in ignore]
    return [
        f"{k}: {saved.get(k, '(absent)')!r} -> {current.get(k, '(absent)')!r}".replace("'", "")
        for k in names
        if saved.get(k, "(absent)") != current.get(k, "(absent)")
    ]


def resume_point(
    ckpt_dir: str | Path | None,
    cfg: TrainConfig,
    model_cfg: dict | None,
    *,
    resume: bool,
    announce: bool,
    environment: dict | None = None,
) -> Path | None:
    """The checkpoint `fit` continues from, after saying so; None to start from step 0.

    Never silent: a found checkpoint is announced with its step and folder and how to start fresh.
    It is refused (CheckpointError) when its training or model config differs from the current one,
    naming the fields. `resume=False` starts fresh and deletes the old checkpoints, saying so.
    `announce=False` (the other processes of a distributed run) prints and deletes nothing.
    With `environment` (`run_environment(runtime)`), a checkpoint saved on another device, precision
    or CPU thread count is resumed with an `InexactResumeWarning` saying what differs.
    """
    if ckpt_dir is None:
        return None
    latest = checkpoint.latest_checkpoint(ckpt_dir)
    if latest is None:
        return None
    if not resume:
        if announce:
            print(f"fit: starting fresh (resume=False): deleting the old checkpoint {latest}")
            checkpoint.remove_checkpoints(ckpt_dir)
        return None
    meta = checkpoint.read_meta(latest)
    step = meta["step"]
    fresh = (
        f"To start fresh instead, call fit(..., resume=False) (it deletes the old checkpoints) "
        f"or delete the folder {ckpt_dir}."
    )
    diffs = config_differences(meta.get("config"), to_dict(cfg), ignore=RESUME_MAY_CHANGE)
    model_diffs = (
        config_differences(meta.get("model_config"), model_cfg) if meta.get("model_config") else []
    )
    if diffs or model_diffs:
        lines = [f"training config: {d}" for d in diffs]
        lines += [f"model config: {d}" for d in model_diffs]
        raise checkpoint.CheckpointError(
            f"fit: {latest} (step {step}) was saved with a different configuration, so resuming it "
            "would mix two runs:\n  "
            + "\n  ".join(lines)
            + f"\n{fresh} To continue the old run, use its config."
        )
    if announce:
        done = " (the run was complete: nothing left to train)" if step >= cfg.max_steps else ""
        print(
            f"fit: resuming from step {step} of {cfg.max_steps}, checkpoint {latest}{done}. {fresh}"
        )
        changed = (
            environment_differences(meta.get("environment"), environment) if environment else []
        )
        if changed:
            warnings.warn(
                f"fit: resuming {latest} with {', '.join(changed)}: the result will be close to an "
                "uninterrupted run's but not bit-identical (that needs the same device, precision "
                "and CPU thread count, e.g. torch.set_num_threads)",
                InexactResumeWarning,
                stacklevel=3,
            )
    return latest
