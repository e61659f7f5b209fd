"""Run the whole course headless: every notebook top to bottom, outputs and plots kept.

    python scripts/run_course.py [--size auto|smoke|full] [--only 01,02] [--out build/course] [--threads N]
    python scripts/run_course.py --edition zh    # the Chinese edition, notebooks/zh/ (its own targets)

For each notebook it writes the executed notebook (with outputs) and an HTML rendering to the
output folder, collects the headline metric the notebook records with `llmcourse.course.notebook.headline`,
measures the kernel's peak memory (host RSS, and GPU memory allocated by torch when a GPU is used),
and prints a table of wall time, peak memory and headline per notebook; the same rows go to
`summary.json` in the output folder (the README's compute-budget table is filled from it). A failing notebook does not stop the
others; the exit code is non-zero if any failed or missed its target (`llmcourse.course.targets`).
`--size auto` is full with a CUDA GPU, smoke otherwise. `--cap` limits each notebook's wall time,
`--budget` the whole run's (each notebook may take what is left / the notebooks still to run): a
notebook still running then is cut ("CUT", outputs and peak memory kept); under 10 s: "NOT RUN".

Every run starts from an empty checkpoint folder, `<out>/checkpoints` (notebooks later in the run
reuse earlier ones' checkpoints, 11 -> 12, as a learner's session does), so no run picks up the
state of another. Kernels talk to the runner over local IPC sockets, and each gets a thread count
that suits the machine's current load. The run ends with `<out>/index.html`: the executed course
as a book, every notebook linked in teaching order with its headline, target, size and time.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import math
import os
import shutil
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


@contextlib.contextmanager
def environment(**values: str):
    """Set environment variables for the kernels started inside, and restore the old ones after.

    The kernel inherits this process's environment; the caller's (a test worker's) must not change.
    """
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_one(
    path: Path,
    out_dir: Path,
    size: str,
    timeout: int,
    metrics_file: Path,
    *,
    cap: float | None = None,
) -> tuple[str, float, dict]:
    with environment(
        LLMCOURSE_SIZE=size,
        LLMCOURSE_NOTEBOOK=path.stem,
        LLMCOURSE_METRICS_FILE=str(metrics_file),
        # read later as HTML: static progress lines, not frozen widgets (course/live_output.py)
        LLMCOURSE_UNATTENDED="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",  # transformers', the hub's and datasets' bars too
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
    ):
        return _run_one(path, out_dir, timeout, cap)


def _run_one(path: Path, out_dir: Path, timeout: int, cap: float | None = None):
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    km = _kernel_manager()
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        km=km,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    status, peak, seconds = "ok", {}, None
    peak_file = out_dir / f"{path.stem}.peak.json"
    try:
        with client.setup_kernel():
            cut = _execute_all(client, nb, timeout, cap, start)
            seconds = time.perf_counter() - start  # the notebook alone: kernel shutdown not counted
            if cut is None:
                peak = _peak(client, nb, peak_file, after_cut=False)
            else:
                status = f"CUT after {cap:.0f} s"
                (out_dir / f"{path.stem}.error.txt").write_text(f"cut in cell {cut}\n")
                km.interrupt_kernel()  # stop the cell, keep the kernel: its peak memory is wanted
                client.timeout = 30
                with contextlib.suppress(Exception):  # a cut notebook's peak is a bonus
                    peak = _peak(client, nb, peak_file, after_cut=True)
    except Exception as exc:  # keep the partial notebook: its outputs show where it failed
        status = f"FAILED: {type(exc).__name__}"
        (out_dir / f"{path.stem}.error.txt").write_text("".join(traceback.format_exception(exc)))
    finally:  # the runner made the kernel manager, so it shuts the kernel down
        if km.has_kernel:
            km.shutdown_kernel(now=False)
        if km.transport == "ipc":
            shutil.rmtree(Path(km.ip).parent, ignore_errors=True)
    if seconds is None:
        seconds = time.perf_counter() - start
    nbformat.write(nb, out_dir / path.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / f"{path.stem}.html").write_text(html, encoding="utf-8")
    return status, seconds, peak


def _execute_all(client, nb, timeout: int, cap: float | None, start: float) -> int | None:
    """Run every cell; return the index of the cell still running `cap` s after `start`, or None."""
    from nbclient.exceptions import CellTimeoutError

    for index, cell in enumerate(nb.cells):
        # a cell runs until the per-cell timeout or the notebook's cap, whichever comes first
        left = timeout if cap is None else cap - (time.perf_counter() - start)
        client.timeout = max(1, math.ceil(min(timeout, left)))  # an int trait
        try:
            client.execute_cell(cell, index)
        except CellTimeoutError:
            if left >= timeout:
                raise
            return index
    return None


def _peak(client, nb, peak_file: Path, *, after_cut: bool) -> dict:
    """PEAK_CELL's measurement. After a cut the kernel aborts requests sent while it handles the
    interrupt (so: retry) and the cut cell's reader may swallow the print (so: `peak_file` too)."""
    import nbformat

    probe = nbformat.v4.new_code_cell(PEAK_CELL)
    if after_cut:
        probe.source += f"open({str(peak_file)!r}, 'w').write(_json.dumps(_peak))\n"
    nb.cells.append(probe)  # nbclient looks cells up by index
    try:
        for _ in range(5 if after_cut else 1):
            time.sleep(1 if after_cut else 0)
            client.execute_cell(probe, len(nb.cells) - 1, store_history=False)
            peak = _peak_from(probe)
            if not peak and peak_file.exists():
                peak = json.loads(peak_file.read_text())
            if peak:
                return peak
        return {}
    finally:
        nb.cells.pop()
        peak_file.unlink(missing_ok=True)


def _kernel_manager():
    """A kernel manager on local IPC sockets where the OS has them: no TCP port, and no kernel
    warning about unencrypted TCP printed into the course's output once per notebook."""
    import tempfile

    from jupyter_client.manager import KernelManager

    # nbclient polls its client asynchronously: a blocking client (KernelManager's default) would
    # wait for output forever, and no cell timeout (nor --cap) could ever fire
    kw = dict(kernel_name="python3", client_class="jupyter_client.asynchronous.AsyncKernelClient")
    if os.name != "posix":
        return KernelManager(**kw)
    # an absolute socket path: the kernel runs in the notebook's folder, the runner elsewhere
    sockets = Path(tempfile.mkdtemp(prefix="llmcourse-kernel-")) / "kernel"
    return KernelManager(**kw, transport="ipc", ip=str(sockets))


def pick_threads(requested: int | None) -> int:
    """Torch threads per notebook: the cores this process may use, less the load already on them.

    On a busy machine more threads than free cores make every step wait for the slowest thread
    (a notebook took 10x longer that way), so a loaded 2-core machine gets one thread.
    """
    if requested:
        return requested
    if os.environ.get("LLMCOURSE_THREADS", "").strip():  # the learner's explicit choice wins
        return max(1, int(os.environ["LLMCOURSE_THREADS"]))
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores, round(cores - load)))


def read_metrics(metrics_file: Path) -> list[dict]:
    if not metrics_file.exists():
        return []
    return [
        json.loads(line)
        for line in metrics_file.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def headlines(metrics_file: Path) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    for rec in read_metrics(metrics_file):
        if rec.get("kind", "headline") != "headline":
            continue
        value = rec["value"]
        shown = f"{value:.4g}" if isinstance(value, (int, float)) else str(value)
        found.setdefault(rec["notebook"], []).append(
            f"{rec['name']} = {shown}{(' ' + rec['unit']) if rec.get('unit') else ''}"
        )
    return {k: "; ".join(v) for k, v in found.items()}


def _title(path: Path) -> str:
    """The notebook's first heading, e.g. '04 · Attention'."""
    import nbformat

    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def write_index(out_dir: Path, summary: list[dict], size: str) -> Path:
    """`index.html`: the executed course as a book, each notebook linked with headline, target, time."""
    rows = []
    for row in summary:
        stem = Path(row["notebook"]).stem
        ok = row["status"] == "ok" and row.get("target_met", True)
        mark = "met" if ok else ("below target" if row["status"] == "ok" else row["status"])
        rows.append(
            f"<tr class='{'ok' if ok else 'bad'}'><td><a href='{html.escape(stem)}.html'>{html.escape(row['title'])}</a></td>"
            f"<td>{html.escape(row.get('headline') or '-')}</td><td>{html.escape(row.get('baseline_shown', ''))}</td>"
            f"<td>{html.escape(row.get('target_shown', ''))}</td><td>{html.escape(mark)}</td>"
            f"<td>{html.escape(row['size'])}</td><td>{row['seconds']:.0f} s</td></tr>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>llmcourse: the executed course</title>
<style>body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}}
tr.bad td{{background:#fde8e8}}</style></head>
<body><h1>llmcourse: the executed course</h1>
<p>Every notebook, run top to bottom at <b>{html.escape(size)}</b> size on {html.escape(time.strftime("%Y-%m-%d"))},
in teaching order. Each link opens the notebook with its outputs and figures. The headline is the notebook's key
number; the target is what this size must reach (<code>llmcourse/course/targets.py</code>).</p>
<table><thead><tr><th>notebook</th><th>headline</th><th>baseline in this run</th><th>target</th><th></th><th>size</th><th>time</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def judge(rows: list[tuple], records: list[dict], size: str) -> dict[str, dict]:
    """Per notebook: its target row from llmcourse.course.targets, shown as text, and whether it was met."""
    from llmcourse.course import targets

    values = [r for r in records if r.get("kind", "headline") in ("headline", "metric")]
    # a Chinese run (the zh edition, or LLMCOURSE_LANG=zh) is judged as "zh/<notebook>" (targets_zh.py)
    zh = "zh/" if any(r.get("lang", "en") == "zh" for r in values) else ""
    ran = [zh + Path(name).stem for name, status, *_ in rows if status == "ok"]
    out = {}
    for r in targets.results(values, ran, size=size):
        t = targets.for_notebook(r["notebook"])
        base = (
            f"{t.vs} = {targets.fmt(r['baseline_value'], r['unit'])}"
            if t and r["baseline_value"] is not None
            else ""
        )
        shown = (
            f"{r['compare']} {targets.fmt(r['target'], r['unit'])}"
            if r["target"] is not None
            else ""
        )
        if t and t.vs:
            shown += f", {targets.margin_text(t)}"
        out[r["notebook"].removeprefix("zh/")] = {
            "target_met": r["met"],
            "target_shown": shown,
            "baseline_shown": base,
            "target_failure": r["why"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", choices=["auto", "smoke", "full"], default="auto")
    ap.add_argument("--only", default="", help="comma-separated notebook numbers or name fragments")
    ap.add_argument(
        "--edition",
        choices=["en", "zh"],
        default="en",
        help="zh: the Chinese edition (notebooks/zh/: Chinese text where a lesson has it, Chinese figures)",
    )
    ap.add_argument("--out", default=str(ROOT / "build" / "course"))
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    ap.add_argument("--cap", type=float, default=0, help="seconds per notebook (0 = no cap)")
    ap.add_argument("--budget", type=float, default=0, help="seconds for all notebooks (0 = none)")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per notebook (default: LLMCOURSE_THREADS, else the free cores from the load average)",
    )
    args = ap.parse_args(argv)

    size = pick_size(args.size)
    out_dir = Path(args.out).resolve()  # absolute: the kernels run in the notebooks' folder
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_file = out_dir / "metrics.jsonl"
    metrics_file.unlink(missing_ok=True)
    ckpt_root = out_dir / "checkpoints"  # fresh for every run: no run resumes another's state
    shutil.rmtree(ckpt_root, ignore_errors=True)
    ckpt_root.mkdir()
    threads = pick_threads(args.threads)
    with environment(
        LLMCOURSE_CKPT_DIR=str(ckpt_root),
        LLMCOURSE_THREADS=str(threads),
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="false",
    ):
        return _run_all(args, size, out_dir, metrics_file, ckpt_root, threads)


def _run_all(
    args: argparse.Namespace,
    size: str,
    out_dir: Path,
    metrics_file: Path,
    ckpt_root: Path,
    threads: int,
) -> int:
    folder = ROOT / "notebooks" / ("zh" if args.edition == "zh" else "")
    notebooks = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        notebooks = [p for p in notebooks if any(p.name.startswith(k) or k in p.stem for k in keys)]
    if not notebooks:
        print("no notebooks matched", file=sys.stderr)
        return 2
    print(
        f"running {len(notebooks)} notebooks at size '{size}', {threads} torch thread(s) each, "
        f"checkpoints in {ckpt_root} (fresh) -> {out_dir}",
        flush=True,
    )
    rows, caps = [], {}
    end = time.perf_counter() + args.budget if args.budget else None
    for i, path in enumerate(notebooks):
        print(f"  {path.name} ...", end="", flush=True)
        cap = args.cap or None
        if end is not None:  # a fair share of what is left: a slow notebook cannot starve the rest
            share = (end - time.perf_counter()) / (len(notebooks) - i)
            cap = min(cap or share, share)
        caps[path.name] = cap
        if cap is not None and cap < 10:
            status, seconds, peak = "NOT RUN: under 10 s left", 0.0, {}
        else:
            status, seconds, peak = run_one(
                path, out_dir, size, args.timeout, metrics_file, cap=cap
            )
        print(f" {status} in {seconds:.1f} s", flush=True)
        rows.append((path.name, status, seconds, peak))
    heads = headlines(metrics_file)
    verdicts = judge(rows, read_metrics(metrics_file), size)
    width = max(len(r[0]) for r in rows)
    print(
        f"\n{'notebook':<{width}}  {'status':<8}  {'wall time':>9}  {'peak RSS':>8}  {'peak GPU':>8}  {'target':<20}  headline"
    )
    for name, status, seconds, peak in rows:
        rss = f"{peak['rss_gb']:.2f} GB" if "rss_gb" in peak else "-"
        gpu = f"{peak['gpu_gb']:.2f} GB" if "gpu_gb" in peak else "-"
        v = verdicts.get(Path(name).stem, {})
        target = (
            "-"
            if not v or v["target_shown"].startswith("none")
            else (("met " if v["target_met"] else "MISSED ") + v["target_shown"].split(",")[0])
        )
        print(
            f"{name:<{width}}  {status[:8]:<8}  {seconds:>8.1f}s  {rss:>8}  {gpu:>8}  {target:<20}  "
            f"{heads.get(Path(name).stem, '-')}"
        )
    print(f"{'total':<{width}}  {'':<8}  {sum(r[2] for r in rows):>8.1f}s")
    summary = [
        {
            "notebook": name,
            "title": _title(folder / name),
            "status": status,
            "seconds": round(seconds, 1),
            "size": size,
            "threads": threads,
            "cap_s": None if caps.get(name) is None else round(caps[name], 1),
            **peak,
            "headline": heads.get(Path(name).stem, ""),
            **verdicts.get(Path(name).stem, {}),
        }
        for name, status, seconds, peak in rows
    ]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    index = write_index(out_dir, summary, size)
    missed = [
        r["target_failure"]
        for r in summary
        if r["status"] == "ok" and not r.get("target_met", True)
    ]
    if missed:
        print("\nbelow target (llmcourse/course/targets.py):\n  " + "\n  ".join(missed))
    print(f"\nthe executed course, as a book: {index}")
    return 0 if all(r[1] == "ok" for r in rows) and not missed else 1


if __name__ == "__main__":
    sys.exit(main())
