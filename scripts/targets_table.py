"""Render the targets table (llmcourse/course/targets.py) with the measured smoke values into the README.

    python scripts/targets_table.py          # rewrite the block between the README's markers
    python scripts/targets_table.py --check  # exit 1 if the README's block is out of date

The measured values come from docs/smoke_measured.json, which `benchmarks/seed_sweep.py --record`
writes: for each notebook the headline over several seeds and thread counts (min–max), its
baseline in the same runs, and the median wall time. A test (tests/test_targets.py) fails when the
README's table and these two sources disagree, so a changed target cannot hide in the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmcourse.course import targets  # noqa: E402

README = ROOT / "README.md"
MEASURED = ROOT / "docs" / "smoke_measured.json"
BEGIN, END = (
    "<!-- targets table: begin (scripts/targets_table.py) -->",
    "<!-- targets table: end -->",
)


def _range(values: list[float], unit: str) -> str:
    if not values:
        return "not measured"
    lo, hi = min(values), max(values)
    return (
        targets.fmt(round(lo, 4), unit)
        if lo == hi
        else f"{targets.fmt(round(lo, 4), unit)} – {targets.fmt(round(hi, 4), unit)}"
    )


def render(measured: dict) -> str:
    lines = [
        "| # | headline | baseline | smoke target | measured at smoke size (min – max) | baseline measured "
        "| runs | smoke time (median, 1 thread) | full-size target | measured at full size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    from llmcourse.course.targets_zh import TARGETS_ZH

    for t in (
        targets.TARGETS + TARGETS_ZH
    ):  # the Chinese edition's rows on Chinese data after the English
        runs_ = measured.get(t.notebook, [])
        m = (
            {
                "values": [r["value"] for r in runs_ if "value" in r],
                "baselines": [r["baseline"] for r in runs_ if "baseline" in r],
                "seconds": [r["seconds"] for r in runs_ if r["threads"] == 1],
                "seeds": sorted({r["seed"] for r in runs_}),
                "threads": sorted({r["threads"] for r in runs_}),
                "runs": len(runs_),
            }
            if runs_
            else {}
        )
        cmp = "≥" if t.higher_is_better else "≤"
        smoke = f"{cmp} {targets.fmt(t.smoke, t.unit)}"
        if t.vs:
            smoke += f", {targets.margin_text(t)}"
        for name, other, margin in t.also:
            smoke += f"; `{name}` ≥ `{other}` + {margin:g}"
        runs = (
            f"{m['runs']} (seeds {','.join(map(str, m['seeds']))} × threads {','.join(map(str, m['threads']))})"
            if m
            else "–"
        )
        time_ = f"{statistics.median(m['seconds']):.0f} s" if m.get("seconds") else "–"
        full = t.measured_full or f"not yet: `{t.command()}` on {t.full_on}"
        lines.append(
            f"| {t.notebook.removeprefix('zh/')[:2]}{' zh' * t.notebook.startswith('zh/')} | `{t.metric}` | {t.baseline} | {smoke} | {_range(m.get('values', []), t.unit)} "
            f"| {_range(m.get('baselines', []), t.unit) if t.vs else '–'} | {runs} | {time_} "
            f"| {cmp} {targets.fmt(t.full, t.unit)} | {full} |"
        )
    return "\n".join(lines)


def block(measured: dict) -> str:
    return f"{BEGIN}\n{render(measured)}\n{END}"


def current_block(text: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"README.md has no targets block: add the two lines\n{BEGIN}\n{END}")
    return text[text.index(BEGIN) : text.index(END) + len(END)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    measured = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    text = README.read_text(encoding="utf-8")
    new = block(measured)
    if args.check:
        if current_block(text) != new:
            print("README.md's targets table is out of date: run python scripts/targets_table.py")
            return 1
        return 0
    README.write_text(text.replace(current_block(text), new), encoding="utf-8")
    print(f"wrote the targets table into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
