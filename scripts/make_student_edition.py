"""Make the student edition of the notebooks: solutions removed, everything else kept.

    python scripts/make_student_edition.py                 # notebooks/*.ipynb -> build/student/
    python scripts/make_student_edition.py --out student   # another output folder
    python scripts/make_student_edition.py --check         # only validate the markers
    python scripts/make_student_edition.py notebooks/zh/*.ipynb --out build/student-zh   # Chinese edition

In code cells the lines from `# BEGIN SOLUTION` to `# END SOLUTION` (markers included) become one
`raise NotImplementedError("Exercise: write your solution here")` at the indentation of the BEGIN
line. In markdown cells the text from `<!-- BEGIN SOLUTION -->` to `<!-- END SOLUTION -->` becomes
"*Your answer here.*" (markers may sit on their own lines or inline). Unbalanced or nested markers
are an error naming the notebook and the cell; so is a code cell that no longer parses afterwards.
Outputs and execution counts are cleared. Uses only the standard library.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB = 'raise NotImplementedError("Exercise: write your solution here")'
ANSWER = "*Your answer here.*"
# the Chinese edition (notebooks/zh/, metadata llmcourse.edition == "zh") gets its placeholders in Chinese
STUB_ZH = 'raise NotImplementedError("练习：在这里写下你的解答")'
ANSWER_ZH = "*在这里写下你的答案。*"
CODE_MARKER = re.compile(r"^(?P<indent>[ \t]*)#\s*(?P<kind>BEGIN|END) SOLUTION\b.*$")
MD_MARKER = re.compile(r"<!--\s*(BEGIN|END) SOLUTION\s*-->")


class MarkerError(ValueError):
    """Solution markers are unbalanced or nested, or removing them broke the code."""


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _where(notebook: str, index: int, cell: dict) -> str:
    first = _source(cell).strip().splitlines()[:1]
    preview = f' starting "{first[0][:50]}"' if first else ""
    return f"{notebook}: cell {index + 1} ({cell.get('cell_type')}{preview})"


def strip_code(source: str, where: str = "code", *, stub: str = STUB) -> str:
    """Replace each BEGIN/END SOLUTION block of a code cell by a NotImplementedError stub."""
    out: list[str] = []
    opened: int | None = None  # line number of the open BEGIN marker
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        m = CODE_MARKER.match(line.rstrip("\r\n"))
        if m is None:
            if opened is None:
                out.append(line)
            continue
        if m["kind"] == "BEGIN":
            if opened is not None:
                raise MarkerError(
                    f"{where}, line {number}: BEGIN SOLUTION inside the block opened on line {opened}"
                )
            opened = number
            out.append(f"{m['indent']}{stub}\n")
        else:
            if opened is None:
                raise MarkerError(
                    f"{where}, line {number}: END SOLUTION without a BEGIN SOLUTION before it"
                )
            opened = None
    if opened is not None:
        raise MarkerError(f"{where}, line {opened}: BEGIN SOLUTION is never closed by END SOLUTION")
    result = "".join(out)
    if not source.endswith("\n") and result.endswith("\n"):
        result = result[
            :-1
        ]  # keep the cell's own convention (notebook cells have no final newline)
    return result


def strip_markdown(source: str, where: str = "markdown", *, answer: str = ANSWER) -> str:
    """Replace each <!-- BEGIN/END SOLUTION --> span of a markdown cell by the answer placeholder."""
    pieces: list[str] = []
    pos, opened_at = 0, None
    for m in MD_MARKER.finditer(source):
        line = source.count("\n", 0, m.start()) + 1
        if m[1] == "BEGIN":
            if opened_at is not None:
                raise MarkerError(
                    f"{where}, line {line}: BEGIN SOLUTION inside the block opened on line {opened_at}"
                )
            pieces.append(source[pos : m.start()] + answer)
            opened_at = line
        else:
            if opened_at is None:
                raise MarkerError(
                    f"{where}, line {line}: END SOLUTION without a BEGIN SOLUTION before it"
                )
            opened_at = None
        pos = m.end()
    if opened_at is not None:
        raise MarkerError(
            f"{where}, line {opened_at}: BEGIN SOLUTION is never closed by END SOLUTION"
        )
    return "".join(pieces) + source[pos:]


def _parses(code: str) -> str | None:
    """None if the cell is valid Python (IPython magics and shell lines are skipped), else the error."""
    if any(line.lstrip().startswith(("%", "!")) for line in code.splitlines()):
        return None
    try:
        ast.parse(code)
    except SyntaxError as e:
        return f"line {e.lineno}: {e.msg}"
    return None


def student_notebook(nb: dict, name: str = "notebook") -> dict:
    """A copy of the notebook dict with solutions removed and outputs cleared."""
    nb = copy.deepcopy(nb)
    zh = nb.get("metadata", {}).get("llmcourse", {}).get("edition") == "zh"
    stub, answer = (STUB_ZH, ANSWER_ZH) if zh else (STUB, ANSWER)
    for i, cell in enumerate(nb.get("cells", [])):
        where = _where(name, i, cell)
        source = _source(cell)
        if cell.get("cell_type") == "code":
            new = strip_code(source, where, stub=stub)
            if new != source:
                error = _parses(new)
                if error:
                    raise MarkerError(
                        f"{where}: the stubbed cell is not valid Python ({error}); "
                        "put the markers at the indentation of the code they replace"
                    )
            cell["outputs"], cell["execution_count"] = [], None
        elif cell.get("cell_type") == "markdown":
            new = strip_markdown(source, where, answer=answer)
        else:
            continue
        if new != source:
            cell["source"] = new.splitlines(keepends=True)
    return nb


def write_notebook(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: notebooks/*.ipynb")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "student", help="output folder")
    ap.add_argument("--check", action="store_true", help="validate markers only, write nothing")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not paths:
        print("no notebooks found", file=sys.stderr)
        return 1
    errors = 0
    for path in paths:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
            student = student_notebook(nb, path.name)
        except (MarkerError, json.JSONDecodeError) as e:
            print(
                f"error: {e}"
                if isinstance(e, MarkerError)
                else f"error: {path.name}: not JSON: {e}",
                file=sys.stderr,
            )
            errors += 1
            continue
        if args.check:
            print(f"ok: {path.name}")
        else:
            write_notebook(student, args.out / path.name)
            print(f"wrote {args.out / path.name}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
