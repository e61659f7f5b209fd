"""dev/gpu_check.py --dry-run: the GPU check's own code path on the CPU, tiny sizes, every part.

The dry run trains the GPT benchmark in bf16 and in fp16 with a GradScaler, compares a tiny Llama
with Hugging Face's, pretrains the baby GPT on Shakespeare for 20 steps through the CLI and runs
notebook 09 at smoke size through scripts/run_course.py; here each part's numbers are checked.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    # a plain child environment: the test run's metrics file and checkpoint folder are not its own
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCOURSE_")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LLMCOURSE_THREADS="1")
    cmd = [sys.executable, str(ROOT / "dev" / "gpu_check.py"), "--dry-run", "--out", str(out)]
    cmd += ["--course-out", str(out / "course")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "gpu_check.json").read_text()), proc.stdout


@pytest.mark.slow
def test_the_summary_names_the_machine_and_every_part(dry_run):
    _, s, stdout = dry_run
    assert s["dry_run"] is True and s["machine"]["torch"] == torch.__version__
    assert s["machine"]["device"] == "cpu" and s["machine"]["missing"] == []
    assert s["machine"]["date"][:2] == "20"
    for part in ("gpt_mfu", "llama", "shakespeare", "notebooks"):
        assert s[part]["status"] == "ok", (part, s[part]["status"])
        assert 0 <= s[part]["wall_s"] <= s["wall_s"]
    assert 0 < s["wall_s"] < s["budget_s"]
    assert "DRY RUN" in stdout and "Shakespeare baby GPT" in stdout  # the table was printed


@pytest.mark.slow
def test_gpt_benchmark_ran_in_bf16_and_in_fp16_with_a_grad_scaler(dry_run):
    g = dry_run[1]["gpt_mfu"]
    for precision, dtype in (("bf16", "bfloat16"), ("fp16", "float16")):
        r = g[precision]
        assert r["precision"] == dtype and r["shape"]["n_layer"] == 2 and r["shape"]["steps"] == 2
        assert r["tokens_per_s"] > 0 and r["hf_tokens_per_s"] > 0
        assert r["mfu"] is None and r["peak_gpu_gb"] is None  # no peak FLOP/s for a CPU
        # random weights, vocabulary 256: the loss starts near ln 256 = 5.55, and ours and HF's
        # start from the same weights on the same batches
        assert abs(r["final_loss"] - math.log(256)) < 0.5
        assert abs(r["final_loss"] - r["hf_final_loss"]) < 0.05
    assert g["fp16"]["grad_scaler"] and not g["bf16"]["grad_scaler"]
    assert g["fp16"]["loss_scale"] >= 2.0**14 and g["fp16"]["skipped_steps"] <= 2


@pytest.mark.slow
def test_llama_comparison_decodes_the_same_tokens(dry_run):
    r = dry_run[1]["llama"]
    assert r["identical"] is True and r["model"] == "tiny random Llama"
    assert r["decode"]["tokens"] == 4 and r["prefill"]["tokens"] == 16
    for name in ("decode", "prefill"):
        assert r[name]["ours_tok_s"] > 0 and r[name]["hf_tok_s"] > 0


@pytest.mark.slow
def test_shakespeare_run_learns_and_reports_its_validation_loss(dry_run):
    r = dry_run[1]["shakespeare"]
    assert r["corpus_chars"] == 200_000 and not r["cut"]
    assert r["steps"] == r["max_steps"] == 20
    assert [step for step, _ in r["val_curve"]] == [10, 20]
    # learning happened: below the uniform guess ln(vocab), and falling between the estimates
    assert r["val_loss"] < math.log(r["vocab"]) - 0.3
    assert r["val_curve"][1][1] < r["val_curve"][0][1]
    assert r["nanogpt_val_loss"] == 1.47 and r["reached_nanogpt"] is False


@pytest.mark.slow
def test_notebook_ran_through_the_course_runner_and_was_archived(dry_run):
    out, s, _ = dry_run
    nb = s["notebooks"]
    assert nb["size"] == "smoke" and nb["ok"] == ["09_generation.ipynb"] and not nb["cut"]
    (row,) = nb["rows"]
    assert row["status"] == "ok" and 0 < row["seconds"] <= row["cap_s"]
    assert row["headline"].startswith("kv_cache_speedup") and row["target_met"] is True
    summary = json.loads((out / "course" / "summary.json").read_text())
    assert [r["notebook"] for r in summary] == ["09_generation.ipynb"]
    with tarfile.open(out / "course.tar.gz") as tar:
        names = tar.getnames()
        assert "course/summary.json" in names and "course/09_generation.html" in names
        executed = nbformat.reads(
            tar.extractfile("course/09_generation.ipynb").read().decode(), as_version=4
        )
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
