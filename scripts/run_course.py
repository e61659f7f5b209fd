"""Run the whole course headless: every notebook top to bottom, outputs and plots kept.

    python scripts/run_course.py [--size auto|smoke|full] [--only 01,02] [--out build/course]

For each notebook it writes the executed notebook (with outputs) and an HTML rendering to the
output folder, collects the headline metric the notebook records with `llmcourse.notebook.headline`,
measures the kernel's peak memory (host RSS, and GPU memory allocated by torch when a GPU is used),
and prints a table of wall time, peak memory and headline per notebook; the same rows go to
`summary.json` in the output folder (the README's compute-budget table is filled from it). A failing notebook does not stop the
others; the exit code is non-zero if any failed. `--size auto` is full with a CUDA GPU, smoke otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pick_size(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "full" if torch.cuda.is_available() else "smoke"


# Run in the notebook's kernel after its last cell, then removed from the saved notebook.
PEAK_CELL = """\
import json as _json, resource as _resource, sys as _sys
_peak = {"rss_gb": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}  # Linux: KiB
_torch = _sys.modules.get("torch")
if _torch is not None and _torch.cuda.is_available():
    _peak.update(gpu_gb=_torch.cuda.max_memory_allocated() / 1e9, gpu=_torch.cuda.get_device_name())
print("LLMCOURSE_PEAK " + _json.dumps(_peak))
"""


def _peak_from(cell) -> dict:
    for out in cell.get("outputs", []):
        for line in out.get("text", "").splitlines():
            if line.startswith("LLMCOURSE_PEAK "):
                return json.loads(line.removeprefix("LLMCOURSE_PEAK "))
    return {}


def run_one(path: Path, out_dir: Path, size: str, timeout: int, metrics_file: Path) -> tuple[str, float, dict]:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    os.environ.update(LLMCOURSE_SIZE=size, LLMCOURSE_NOTEBOOK=path.stem, LLMCOURSE_METRICS_FILE=str(metrics_file))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    status, peak, seconds = "ok", {}, None
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            seconds = time.perf_counter() - start  # the notebook alone: kernel shutdown not counted
            probe = nbformat.v4.new_code_cell(PEAK_CELL)
            nb.cells.append(probe)  # nbclient looks cells up by index
            try:
                client.execute_cell(probe, len(nb.cells) - 1, store_history=False)
            finally:
                nb.cells.pop()
            peak = _peak_from(probe)
    except Exception as exc:  # keep the partial notebook: its outputs show where it failed
        status = f"FAILED: {type(exc).__name__}"
        (out_dir / f"{path.stem}.error.txt").write_text("".join(traceback.format_exception(exc)))
    if seconds is None:
        seconds = time.perf_counter() - start
    nbformat.write(nb, out_dir / path.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / f"{path.stem}.html").write_text(html, encoding="utf-8")
    return status, seconds, peak


def headlines(metrics_file: Path) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    if metrics_file.exists():
        for line in metrics_file.read_text().splitlines():
            rec = json.loads(line)
            value = rec["value"]
            shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
            found.setdefault(rec["notebook"], []).append(f"{rec['name']} = {shown}{(' ' + rec['unit']) if rec.get('unit') else ''}")
    return {k: "; ".join(v) for k, v in found.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["auto", "smoke", "full"], default="auto")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers or name fragments")
    ap.add_argument("--out", default=str(ROOT / "build" / "course"))
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    args = ap.parse_args(argv)

    size = pick_size(args.size)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = out_dir / "metrics.jsonl"
    metrics_file.unlink(missing_ok=True)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        notebooks = [p for p in notebooks if any(p.name.startswith(k) or k in p.stem for k in keys)]
    if not notebooks:
        print("no notebooks matched", file=sys.stderr)
        return 2
    print(f"running {len(notebooks)} notebooks at size '{size}' -> {out_dir}", flush=True)
    rows = []
    for path in notebooks:
        print(f"  {path.name} ...", end="", flush=True)
        status, seconds, peak = run_one(path, out_dir, size, args.timeout, metrics_file)
        print(f" {status} in {seconds:.1f} s", flush=True)
        rows.append((path.name, status, seconds, peak))
    heads = headlines(metrics_file)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'notebook':<{width}}  {'status':<8}  {'wall time':>9}  {'peak RSS':>8}  {'peak GPU':>8}  headline")
    for name, status, seconds, peak in rows:
        rss = f"{peak['rss_gb']:.2f} GB" if "rss_gb" in peak else "-"
        gpu = f"{peak['gpu_gb']:.2f} GB" if "gpu_gb" in peak else "-"
        print(f"{name:<{width}}  {status[:8]:<8}  {seconds:>8.1f}s  {rss:>8}  {gpu:>8}  {heads.get(Path(name).stem, '-')}")
    print(f"{'total':<{width}}  {'':<8}  {sum(r[2] for r in rows):>8.1f}s")
    summary = [{"notebook": name, "status": status, "seconds": round(seconds, 1), "size": size, **peak,
                "headline": heads.get(Path(name).stem, "")} for name, status, seconds, peak in rows]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    print(f"\nexecuted notebooks and HTML in {out_dir}")
    return 0 if all(r[1] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
