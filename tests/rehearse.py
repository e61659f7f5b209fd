"""Rehearse notebooks at full size, offline, against the stand-in hub (issue 16, point 1).

    python tests/rehearse.py [--steps 1] [--only 03,07] [--out build/rehearsal]

For each notebook: its full configuration (`LLMCOURSE_SIZE=full`) with every training loop capped
at `--steps` steps (`LLMCOURSE_REHEARSAL`, read by `llmcourse.config.rehearsal_steps`), the Hugging
Face ids it names served by `tests.standin_hub` on loopback (`HF_ENDPOINT`; the offline switches
off; a fresh `HF_HOME` and `LLMCOURSE_CACHE`, so every download really goes through the libraries'
loading code), executed by `scripts/run_course.py`'s runner, which also measures the kernel's peak
host memory. URL downloads (not the hub) still fail fast and fall back to the offline corpora.
Writes `<out>/rehearsal.json` (status, wall and kernel CPU seconds, peak RSS per notebook), prints
a table, and exits non-zero when a notebook failed. Headline targets are not judged and the kernels
run with `PYTHONOPTIMIZE=1` (no `assert`s): after a few steps from random weights nothing has been
learned.
What a rehearsal catches is code that does not run at full size: wrong split or column names,
dtypes, shapes, memory.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from standin_hub import StandinHub  # noqa: E402

OFFLINE_SWITCHES = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "LLMCOURSE_OFFLINE",
)


def _runner():
    spec = importlib.util.spec_from_file_location("run_course", ROOT / "scripts" / "run_course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(root: Path, url: str, *, models: bool) -> None:
    """Build the stand-in repositories in a child process: building imports transformers and
    datasets, which must not be imported here before HF_ENDPOINT is set (nor at all, in a test)."""
    import subprocess

    code = f"import standin_repos; standin_repos.build({str(root)!r}, models={models})"
    env = {**os.environ, "HF_ENDPOINT": url, "PYTHONPATH": str(ROOT / "tests")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


@contextlib.contextmanager
def standin_environment(
    work: Path,
    steps: int,
    *,
    repos: Path | None = None,
    models: bool = True,
    rows: int | None = None,
) -> Iterator[StandinHub]:
    """Start the stand-in hub over `repos` (built if needed; default `work/hub`) and set the
    variables of a rehearsal for this process and its children; restore them afterwards."""
    work = work.resolve()  # the kernels run in notebooks/
    repos = (repos or work / "hub").resolve()
    work.mkdir(parents=True, exist_ok=True)
    with StandinHub(repos) as hub:
        _build(repos, hub.url, models=models)
        home = work / "hf_home"
        shutil.rmtree(home, ignore_errors=True)
        for fresh in ("llmcourse_cache", "checkpoints"):  # no run resumes another's state
            shutil.rmtree(work / fresh, ignore_errors=True)
        values = {
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "LLMCOURSE_CACHE": str(work / "llmcourse_cache"),
            "LLMCOURSE_CKPT_DIR": str(work / "checkpoints"),
            "LLMCOURSE_REHEARSAL": str(steps),
            # a memory guard only: configs that list `rehearsal_row_caps` train on fewer rows
            "LLMCOURSE_REHEARSAL_ROWS": str(rows or 0),
            "LLMCOURSE_SIZE": "full",
            # the kernels skip `assert` statements: a notebook's checks that training *learned*
            # (beats a baseline) cannot hold after a few steps from random weights
            "PYTHONOPTIMIZE": "1",
        }
        saved = {k: os.environ.get(k) for k in (*values, *OFFLINE_SWITCHES)}
        for k in OFFLINE_SWITCHES:
            os.environ.pop(k, None)
        os.environ.update(values)
        try:
            yield hub
        finally:
            shutil.rmtree(home, ignore_errors=True)  # the downloaded copies: GBs at full size
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def served_names() -> set[str]:
    """The hub ids the stand-in serves, and the registry's corpora that download from them."""
    import standin_repos

    from llmcourse.data import registry

    ids = {*standin_repos.DATASETS, *standin_repos.MODELS, *standin_repos.ALIASES}
    corpora = {
        c.name
        for c in map(registry.get_corpus, registry._REGISTRY)
        if (c.remote or "").startswith("hf:") and c.remote[3:].split("|")[0] in ids
    }
    return ids | corpora | {"SST-2"}  # notebook 07's own name for stanfordnlp/sst2


def fallbacks(executed: Path) -> list[str]:
    """The offline-fallback lines (warnings, printed notices) in an executed notebook's outputs."""
    import nbformat

    lines = []
    for cell in nbformat.read(executed, as_version=4).cells:
        for out in cell.get("outputs", []):
            for line in out.get("text", "").splitlines():
                if re.search(r"FallbackWarning|^offline:|unavailable|falling back", line):
                    lines.append(line.strip())
    return lines


def hub_fallbacks(lines: list[str], names: set[str]) -> list[str]:
    """The fallback lines that name something the stand-in serves: a rehearsal failure, since the
    loading code must have failed on it (a wrong split, column or dtype, say)."""
    return [line for line in lines if any(re.search(rf"\b{re.escape(n)}\b", line) for n in names)]


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (a kernel counts once it is shut down)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rehearse(
    notebooks: list[Path],
    out: Path,
    steps: int,
    *,
    timeout: int = 900,
    repos: Path | None = None,
    batch_rows: int | None = None,
) -> list[dict]:
    """Run `notebooks` in a rehearsal; a row per notebook (name, status, seconds, cpu_s, rss_gb).
    `batch_rows` caps the batch rows of configs that allow it (`config.rehearsal_rows`)."""
    runner = _runner()
    rows, out = [], out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    with standin_environment(out, steps, repos=repos, rows=batch_rows):
        for path in notebooks:
            metrics = out / "metrics.jsonl"
            cpu0 = _children_cpu()
            status, seconds, peak = runner.run_one(path, out, "full", timeout, metrics)
            lines = fallbacks(out / path.name)
            bad = hub_fallbacks(lines, served_names())
            if bad and status == "ok":
                status = "FAILED: fell back from the stand-in hub"
            row = {"notebook": path.stem, "status": status, "seconds": round(seconds, 1)}
            row["cpu_s"] = round(_children_cpu() - cpu0, 1)  # the kernel's, on a shared machine
            row["rss_gb"] = round(peak.get("rss_gb", float("nan")), 2)
            row["fallbacks"], row["hub_fallbacks"] = lines, bad
            rows.append(row)
            print(
                f"{path.stem:<24} {status:<28} {seconds:7.1f} s  {row['cpu_s']:7.1f} CPU s  "
                f"{row['rss_gb']:6.2f} GB",
                flush=True,
            )
            for line in lines:
                print(f"    {'HUB ' if line in bad else ''}fallback: {line[:160]}", flush=True)
    (out / "rehearsal.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--steps", type=int, default=1, help="the step cap of every training loop")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers")
    ap.add_argument("--out", default=str(ROOT / "build" / "rehearsal"))
    ap.add_argument(
        "--repos", default="", help="a stand-in hub tree to reuse (default: built in <out>/hub)"
    )
    ap.add_argument(
        "--rows", type=int, default=0, help="cap batch rows where a config allows it (0: full)"
    )
    args = ap.parse_args(argv)
    wanted = [w.strip() for w in args.only.split(",") if w.strip()]
    notebooks = [
        p
        for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        if not wanted or any(p.name.startswith(w) for w in wanted)
    ]
    repos = Path(args.repos) if args.repos else None
    rows = rehearse(
        notebooks, Path(args.out), args.steps, repos=repos, batch_rows=args.rows or None
    )
    return int(any(r["status"] != "ok" for r in rows))


if __name__ == "__main__":
    sys.exit(main())
