"""scripts/run_course.py: runs a notebook in a kernel, keeps its outputs, measures time and peak memory."""

from __future__ import annotations

import json

import nbformat
import pytest
from _scripts import load_script

course = load_script("run_course")


def _write(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_run_one_keeps_outputs_and_measures_peak_memory(tmp_path):
    """A cell that holds ~200 MB shows up in the peak RSS; the probe cell is not saved."""
    nb = _write(tmp_path / "01_demo.ipynb", "big = bytearray(200_000_000)\nprint('hello')")
    out = tmp_path / "out"
    out.mkdir()
    status, seconds, peak = course.run_one(nb, out, "smoke", 120, out / "metrics.jsonl")
    assert status == "ok" and seconds > 0
    assert peak["rss_gb"] > 0.2, peak
    saved = nbformat.read(out / "01_demo.ipynb", as_version=4)
    assert len(saved.cells) == 1 and "hello" in saved.cells[0].outputs[0]["text"]
    assert "LLMCOURSE_PEAK" not in json.dumps(saved)
    assert (out / "01_demo.html").exists()


@pytest.mark.slow
def test_a_failing_notebook_is_reported_and_kept(tmp_path):
    nb = _write(tmp_path / "02_bad.ipynb", "print('before')", "1 / 0", "print('never')")
    out = tmp_path / "out"
    out.mkdir()
    status, _, peak = course.run_one(nb, out, "smoke", 120, out / "metrics.jsonl")
    assert status == "FAILED: CellExecutionError" and peak == {}
    assert "ZeroDivisionError" in (out / "02_bad.error.txt").read_text()
    saved = nbformat.read(out / "02_bad.ipynb", as_version=4)
    assert "before" in saved.cells[0].outputs[0]["text"] and not saved.cells[2].outputs


@pytest.mark.slow
def test_a_notebook_past_its_cap_is_cut_with_outputs_and_peak_kept(tmp_path):
    """--cap: the running cell is interrupted at the cap, the kernel still reports its peak memory."""
    nb = _write(
        tmp_path / "03_slow.ipynb",
        "big = bytearray(150_000_000)\nprint('before')",
        "import time\nfor _ in range(3000):\n    time.sleep(0.1)",
        "print('never')",
    )
    out = tmp_path / "out"
    out.mkdir()
    status, seconds, peak = course.run_one(nb, out, "smoke", 600, out / "metrics.jsonl", cap=8)
    assert status == "CUT after 8 s" and 7 < seconds < 60, (status, seconds)
    assert peak["rss_gb"] > 0.15, peak
    saved = nbformat.read(out / "03_slow.ipynb", as_version=4)
    assert "before" in saved.cells[0].outputs[0]["text"]
    assert saved.cells[1].outputs[0]["ename"] == "KeyboardInterrupt" and not saved.cells[2].outputs
    assert "cut in cell 1" in (out / "03_slow.error.txt").read_text()
