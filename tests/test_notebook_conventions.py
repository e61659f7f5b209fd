"""The notebook conventions CI enforces (docs/CONVENTIONS.md), checked on every notebooks/*.ipynb.

Each check is a function `(path, nb) -> list of problems`; every notebook gets one test per check,
so a failure names both. The checks themselves are tested at the bottom on a scaffold notebook
(scripts/new_notebook.py), which must pass them all, and on broken copies of it, which must not.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MAX_CODE_LINES = 50


student = load_script("make_student_edition")
scaffold = load_script("new_notebook")
setup_cells = load_script(
    "setup_cells"
)  # the setup cell's one template (tests/test_setup_cells.py)


def _src(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _code(nb: dict) -> list[str]:
    return [_src(c) for c in nb["cells"] if c["cell_type"] == "code"]


def _markdown(nb: dict) -> list[str]:
    return [_src(c) for c in nb["cells"] if c["cell_type"] == "markdown"]


# ---------------------------------------------------------------------------- the checks


def check_name(path: Path, nb: dict) -> list[str]:
    ok = re.fullmatch(r"\d{2}_[a-z0-9]+(_[a-z0-9]+)*\.ipynb", path.name)
    return (
        [] if ok else [f"{path.name}: name it NN_topic.ipynb (two digits, lower_snake_case topic)"]
    )


def check_intro_cell(path: Path, nb: dict) -> list[str]:
    cells = nb["cells"]
    if not cells or cells[0]["cell_type"] != "markdown":
        return ["the first cell must be markdown: title, Colab badge, Learning goals"]
    text, problems = _src(cells[0]), []
    if not re.search(r"^# \S", text, re.M):
        problems.append("the first cell has no '# Title' line")
    badge = scaffold.BADGE.format(file=path.name)
    if badge not in text:
        problems.append(f"the first cell lacks the Colab badge for this file:\n{badge}")
    if "Learning goals" not in text:
        problems.append("the first cell has no 'Learning goals'")
    return problems


GLOSSARY_LINK = re.compile(r"\[[^\]]+\]\(\s*<?([^)\s>]*docs/GLOSSARY\.md)(#[^)\s>]*)?>?\s*\)")


def check_glossary_link(path: Path, nb: dict) -> list[str]:
    first = next((_src(c) for c in nb["cells"] if c["cell_type"] == "markdown"), "")
    if GLOSSARY_LINK.search(first):
        return []
    return [
        f"the first markdown cell must link the glossary, e.g. the line\n{scaffold.GLOSSARY_LINK}"
    ]


def check_setup_cell(path: Path, nb: dict) -> list[str]:
    code = _code(nb)
    if code and code[0].rstrip() == setup_cells.render(path.stem):
        return []
    return [
        "the first code cell must be exactly the setup cell that scripts/setup_cells.py writes "
        "(run `python scripts/setup_cells.py`)"
    ]


def check_start(path: Path, nb: dict) -> list[str]:
    code = _code(nb)
    cell = code[1] if len(code) > 1 else ""
    if (
        re.search(r"^\s*(from llmcourse\b|import llmcourse\b)", cell, re.M)
        and "notebook.start(" in cell
    ):
        return []
    return ["the code cell after the setup cell must import llmcourse and call notebook.start("]


def check_sections(path: Path, nb: dict) -> list[str]:
    headings = [
        line.strip()
        for text in _markdown(nb)
        for line in text.splitlines()
        if line.startswith("## ")
    ]
    problems = []
    if not any(re.match(r"## 1\. \S", h) for h in headings):
        problems.append("no numbered section '## 1. ...'")
    positions = []
    for name in ("Summary", "Questions", "Exercises"):
        found = [i for i, h in enumerate(headings) if re.match(rf"## {name}\b", h)]
        if not found:
            problems.append(f"no '## {name}' heading")
        positions.append(found[0] if found else None)
    if None not in positions and positions != sorted(positions):
        problems.append("end sections must come in the order Summary, Questions, Exercises")
    return problems


def check_no_outputs(path: Path, nb: dict) -> list[str]:
    bad = [
        i + 1
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]
    return (
        [f"cells {bad} store outputs or execution counts; clear them before committing"]
        if bad
        else []
    )


def check_solution_markers(path: Path, nb: dict) -> list[str]:
    try:
        student.student_notebook(nb, path.name)
    except student.MarkerError as e:
        return [str(e)]
    return []


ABSOLUTE_PATH = re.compile(
    r"(?<![\w.:/])(/(home|Users|work|tmp|root|mnt|private|var/folders)/"
    r"|[A-Za-z]:\\{1,2}(Users|Documents and Settings|Windows|Program Files)\b)"
)


def check_no_machine_paths(path: Path, nb: dict) -> list[str]:
    problems = []
    for i, cell in enumerate(nb["cells"]):
        m = ABSOLUTE_PATH.search(_src(cell))
        if m:
            problems.append(
                f"cell {i + 1}: machine-specific path near {_src(cell)[m.start() : m.start() + 40]!r}"
            )
    m = ABSOLUTE_PATH.search(json.dumps(nb.get("metadata", {})))
    if m:
        problems.append("notebook metadata contains a machine-specific path")
    return problems


def check_cell_length(path: Path, nb: dict) -> list[str]:
    return [
        f"cell {i + 1} has {n} lines (max {MAX_CODE_LINES}): split it"
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (n := len(_src(c).splitlines())) > MAX_CODE_LINES
    ]


CHECKS = [
    check_name,
    check_intro_cell,
    check_glossary_link,
    check_setup_cell,
    check_start,
    check_sections,
    check_no_outputs,
    check_solution_markers,
    check_no_machine_paths,
    check_cell_length,
]


def all_problems(path: Path, nb: dict) -> list[str]:
    return [p for check in CHECKS for p in check(path, nb)]


# ---------------------------------------------------------------------------- the notebooks


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 1, "notebooks/*.ipynb found nothing"


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_convention(path: Path, check):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = check(path, nb)
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


# ---------------------------------------------------------------------------- the checks themselves


@pytest.fixture
def good(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "07_demo_topic.ipynb"
    assert scaffold.main([str(path), "Demo topic"]) == 0
    return path, json.loads(path.read_text())


def test_the_doc_shows_the_rendered_setup_cell():
    """docs/CONVENTIONS.md shows one notebook's setup cell as scripts/setup_cells.py renders it."""
    text = (ROOT / "docs" / "CONVENTIONS.md").read_text(encoding="utf-8")
    m = re.search(r"^## The setup cell.*?^```python\n(.*?)^```", text, re.S | re.M)
    assert m, "docs/CONVENTIONS.md: no ```python block under '## The setup cell'"
    assert m.group(1).rstrip("\n") == setup_cells.render(setup_cells.DOC_EXAMPLE), (
        "docs/CONVENTIONS.md's setup cell is stale: run `python scripts/setup_cells.py`"
    )


def test_scaffold_passes_every_check(good):
    assert all_problems(*good) == []


def _broken(nb: dict, cell: int, source: str) -> dict:
    nb = copy.deepcopy(nb)
    nb["cells"][cell]["source"] = source
    return nb


def test_checks_catch_violations(good):
    path, nb = good
    assert check_name(path.with_name("7_Demo.ipynb"), nb)
    assert check_intro_cell(path.with_name("08_other.ipynb"), nb)  # badge points at another file
    intro = _src(nb["cells"][0])
    assert scaffold.GLOSSARY_LINK in intro
    assert check_glossary_link(path, _broken(nb, 0, intro.replace(scaffold.GLOSSARY_LINK, "")))
    assert check_glossary_link(
        path, _broken(nb, 0, intro.replace("GLOSSARY.md)", "CONVENTIONS.md)"))
    )
    assert check_glossary_link(
        path, _broken(nb, 0, intro.replace(f"({scaffold.GLOSSARY_URL})", ""))
    )  # no link
    assert not check_glossary_link(
        path, _broken(nb, 0, intro.replace(scaffold.GLOSSARY_URL, "../docs/GLOSSARY.md#evaluation"))
    )  # a relative link with an anchor is fine too
    setup = setup_cells.render(path.stem)
    assert check_setup_cell(path, _broken(nb, 1, setup.replace("-q", "")))
    assert check_setup_cell(path.with_name("08_other.ipynb"), nb)  # another notebook's cell
    assert check_start(path, _broken(nb, 2, "import torch"))
    assert check_sections(path, _broken(nb, 5, "## Recap"))
    executed = copy.deepcopy(nb)
    executed["cells"][2]["execution_count"] = 1
    assert check_no_outputs(path, executed)
    assert check_solution_markers(path, _broken(nb, 8, "# BEGIN SOLUTION\nx = 1\n"))
    assert check_no_machine_paths(path, _broken(nb, 4, "data = open('/home/ann/data.txt')"))
    assert check_no_machine_paths(path, _broken(nb, 4, r"p = 'C:\Users\ann\data.txt'"))
    assert not check_no_machine_paths(
        path, _broken(nb, 4, "# see https://example.org/home/x and /content/drive")
    )
    assert not check_no_machine_paths(path, _broken(nb, 4, 'print(f"a:\\t{x}")'))
    assert check_cell_length(path, _broken(nb, 4, "x = 1\n" * (MAX_CODE_LINES + 1)))
