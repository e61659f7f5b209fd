"""pytest hooks for the notebooks that nbmake runs (`pytest notebooks`).

Each notebook runs in a kernel that inherits this process's environment when it starts, so before
each one we set
- `LLMCOURSE_NOTEBOOK`: its name, which `notebook.headline` writes into the metrics records;
- `LLMCOURSE_CKPT_DIR`: a new, empty checkpoint folder, deleted afterwards. No run can pick up
  another run's state (a stale `notebooks/checkpoints/` once made notebook 08 skip its training).
When `LLMCOURSE_METRICS_FILE` is set (scripts/test.sh sets it), each notebook's outcome is appended
there too, so `tests/check_headlines.py` knows which notebooks ran and checks their headlines.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest


_METRICS_FILE = os.environ.get(
    "LLMCOURSE_METRICS_FILE", ""
)  # as scripts/test.sh set it, before any test ran


def _is_notebook(item) -> bool:
    return Path(str(item.fspath)).suffix == ".ipynb"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if not _is_notebook(item):
        return
    stem = Path(str(item.fspath)).stem
    item._llmcourse_ckpt = tempfile.mkdtemp(prefix=f"llmcourse-ckpt-{stem}-")
    os.environ["LLMCOURSE_NOTEBOOK"] = stem
    os.environ["LLMCOURSE_CKPT_DIR"] = item._llmcourse_ckpt
    os.environ["LLMCOURSE_METRICS_FILE"] = (
        _METRICS_FILE  # whatever a unit test in this worker did to it
    )


def pytest_runtest_teardown(item):
    if _is_notebook(item) and getattr(item, "_llmcourse_ckpt", None):
        shutil.rmtree(item._llmcourse_ckpt, ignore_errors=True)
        os.environ.pop("LLMCOURSE_CKPT_DIR", None)
        os.environ.pop("LLMCOURSE_NOTEBOOK", None)


def _run_name(path: Path) -> str:
    return f"zh/{path.stem}" if path.parent.name == "zh" else path.stem


def pytest_runtest_logreport(report):
    path = _METRICS_FILE
    if not path or report.when != "call" or not report.nodeid.split("::")[0].endswith(".ipynb"):
        return
    record = {
        # the Chinese edition (notebooks/zh/) counts as "zh/<notebook>", as its records do (targets.py)
        "notebook": _run_name(Path(report.nodeid.split("::")[0])),
        "kind": "ran",
        "outcome": report.outcome,
        "seconds": round(report.duration, 1),
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
