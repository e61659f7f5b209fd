"""Helpers every notebook calls: a reproducible start, the headline number, sources, checkpoints.

A notebook begins with

    from llmcourse.course import notebook
    rt = notebook.start()            # seeds everything, prints size / hub / runtime / versions

and records its key result once with `notebook.headline("val_loss", loss)`. The course runner sets
`LLMCOURSE_METRICS_FILE` and collects those lines into its table.

Importing this module is cheap on purpose (no torch, no pyplot): the decisions happen when
`start()` is called, so switching a Colab runtime from CPU to GPU only needs the cell re-run.
`start()` names the download hub with the switches for learners who cannot reach it (`HF_ENDPOINT`,
`LLMCOURSE_HUB=modelscope`), and warns once (`FullSizeOnCPUWarning`) when the full size was chosen
on a machine without a GPU, with what that costs and how to switch to the smoke size.

Left out: experiment trackers (wandb, tensorboard) and widget-based progress displays.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import platform as _platform
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmcourse import config
from llmcourse.config import current_size, size_and_reason

if TYPE_CHECKING:  # only for type hints; importing runtime imports torch
    from llmcourse.runtime import Runtime

METRICS_ENV = "LLMCOURSE_METRICS_FILE"  # the course runner points this at a JSON-lines file
NOTEBOOK_ENV = "LLMCOURSE_NOTEBOOK"  # the runner's name for the notebook being executed
CKPT_ENV = "LLMCOURSE_CKPT_DIR"  # overrides where checkpoints go
DRIVE_MOUNT = Path("/content/drive")
DRIVE_ROOT = DRIVE_MOUNT / "MyDrive"  # where Colab mounts the learner's Google Drive
DRIVE_CKPT_DIR = DRIVE_ROOT / "llmcourse" / "checkpoints"  # the setup cell's USE_DRIVE points here

# Matplotlib defaults for figures that sit inline in a notebook: readable, uncluttered, not huge.
MPL_DEFAULTS: dict[str, Any] = {
    "figure.dpi": 100,
    "figure.figsize": (6.4, 3.6),
    "figure.autolayout": True,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "image.cmap": "viridis",
}


def in_notebook() -> bool:
    """True inside a Jupyter/Colab/Kaggle kernel (not in plain Python or the IPython terminal)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _size_reason() -> str:
    return size_and_reason()[1]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)  # reads package metadata: no slow `import transformers`
    except metadata.PackageNotFoundError:
        return "not installed"


def _style_matplotlib() -> None:
    """Set rcParams for inline figures. Touches `matplotlib` only, never `pyplot`."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.rcParams.update(MPL_DEFAULTS)


SEED_ENV = "LLMCOURSE_SEED"  # the seed of a whole notebook run (scripts/seed_sweep.py varies it)


_started_seed: int | None = None  # the seed the last start() used


def current_seed(default: int = 0) -> int:
    """The run's seed: the one `start()` used, else `LLMCOURSE_SEED`, else `default`.

    Notebooks pass it to their configs, so `LLMCOURSE_SEED=1` varies the whole run.
    """
    if _started_seed is not None:
        return _started_seed
    value = os.environ.get(SEED_ENV, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{SEED_ENV}={value!r}: use a whole number, e.g. {SEED_ENV}=1") from None


def start(seed: int | None = None, threads: int | None = None) -> Runtime:
    """Seed Python/NumPy/torch, detect device and precision, style figures, print one summary.

    `seed` defaults to `LLMCOURSE_SEED`, else 0; the notebook reads it back with `current_seed()`.
    `threads` limits torch's CPU threads (default: `LLMCOURSE_THREADS`, else torch's choice).
    Returns the `Runtime`; pass it on (`fit(..., runtime=rt)`, `model.to(rt.device)`).
    """
    global _started_seed
    _started_seed = None
    if seed is None:
        seed = current_seed()
    _started_seed = seed  # current_seed() agrees with start() from here on
    import torch

    import llmcourse
    from llmcourse import runtime
    from llmcourse.course import figure_text

    runtime.set_threads(threads)
    runtime.seed_all(seed)
    rt = runtime.detect()
    _style_matplotlib()
    size = current_size()
    language, hub = config.current_language(), config.current_hub()
    if language == "zh":
        config.use_cjk_font()  # Chinese labels in figures; warns once if no CJK font is installed
        figure_text.install("zh")  # titles, axis labels and legends from the catalog, in Chinese
    else:
        figure_text.uninstall()
    print(
        f"llmcourse {llmcourse.__version__} | torch {torch.__version__} | "
        f"transformers {_version('transformers')} | python {_platform.python_version()}\n"
        f"size:    {size} ({_size_reason()})\n"
        f"text:    {language} (LLMCOURSE_LANG) | downloads from {hub} (LLMCOURSE_HUB)\n"
        f"         {hub_switches(hub)}\n"
        f"runtime: {rt}\n"
        f"seed:    {seed}"
    )
    if size == "full" and rt.device.type == "cpu" and config.rehearsal_steps() is None:
        _warn_full_on_cpu(os.environ.get(NOTEBOOK_ENV, ""))
    return rt


def hub_switches(hub: str) -> str:
    """One line: where downloads come from, and the switches for a learner who cannot reach it
    (mainland China): `HF_ENDPOINT` picks a mirror of the Hugging Face hub, `LLMCOURSE_HUB=modelscope`
    takes the models and data sets that have a ModelScope copy from modelscope.cn."""
    from llmcourse.data.fetch import HF_MIRROR, MODELSCOPE_ENDPOINT, hf_endpoint

    if hub == "modelscope":
        return (
            f"ModelScope ({MODELSCOPE_ENDPOINT}) for what has a copy there (the rest say how to get "
            f"them) | {config.HUB_ENV}=huggingface switches back"
        )
    set_by = " (HF_ENDPOINT)" if os.environ.get("HF_ENDPOINT", "").strip() else ""
    return (
        f"Hugging Face at {hf_endpoint()}{set_by} | blocked (mainland China)? set "
        f"HF_ENDPOINT={HF_MIRROR} or {config.HUB_ENV}=modelscope in the setup cell"
    )


class FullSizeOnCPUWarning(UserWarning):
    """The full size was chosen on a machine without a GPU: the notebook will take far longer."""


_warned_full_on_cpu: set[str] = set()  # notebooks already warned in this process


def full_size_on_cpu(notebook: str) -> str | None:
    """What running `notebook` (a file stem; "" if unknown) at full size on a CPU means, or None
    where its full size is meant for a CPU (`targets.Target.full_on`)."""
    from llmcourse.course import targets

    t = targets.for_notebook(notebook) if notebook else None
    if t is not None and t.full_on.startswith("a CPU"):
        return None
    what = (
        f"notebook {notebook[:2]}'s full size is meant for {t.full_on}"
        if t
        else "full size is meant for a GPU"
    )
    measured = (
        f" (measured at full size: {t.measured_full})" if t and "CPU" in t.measured_full else ""
    )
    return (
        f"full size without a GPU: {what}, and on this CPU its training takes hours rather than "
        f"minutes{measured}. The README's 'Compute budget' estimates each full-size training run "
        "on a Colab T4 GPU at seconds to minutes. To run in seconds to a minute here, set "
        f'os.environ["{config.SIZE_ENV}"] = "smoke" in the setup cell and run from the top; on '
        "Colab, Runtime -> Change runtime type -> T4 GPU, then run from the top."
    )


def _warn_full_on_cpu(notebook: str) -> None:
    message = full_size_on_cpu(notebook)
    if message is None or notebook in _warned_full_on_cpu:
        return
    _warned_full_on_cpu.add(notebook)
    warnings.warn(message, FullSizeOnCPUWarning, stacklevel=3)


def _format_value(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


def _record(kind: str, name: str, value: float, unit: str) -> float:
    number = float(value)  # accepts Python/NumPy numbers and one-element tensors
    if not math.isfinite(number):
        raise ValueError(f"{kind} {name!r} is {number}: the run diverged or the metric is broken")
    path = os.environ.get(METRICS_ENV)
    if path:
        record = {
            "notebook": os.environ.get(NOTEBOOK_ENV, ""),
            "kind": kind,
            "name": name,
            "value": number,
            "unit": unit,
            "size": current_size(),
            "lang": config.current_language(),
            "seed": current_seed(),
            "threads": _threads(),
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return number


def _threads() -> int:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else 0


def metric(name: str, value: float, unit: str = "") -> None:
    """Record a number the headline is judged against (a baseline, a control) without a banner.

    Under the course runner and the tests it goes to the same JSON-lines file as the headline, so
    a target such as "with attention beats without attention by 30 points" is checked on one run.
    """
    number = _record("metric", name, value, unit)
    print(f"{name} = {_format_value(number)}{(' ' + unit) if unit else ''}")


def headline(name: str, value: float, unit: str = "") -> None:
    """Print the notebook's key number beside its baseline and targets; record it for the runner.

    The record is a JSON line {"notebook", "kind", "name", "value", "unit", "size", ...} appended to
    `LLMCOURSE_METRICS_FILE`; "notebook" comes from `LLMCOURSE_NOTEBOOK`. The targets table
    (`llmcourse.course.targets`) says what the number should reach at each size and what a full-size run
    measured; both are printed under the number. A NaN or infinite headline is an error: it means
    the run diverged, and the table must show it.
    """
    from llmcourse.course import targets

    number = _record("headline", name, value, unit)
    suffix = f" {unit}" if unit else ""
    print(f"headline: {name} = {_format_value(number)}{suffix}")
    target, language = targets.for_metric(name), config.current_language()
    if language != "en":  # the Chinese edition: its own row where it runs on Chinese data
        own = targets.for_notebook(f"{language}/{os.environ.get(NOTEBOOK_ENV, '')}")
        target = own if own is not None and own.metric == name else None
    if target is not None:
        print(targets.describe(target, current_size()))


def show_source(obj: Any) -> None:
    """Show the source of a package function or class: highlighted in a notebook, plain otherwise."""
    try:
        source = inspect.getsource(obj)
    except (TypeError, OSError) as e:
        raise TypeError(f"no Python source available for {obj!r}: {e}") from None
    file = inspect.getsourcefile(obj) or "?"
    line = inspect.getsourcelines(obj)[1]
    parts = Path(file).parts
    where = "/".join(parts[parts.index("llmcourse") :]) if "llmcourse" in parts else Path(file).name
    header = f"# {where}, line {line}\n"
    if in_notebook():
        from IPython.display import Code, display

        display(Code(header + source, language="python"))
    else:
        print(header + source, end="" if source.endswith("\n") else "\n")


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"checkpoint name {name!r} must be a plain folder name like '03_bigram'")


def checkpoint_dir(name: str) -> Path:
    """A folder for this run's checkpoints, created if needed.

    Order: `LLMCOURSE_CKPT_DIR/<name>` if that variable is set; on Colab with Google Drive mounted,
    `MyDrive/llmcourse/checkpoints/<name>` (so training survives a disconnect; see `mount_drive`);
    otherwise `./checkpoints/<name>`.
    """
    _check_name(name)
    env = os.environ.get(CKPT_ENV)
    if env:
        path = Path(env).expanduser() / name
    elif _on_colab() and DRIVE_ROOT.is_dir():
        path = DRIVE_ROOT / "llmcourse" / "checkpoints" / name  # = DRIVE_CKPT_DIR
    else:
        path = Path("checkpoints") / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def _on_colab() -> bool:
    from llmcourse import runtime

    return runtime.platform() == "colab"


def mount_drive() -> bool:
    """On Colab, mount Google Drive (asks for permission once); elsewhere do nothing.

    Returns True when Drive is available at /content/drive/MyDrive afterwards.
    """
    if not _on_colab():
        return False
    if DRIVE_ROOT.is_dir():
        return True
    try:
        from google.colab import drive  # type: ignore[import-not-found]

        drive.mount(str(DRIVE_MOUNT))
    except Exception as e:  # the learner declined, or Drive is unreachable: carry on without it
        print(
            f"Google Drive not mounted ({type(e).__name__}: {e}); checkpoints stay in ./checkpoints "
            "and are lost when the runtime disconnects."
        )
        return False
    return DRIVE_ROOT.is_dir()
