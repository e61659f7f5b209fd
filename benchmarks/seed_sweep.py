"""How steady is each notebook's headline? Run notebooks over several seeds and thread counts.

    python benchmarks/seed_sweep.py --only 11,12,13 --seeds 0,1,2 --threads 1,2 [--jobs 2] [--size smoke]
    python benchmarks/seed_sweep.py --edition zh --only 01,08   # the Chinese edition: "zh/<notebook>" rows

Each (seed, threads) pair is one `scripts/run_course.py` run with `LLMCOURSE_SEED` and a fixed
thread count, in its own output folder under --out (so each starts from fresh checkpoints). The
table gives, per notebook, the headline and its in-run baseline for every run, their spread
(min / median / max), whether the smoke target of `llmcourse/course/targets.py` held in every run, and
the median wall time. `--jobs 2` runs two runs at a time (one thread each is what CI does on two
cores); wall times are then those of a loaded machine, like CI's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmcourse.course import targets  # noqa: E402


def run(seed: int, threads: int, args: argparse.Namespace) -> Path:
    out = Path(args.out) / f"seed{seed}_threads{threads}"
    env = {
        **os.environ,
        "LLMCOURSE_SEED": str(seed),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "LLMCOURSE_LANG": args.lang,
    }
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "run_course.py"),
        "--size",
        args.size,
        "--out",
        str(out),
        "--threads",
        str(threads),
        "--edition",
        args.edition,
    ] + (["--only", args.only] if args.only else [])
    log = Path(args.out) / f"seed{seed}_threads{threads}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    return out


def collect(out: Path, *, zh: bool = False) -> dict[str, dict]:
    """Per notebook: headline value, baseline value, seconds, status, for one run folder.
    The Chinese edition's notebooks are "zh/<notebook>", as in llmcourse/course/targets_zh.py."""
    prefix = "zh/" if zh else ""
    rows = (
        {
            prefix + Path(r["notebook"]).stem: {"seconds": r["seconds"], "status": r["status"]}
            for r in json.loads((out / "summary.json").read_text())
        }
        if (out / "summary.json").exists()
        else {}
    )
    metrics = out / "metrics.jsonl"
    for line in metrics.read_text().splitlines() if metrics.exists() else []:
        rec = json.loads(line)
        nb = ("zh/" if rec.get("lang", "en") == "zh" else "") + rec["notebook"]
        t = targets.for_notebook(nb)
        if t is None or nb not in rows:
            continue
        rows[nb].setdefault("metrics", {})[rec["name"]] = rec["value"]
        if rec["name"] == t.metric:
            rows[nb]["value"] = rec["value"]
        elif rec["name"] == t.vs:
            rows[nb]["baseline"] = rec["value"]
    return rows


def spread(values: list[float], unit: str) -> str:
    if not values:
        return "-"
    return " / ".join(
        targets.fmt(round(v, 4), unit)
        for v in (min(values), statistics.median(values), max(values))
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", default="", help="notebooks, as for run_course.py (default: all)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time")
    ap.add_argument("--size", default="smoke", choices=["smoke", "full"])
    ap.add_argument("--lang", default="en")
    ap.add_argument("--edition", default="en", choices=["en", "zh"], help="zh: notebooks/zh/")
    ap.add_argument("--out", default=str(ROOT / "build" / "sweep"))
    ap.add_argument(
        "--record",
        default="",
        help="merge the results into this JSON file "
        "(docs/smoke_measured.json feeds the README's targets table: scripts/targets_table.py)",
    )
    ap.add_argument(
        "--no-run", action="store_true", help="collect the results already in --out, run nothing"
    )
    args = ap.parse_args(argv)
    pairs = list(
        itertools.product(
            [int(s) for s in args.seeds.split(",")], [int(t) for t in args.threads.split(",")]
        )
    )
    if args.no_run:  # only collect what earlier runs left in --out
        outs = [Path(args.out) / f"seed{s}_threads{t}" for s, t in pairs]
    else:
        with ThreadPoolExecutor(args.jobs) as pool:
            outs = list(pool.map(lambda p: run(*p, args), pairs))
    runs = {pair: collect(out, zh=args.edition == "zh") for pair, out in zip(pairs, outs)}
    notebooks = sorted({nb for r in runs.values() for nb in r})
    print(
        f"{'notebook':<20} {'runs (seed/threads: headline | baseline)':<60} {'min / median / max':<26} "
        f"{'target':<12} {'held':<5} time (median)"
    )
    failures, record = 0, {}
    for nb in notebooks:
        t = targets.for_notebook(nb)
        cells, values, times, held = [], [], [], True
        for (seed, threads), r in runs.items():
            row = r.get(nb)
            if row is None:
                continue
            times.append(row["seconds"])
            if row["status"] != "ok" or "value" not in row:
                cells.append(f"{seed}/{threads}: {row['status']}")
                held = False
                continue
            values.append(row["value"])
            base = (
                f" | {targets.fmt(round(row['baseline'], 4), t.unit)}" if "baseline" in row else ""
            )
            cells.append(f"{seed}/{threads}: {targets.fmt(round(row['value'], 4), t.unit)}{base}")
            recs = [{"notebook": nb, "name": k, "value": v} for k, v in row["metrics"].items()]
            problems = targets.check(recs, [nb], size=args.size)
            held &= not problems
            if problems:
                cells[-1] += " (" + "; ".join(p.split(": ", 1)[1] for p in problems) + ")"
        failures += not held
        record[nb] = [
            {
                "seed": seed,
                "threads": threads,
                "seconds": r[nb]["seconds"],
                "jobs": args.jobs,
                "date": time.strftime("%Y-%m-%d"),
                **{k: r[nb][k] for k in ("value", "baseline") if k in r[nb]},
                **(
                    {
                        "also": {
                            n: r[nb]["metrics"][n]
                            for a in t.also
                            for n in a[:2]
                            if n in r[nb]["metrics"]
                        }
                    }
                    if t.also
                    else {}
                ),
            }
            for (seed, threads), r in runs.items()
            if nb in r and r[nb]["status"] == "ok"
        ]
        target = f"{'≥' if t.higher_is_better else '≤'} {targets.fmt(t.smoke if args.size == 'smoke' else t.full, t.unit)}"
        print(
            f"{nb:<20} {'; '.join(cells):<60} {spread(values, t.unit):<26} {target:<12} "
            f"{'yes' if held else 'NO':<5} {statistics.median(times) if times else 0:.1f} s"
        )
    if args.record:
        path = Path(args.record)
        merged = json.loads(path.read_text()) if path.exists() else {}
        for (
            nb,
            new_runs,
        ) in record.items():  # a (seed, threads) pair measured again replaces the old run
            fresh = {(r["seed"], r["threads"]) for r in new_runs}
            merged[nb] = sorted(
                [r for r in merged.get(nb, []) if (r["seed"], r["threads"]) not in fresh]
                + new_runs,
                key=lambda r: (r["threads"], r["seed"]),
            )
        path.write_text(json.dumps(merged, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
        print(f"recorded in {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
