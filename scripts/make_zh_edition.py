"""Make the Chinese edition of the notebooks from one source, or check that it is in sync.

    python scripts/make_zh_edition.py                  # notebooks/NN_*.ipynb + notebooks/zh/source/NN_*.md
                                                       #   -> notebooks/zh/NN_*.ipynb
    python scripts/make_zh_edition.py --check          # exit 1 if a translation is missing or stale, or a
                                                       #   committed zh notebook is not what this script makes
    python scripts/make_zh_edition.py --skeleton 04_attention   # start a translation source

The English notebooks are primary. A zh notebook is its English notebook with:

- every markdown cell replaced by its translation from `notebooks/zh/source/<stem>.md`, where each cell's
  Chinese text follows a marker line naming the English cell's id and the hash of the English text it
  translates (`<!-- llmcourse-zh cell=<id> en=<first 12 hex digits of sha256> -->`);
- the same code cells, except that the setup cell also sets `LLMCOURSE_LANG=zh` (Chinese data where a
  lesson has it, Chinese figure text: llmcourse/course/figure_text.py) and, on Colab or Kaggle, installs a
  CJK font and Debian's fortunes-zh (the Chinese corpora of the CPU size).

When an English cell changes, its recorded hash no longer matches: the zh notebook shows the old translation
under a warning banner, and `--check` (run by tests/test_zh_edition.py) fails, naming the cell. A cell with no
translation shows the English text under a banner. Uses only the standard library.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ZH = NOTEBOOKS / "zh"
SOURCES = ZH / "source"
MARKER = re.compile(
    r"^<!-- llmcourse-zh cell=(?P<id>[\w-]+) en=(?P<hash>[0-9a-f]{12}) -->[ \t]*$", re.M
)
CJK = re.compile(r"[\u4e00-\u9fff]")
REPO_BLOB = "https://colab.research.google.com/github/llmcourse/llmcourse/blob/main/notebooks/"
STALE = "> ⚠️ **翻译待更新**：英文原文在这段翻译之后改过（`python scripts/make_zh_edition.py --check` 会列出）。\n\n"
MISSING = "> ⚠️ **尚未翻译**：下面是英文原文。\n\n"
LANG_LINE = 'os.environ.setdefault("LLMCOURSE_NOTEBOOK", '
ZH_SETUP = (
    "# 中文版：有中文数据的课用中文文本，图中的标题、坐标轴和图例是中文\n"
    'os.environ["LLMCOURSE_LANG"] = "zh"\n'
)
COLAB_LINE = "    subprocess.run(pip + [release], check=True)\n"
ZH_COLAB = (
    "    # 图中汉字的字体，和 Debian 的 fortunes-zh（唐诗三百首等，CPU 规模的中文语料）\n"
    '    apt = "apt-get -qq update && apt-get -qq install -y fonts-wqy-microhei fortunes-zh"\n'
    '    subprocess.run(["bash", "-c", apt + " > /dev/null"], check=False)\n'
)


def english_hash(text: str) -> str:
    """The first 12 hex digits of the sha256 of an English cell's text: what a translation records."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _text(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def english_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def read_source(path: Path) -> dict[str, tuple[str, str]]:
    """The translations of one source file: cell id -> (English hash, Chinese text)."""
    text = path.read_text(encoding="utf-8")
    marks = list(MARKER.finditer(text))
    if not marks:
        raise ValueError(
            f"{path}: no `<!-- llmcourse-zh cell=... en=... -->` markers; start with --skeleton"
        )
    out: dict[str, tuple[str, str]] = {}
    for mark, following in zip(marks, marks[1:] + [None]):
        end = following.start() if following else len(text)
        if mark["id"] in out:
            raise ValueError(f"{path}: cell {mark['id']} is translated twice")
        out[mark["id"]] = (mark["hash"], text[mark.end() : end].strip("\n"))
    return out


def _setup_cell(source: str, where: str) -> str:
    if LANG_LINE not in source or COLAB_LINE not in source:
        raise ValueError(
            f"{where}: the setup cell lacks the lines the zh edition adds to (scripts/setup_cells.py)"
        )
    lines = source.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith(LANG_LINE)) + 1
    lines[at:at] = [ZH_SETUP]
    source = "".join(lines)
    return source.replace(COLAB_LINE, COLAB_LINE + ZH_COLAB, 1)


def build(english: Path) -> tuple[dict, list[str]]:
    """The zh notebook made from `english`, and the problems found (missing, stale, unmarked)."""
    nb = json.loads(english.read_text(encoding="utf-8"))
    source = SOURCES / f"{english.stem}.md"
    translations = read_source(source) if source.exists() else {}
    problems = (
        []
        if source.exists()
        else [f"{english.stem}: no translation source {source.relative_to(ROOT)}"]
    )
    zh = copy.deepcopy(nb)
    ids = set()
    setup_done = False
    for index, cell in enumerate(zh["cells"]):
        cell_id = cell.get("id")
        where = f"{english.stem}: cell {index + 1} (id {cell_id})"
        if not cell_id:
            raise ValueError(f"{where}: has no id; open and save the notebook with nbformat >= 4.5")
        ids.add(cell_id)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            if not setup_done:
                cell["source"] = _setup_cell(_text(cell), where)
                setup_done = True
            continue
        if cell["cell_type"] != "markdown":
            continue
        text = _text(cell)
        if cell_id not in translations:
            problems.append(f"{where}: not translated")
            cell["source"] = MISSING + text
            continue
        recorded, chinese = translations[cell_id]
        prose = re.sub(r"`[^`]*`|\]\([^)]*\)|\$[^$]*\$", " ", chinese)  # code, link targets, math
        if not CJK.search(chinese) and len(re.findall(r"[A-Za-z]{3,}", prose)) >= 2:
            problems.append(f"{where}: the translation has no Chinese characters")
        if recorded != english_hash(text):
            problems.append(
                f"{where}: stale: the English changed after it was translated (translated {recorded}, "
                f"English now {english_hash(text)}); update the translation and its en= hash"
            )
            chinese = STALE + chinese
        cell["source"] = chinese
    for unknown in sorted(set(translations) - ids):
        problems.append(
            f"{english.stem}: {source.name} translates cell {unknown}, which the notebook no longer has"
        )
    first = next((c for c in zh["cells"] if c["cell_type"] == "markdown"), None)
    badge = f"{REPO_BLOB}zh/{english.name}"
    if first is not None and translations and badge not in _text(first):
        problems.append(f"{english.stem}: the first cell's Colab badge must open {badge}")
    zh.setdefault("metadata", {})["llmcourse"] = {
        "edition": "zh",
        "english": f"notebooks/{english.name}",
    }
    return zh, problems


def dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def skeleton(stem: str) -> str:
    """A translation source for `stem` with every markdown cell's English text to translate in place."""
    nb = json.loads((NOTEBOOKS / f"{stem}.ipynb").read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            text = _text(cell)
            parts.append(
                f"<!-- llmcourse-zh cell={cell['id']} en={english_hash(text)} -->\n{text}\n"
            )
    return "\n".join(parts)


def check() -> list[str]:
    """Every problem of the zh edition: missing or stale translations, zh notebooks not regenerated."""
    problems = []
    for english in english_notebooks():
        zh, found = build(english)
        problems += found
        target = ZH / english.name
        if not target.exists():
            problems.append(
                f"{english.stem}: {target.relative_to(ROOT)} does not exist; run scripts/make_zh_edition.py"
            )
        elif target.read_text(encoding="utf-8") != dumps(zh):
            problems.append(
                f"{english.stem}: {target.relative_to(ROOT)} is out of date; run scripts/make_zh_edition.py"
            )
    for extra in sorted(
        set(p.name for p in ZH.glob("*.ipynb")) - {p.name for p in english_notebooks()}
    ):
        problems.append(f"notebooks/zh/{extra} has no English notebook; delete it")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only check; exit 1 on any problem")
    parser.add_argument(
        "--skeleton", metavar="STEM", help="print a translation source to start from"
    )
    parser.add_argument("--only", metavar="STEM", help="write only this notebook's zh edition")
    args = parser.parse_args(argv)
    if args.skeleton:
        sys.stdout.write(skeleton(args.skeleton))
        return 0
    if args.check:
        problems = check()
        for p in problems:
            print(p)
        print(f"zh edition: {len(problems)} problem(s)" if problems else "zh edition: in sync")
        return 1 if problems else 0
    ZH.mkdir(exist_ok=True)
    problems = []
    chosen = [p for p in english_notebooks() if args.only in (None, p.stem)]
    if not chosen:
        raise SystemExit(f"--only {args.only}: no notebooks/{args.only}.ipynb")
    for english in chosen:
        zh, found = build(english)
        (ZH / english.name).write_text(dumps(zh), encoding="utf-8")
        problems += found
    for p in problems:
        print(p)
    print(f"wrote {len(chosen)} notebook(s) to {ZH.relative_to(ROOT)}; {len(problems)} problem(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
