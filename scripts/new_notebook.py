"""Scaffold a new course notebook that already passes tests/test_notebook_conventions.py.

    python scripts/new_notebook.py scratch/05_attention.py "Attention"     # jupytext percent script
    python scripts/new_notebook.py notebooks/05_attention.ipynb "Attention" # notebook directly

Author in the percent script (outside the repo), then `jupytext --to ipynb` it into notebooks/.
The setup cell comes from scripts/setup_cells.py, its single source of truth: add the notebook to its
`NOTEBOOK_DATA` table (which offline-data packages it reads), then `python scripts/setup_cells.py`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import setup_cells  # noqa: E402

from llmcourse import GITHUB_REPO, REPO_URL  # noqa: E402

NAME = re.compile(r"^\d{2}_[a-z0-9]+(_[a-z0-9]+)*$")
BADGE = (
    "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
    f"(https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/notebooks/{{file}})"
)
# Every notebook's first cell links the English–Chinese glossary (relative to notebooks/).
# An absolute link: a relative one breaks when the notebook is opened in Colab or Kaggle.
GLOSSARY_URL = f"{REPO_URL}/blob/main/docs/GLOSSARY.md"
GLOSSARY_LINK = f"Glossary of terms, English–中文: [docs/GLOSSARY.md]({GLOSSARY_URL})"


def cells(stem: str, title: str) -> list[tuple[str, str]]:
    """(cell_type, source) pairs of the scaffold."""
    number = stem[:2]
    return [
        (
            "markdown",
            f"# {number} · {title}\n\n{BADGE.format(file=stem + '.ipynb')}\n\n"
            f"{GLOSSARY_LINK}\n\n**Learning goals**\n\n- TODO: what the learner can do afterwards\n\n"
            "**Prerequisites:** TODO",
        ),
        ("code", setup_cells.render(stem)),
        ("code", "from llmcourse.course import notebook\n\nrt = notebook.start()"),
        (
            "markdown",
            "## 1. TODO: the first idea\n\nBuild it small inline, check it against the package, "
            "then use the package at scale.",
        ),
        ("code", 'result = 1.0  # TODO\nnotebook.headline("TODO_metric", result)'),
        ("markdown", "## Summary\n\n- TODO"),
        (
            "markdown",
            "## Questions\n\n1. TODO\n\n**Answer.** <!-- BEGIN SOLUTION -->TODO<!-- END SOLUTION -->",
        ),
        (
            "markdown",
            "## Exercises\n\nWrite `softmax(x)` over the last dimension; the check compares it "
            "with `torch.softmax` on random inputs.",
        ),
        (
            "code",
            "import torch\nfrom llmcourse.course import exercises\n\n\ndef softmax(x: torch.Tensor) -> torch.Tensor:\n"
            "    # BEGIN SOLUTION\n    z = x - x.amax(dim=-1, keepdim=True)\n"
            "    return z.exp() / z.exp().sum(dim=-1, keepdim=True)\n    # END SOLUTION\n\n\n"
            'exercises.check("softmax", softmax)',
        ),
    ]


def as_ipynb(pairs: list[tuple[str, str]]) -> dict:
    out = []
    for i, (kind, source) in enumerate(pairs):
        cell = {
            "cell_type": kind,
            "id": f"cell-{i:02d}",
            "metadata": {},
            "source": source.splitlines(keepends=True),
        }
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    kernel = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return {
        "cells": out,
        "metadata": {"kernelspec": kernel, "language_info": {"name": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def as_percent(pairs: list[tuple[str, str]]) -> str:
    blocks = []
    for kind, source in pairs:
        if kind == "markdown":
            body = "\n".join(("# " + line).rstrip() for line in source.splitlines())
            blocks.append(f"# %% [markdown]\n{body}")
        else:
            blocks.append(f"# %%\n{source}")
    return "\n\n".join(blocks) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("path", type=Path, help="NN_topic.py (percent script) or NN_topic.ipynb")
    ap.add_argument("title")
    ap.add_argument("--force", action="store_true", help="overwrite an existing file")
    args = ap.parse_args(argv)
    if not NAME.match(args.path.stem) or args.path.suffix not in (".py", ".ipynb"):
        print(
            f"error: {args.path.name}: name it NN_topic.py or NN_topic.ipynb (e.g. 05_attention.py)",
            file=sys.stderr,
        )
        return 1
    if args.path.exists() and not args.force:
        print(f"error: {args.path} exists (use --force to overwrite)", file=sys.stderr)
        return 1
    pairs = cells(args.path.stem, args.title)
    args.path.parent.mkdir(parents=True, exist_ok=True)
    if args.path.suffix == ".ipynb":
        text = json.dumps(as_ipynb(pairs), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    else:
        text = as_percent(pairs)
    args.path.write_text(text, encoding="utf-8")
    print(f"wrote {args.path}")
    if args.path.stem not in setup_cells.NOTEBOOK_DATA:
        print(
            f"next: add {args.path.stem!r} to NOTEBOOK_DATA in scripts/setup_cells.py (the offline "
            "data packages it reads), then run `python scripts/setup_cells.py`"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
