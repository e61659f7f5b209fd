"""llmcourse.course.notebook (start, headline, checkpoints, sources) and scripts/make_student_edition.py."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _scripts import load_script

from llmcourse import runtime
from llmcourse.course import notebook

ROOT = Path(__file__).resolve().parents[1]


student = load_script("make_student_edition")


# ---------------------------------------------------------------------------- notebook.py


def test_import_is_cheap():
    """Importing the module must not import torch or pyplot (a notebook's first cell returns at once)."""
    code = "import sys, llmcourse.course.notebook; print('torch' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_start_returns_runtime_and_seeds_deterministically(capsys, monkeypatch):
    monkeypatch.delenv("LLMCOURSE_SIZE", raising=False)
    monkeypatch.delenv("CI", raising=False)
    rt = notebook.start(seed=123)
    first = _draws()
    assert isinstance(rt, runtime.Runtime)
    rt2 = notebook.start(seed=123)
    assert _draws() == first and rt2 == rt
    notebook.start(seed=124)
    assert _draws() != first
    out = capsys.readouterr().out
    assert (
        "size:    smoke (automatic: running under pytest/nbmake)" in out
    )  # PYTEST_CURRENT_TEST is set
    assert f"torch {torch.__version__}" in out and "precision=float32" in out


def test_start_reports_size_from_env(capsys, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_SIZE", "full")
    notebook.start()
    assert "size:    full (set by LLMCOURSE_SIZE)" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:no CJK font")
def test_start_reports_language_and_hub(capsys, monkeypatch):
    monkeypatch.setenv("LLMCOURSE_LANG", "zh")
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    notebook.start()
    assert (
        "text:    zh (LLMCOURSE_LANG) | downloads from modelscope (LLMCOURSE_HUB)"
        in capsys.readouterr().out
    )


def test_start_styles_matplotlib():
    import matplotlib

    notebook.start()
    assert matplotlib.rcParams["figure.dpi"] == notebook.MPL_DEFAULTS["figure.dpi"]
    assert matplotlib.rcParams["axes.spines.top"] is False


def test_headline_appends_json_lines(tmp_path, monkeypatch, capsys):
    metrics = tmp_path / "run" / "metrics.jsonl"
    monkeypatch.setenv("LLMCOURSE_METRICS_FILE", str(metrics))
    monkeypatch.setenv("LLMCOURSE_NOTEBOOK", "03_bigram")
    notebook.headline("toy_loss", torch.tensor(2.5), unit="nats")
    notebook.headline("params", 124_439_808)
    assert capsys.readouterr().out.splitlines() == [
        "headline: toy_loss = 2.5 nats",
        "headline: params = 124,439,808",
    ]
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    keep = ("notebook", "kind", "name", "value", "unit")
    assert [{k: r[k] for k in keep} for r in records] == [
        {
            "notebook": "03_bigram",
            "kind": "headline",
            "name": "toy_loss",
            "value": 2.5,
            "unit": "nats",
        },
        {
            "notebook": "03_bigram",
            "kind": "headline",
            "name": "params",
            "value": 124439808.0,
            "unit": "",
        },
    ]
    assert records[0]["size"] == "smoke" and records[0]["seed"] == notebook.current_seed()
    assert records[0]["threads"] >= 1


def test_metric_records_a_baseline_beside_the_headline(tmp_path, monkeypatch, capsys):
    metrics = tmp_path / "metrics.jsonl"
    monkeypatch.setenv("LLMCOURSE_METRICS_FILE", str(metrics))
    monkeypatch.setenv("LLMCOURSE_NOTEBOOK", "01_ngram")
    monkeypatch.setenv("LLMCOURSE_SEED", "3")
    monkeypatch.setattr(notebook, "_started_seed", None)
    notebook.metric("best_addk_val_ppl", 180.25)
    notebook.headline("best_kn_val_ppl", 91.5)
    out = capsys.readouterr().out
    # the banner says what to compare with and what the full size gives, from llmcourse.course.targets
    assert out.startswith(
        "best_addk_val_ppl = 180.2\nheadline: best_kn_val_ppl = 91.5\n  baseline: the best add-k"
    )
    assert "what you should see at full size" in out and "measured: 102.9" in out
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [(r["kind"], r["name"], r["seed"]) for r in records] == [
        ("metric", "best_addk_val_ppl", 3),
        ("headline", "best_kn_val_ppl", 3),
    ]


def test_seed_comes_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("LLMCOURSE_SEED", "7")
    notebook.start()
    assert notebook.current_seed() == 7 and "seed:    7" in capsys.readouterr().out
    monkeypatch.setenv("LLMCOURSE_SEED", "seven")
    monkeypatch.setattr(notebook, "_started_seed", None)
    with pytest.raises(ValueError, match="whole number"):
        notebook.current_seed()


def test_headline_without_runner_only_prints(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LLMCOURSE_METRICS_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    notebook.headline("acc", 0.123456)
    assert capsys.readouterr().out == "headline: acc = 0.1235\n"
    assert list(tmp_path.iterdir()) == []


def test_headline_refuses_nan():
    with pytest.raises(ValueError, match="diverged"):
        notebook.headline("loss", float("nan"))


def test_checkpoint_dir_default_env_and_drive(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LLMCOURSE_CKPT_DIR", raising=False)
    assert notebook.checkpoint_dir("03_bigram") == Path("checkpoints/03_bigram")
    assert (tmp_path / "checkpoints" / "03_bigram").is_dir()

    monkeypatch.setenv("LLMCOURSE_CKPT_DIR", str(tmp_path / "elsewhere"))
    path = notebook.checkpoint_dir("05_gpt")
    assert path == tmp_path / "elsewhere" / "05_gpt" and path.is_dir()

    monkeypatch.delenv("LLMCOURSE_CKPT_DIR")
    drive = tmp_path / "MyDrive"
    drive.mkdir()
    monkeypatch.setattr(notebook, "DRIVE_ROOT", drive)
    monkeypatch.setattr(runtime, "platform", lambda: "colab")
    path = notebook.checkpoint_dir("05_gpt")
    assert path == drive / "llmcourse" / "checkpoints" / "05_gpt" and path.is_dir()
    assert notebook.mount_drive() is True  # already mounted: nothing to do


@pytest.mark.parametrize("bad", ["", "..", "a/b", "/abs"])
def test_checkpoint_dir_rejects_paths(bad):
    with pytest.raises(ValueError):
        notebook.checkpoint_dir(bad)


def test_outside_notebooks(capsys):
    assert notebook.in_notebook() is False
    assert notebook.mount_drive() is False  # not on Colab: a no-op
    notebook.show_source(runtime.seed_all)
    out = capsys.readouterr().out
    assert out.startswith("# llmcourse/runtime.py, line ") and "def seed_all(seed: int)" in out
    with pytest.raises(TypeError):
        notebook.show_source(len)  # a builtin has no Python source


# ---------------------------------------------------------------------------- student edition


def _nb(*cells: tuple[str, str]) -> dict:
    out = []
    for kind, source in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    return {"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _sources(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"]]


def test_student_edition_replaces_solutions():
    code = (
        "def f(x):\n    y = x + 1\n    # BEGIN SOLUTION\n    z = y * 2\n    return z\n    # END SOLUTION\n\n"
        "# BEGIN SOLUTION\nanswer = f(3)\n# END SOLUTION\nprint('done')"
    )
    md = "**Q1.** Why?\n\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->\n\n**Q2.** <!-- BEGIN SOLUTION -->Yes<!-- END SOLUTION -->"
    out = student.student_notebook(_nb(("code", code), ("markdown", md)), "09_x.ipynb")
    stub = 'raise NotImplementedError("Exercise: write your solution here")'
    assert _sources(out) == [
        f"def f(x):\n    y = x + 1\n    {stub}\n\n{stub}\nprint('done')",
        "**Q1.** Why?\n\n*Your answer here.*\n\n**Q2.** *Your answer here.*",
    ]


def test_student_edition_without_markers_is_unchanged(tmp_path):
    nb = _nb(("markdown", "# Title\n\ntext"), ("code", "x = 1\nprint(x)"))
    assert student.student_notebook(nb) == nb
    (tmp_path / "nb").mkdir()
    src = tmp_path / "nb" / "01_a.ipynb"
    src.write_text(json.dumps(nb))
    assert student.main([str(src), "--out", str(tmp_path / "out")]) == 0
    assert json.loads((tmp_path / "out" / "01_a.ipynb").read_text()) == nb


def test_student_edition_clears_outputs():
    nb = _nb(("code", "1 + 1"))
    nb["cells"][0].update(
        execution_count=3, outputs=[{"output_type": "execute_result", "data": {}}]
    )
    cell = student.student_notebook(nb)["cells"][0]
    assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize(
    "kind, source, message",
    [
        ("code", "# BEGIN SOLUTION\nx = 1", "never closed"),
        ("code", "x = 1\n# END SOLUTION", "without a BEGIN"),
        (
            "code",
            "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n# END SOLUTION",
            "inside the block",
        ),
        ("code", "if x:\n# BEGIN SOLUTION\n    y = 1\n# END SOLUTION", "not valid Python"),
        ("markdown", "<!-- BEGIN SOLUTION -->\nanswer", "never closed"),
        ("markdown", "answer <!-- END SOLUTION -->", "without a BEGIN"),
    ],
)
def test_student_edition_rejects_bad_markers(kind, source, message):
    nb = _nb(("markdown", "# Title"), (kind, source))
    with pytest.raises(student.MarkerError, match=message) as info:
        student.student_notebook(nb, "04_demo.ipynb")
    assert "04_demo.ipynb: cell 2" in str(info.value)  # names the notebook and the cell


def test_check_mode_writes_nothing(tmp_path, capsys):
    good, bad = tmp_path / "01_good.ipynb", tmp_path / "02_bad.ipynb"
    good.write_text(json.dumps(_nb(("code", "# BEGIN SOLUTION\nx = 1\n# END SOLUTION"))))
    bad.write_text(json.dumps(_nb(("code", "# BEGIN SOLUTION\nx = 1"))))
    out_dir = tmp_path / "out"
    assert student.main(["--check", "--out", str(out_dir), str(good)]) == 0
    assert student.main(["--check", "--out", str(out_dir), str(good), str(bad)]) == 1
    assert not out_dir.exists()
    assert "02_bad.ipynb: cell 1" in capsys.readouterr().err
