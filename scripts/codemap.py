"""Generate the notebook → module map: docs/CODEMAP.md and each notebook's "**Modules taught:**" line.

    python scripts/codemap.py          # rewrite docs/CODEMAP.md and the notebooks' "Modules taught" lines
    python scripts/codemap.py --check  # exit 1 if either is out of date

The map is read from the code, never written by hand: every code cell of notebooks/NN_*.ipynb is
parsed (cells that are not plain Python, e.g. IPython magics, are skipped) and its `llmcourse`
imports are resolved against the file tree under llmcourse/ (`from llmcourse.x import y` names the
module `llmcourse.x.y` when that file exists, else `llmcourse.x`).

The package has two tiers (STYLE.md rule 1), and the map follows them:
- a **taught** module is a concept module at the top, `llmcourse/<name>.py`;
- a **helper** is anything in a role subpackage (`data/`, `tasks/`, `cost/`, `serve/`, `recipes/`,
  `course/`, `cli/`), plus the two foundations every notebook leans on for its sizes and its device
  (FOUNDATIONS below), which sit at the top but teach nothing themselves.
tests/test_codemap.py fails when the committed files and a fresh render disagree.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from llmcourse import REPO_URL  # noqa: E402  (the one place that names the repository)

PKG = ROOT / "llmcourse"
NOTEBOOKS = ROOT / "notebooks"
CODEMAP = ROOT / "docs" / "CODEMAP.md"
COMMAND = "python scripts/codemap.py"
# Notebooks open in Colab, where relative links break: their "Modules taught" lines link GitHub.
BLOB = f"{REPO_URL}/blob/main/"
# Top-level modules that are plumbing, not a lesson: sizes (smoke/full) and device/precision/seeds.
FOUNDATIONS = ("config", "runtime")
TAUGHT_PREFIX = "**Modules taught:**"
PREREQUISITES = "**Prerequisites:**"


# ---------------------------------------------------------------------------- the package


def module_file(name: str) -> Path | None:
    """The file of dotted module `name` (`llmcourse.cost.memory` -> llmcourse/cost/memory.py), if any."""
    parts = name.split(".")
    if parts[0] != "llmcourse":
        return None
    base = ROOT.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def is_taught(name: str) -> bool:
    """Top-level concept module (`llmcourse.gpt`), not a foundation, not in a subpackage."""
    parts = name.split(".")
    return (
        len(parts) == 2
        and parts[1] not in FOUNDATIONS
        and module_file(name) == PKG / f"{parts[1]}.py"
    )


def all_modules() -> list[str]:
    """Every module of the package except the root: top-level files, then each subpackage's."""
    names = [f"llmcourse.{p.stem}" for p in sorted(PKG.glob("*.py")) if p.stem != "__init__"]
    for init in sorted(PKG.glob("*/__init__.py")):
        pkg = f"llmcourse.{init.parent.name}"
        names.append(pkg)
        names += [
            f"{pkg}.{p.stem}"
            for p in sorted(init.parent.glob("*.py"))
            if not p.stem.startswith("__")
        ]
    return names


def subpackages() -> list[str]:
    return [f"llmcourse.{p.parent.name}" for p in sorted(PKG.glob("*/__init__.py"))]


def summary(path: Path) -> str:
    """The first paragraph of a file's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split()) or "(no docstring)"


def _has_code(path: Path) -> bool:
    """Does a file hold more than a docstring and `from __future__` imports?"""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(
        not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
        and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")
        for n in body
    )


def rel(name: str) -> str:
    """Path of a module's file relative to the repository root (llmcourse/cost/memory.py)."""
    return module_file(name).relative_to(ROOT).as_posix()


# ---------------------------------------------------------------------------- the notebooks


def notebook_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _resolve(module: str, name: str | None) -> str | None:
    """The llmcourse module an import names, or None (the bare package root)."""
    if name is not None and module_file(f"{module}.{name}"):
        return f"{module}.{name}"
    return module if module != "llmcourse" and module_file(module) else None


def imports(nb: dict) -> set[str]:
    """The llmcourse modules a notebook's code cells import."""
    found: set[str] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse(_src(cell))
        except SyntaxError:  # IPython magics, shell escapes: not Python
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                hits = [
                    _resolve(a.name, None) for a in node.names if a.name.startswith("llmcourse.")
                ]
            elif (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and node.module
                and (node.module == "llmcourse" or node.module.startswith("llmcourse."))
            ):
                hits = [_resolve(node.module, a.name) for a in node.names]
            else:
                continue
            found.update(h for h in hits if h)
    return found


def usage() -> dict[str, set[str]]:
    """notebook stem -> the llmcourse modules it imports."""
    return {p.stem: imports(_load(p)) for p in notebook_paths()}


def split(mods: set[str]) -> tuple[list[str], list[str]]:
    """(taught, helpers), each sorted."""
    return sorted(m for m in mods if is_taught(m)), sorted(m for m in mods if not is_taught(m))


# ---------------------------------------------------------------------------- docs/CODEMAP.md


def _short(name: str) -> str:
    return name.removeprefix("llmcourse.")


def _mod_link(name: str) -> str:
    return f"[`{_short(name)}`](../{rel(name)})"


def _nb_link(stem: str, text: str | None = None) -> str:
    return f"[{text or stem}](../notebooks/{stem}.ipynb)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render(used: dict[str, set[str]]) -> str:
    by_module: dict[str, list[str]] = {}
    for stem, mods in used.items():
        for m in mods:
            by_module.setdefault(m, []).append(stem)
    everywhere = set.intersection(*(set(split(m)[1]) for m in used.values())) if used else set()
    out = [
        "# Code map: which notebook teaches which module",
        "",
        f"Generated by `{COMMAND}` from the notebooks' imports: do not edit it by hand.",
        f"`{COMMAND} --check` (run by `tests/test_codemap.py`) fails when it is stale; the same",
        f'command writes the "{TAUGHT_PREFIX}" line in each notebook\'s first cell.',
        "",
        "The package has two tiers. **Concept modules** sit flat in `llmcourse/*.py`: they are what",
        "the notebooks teach. **Helpers** are the machinery in role subpackages (`data/`, `tasks/`,",
        "`cost/`, `serve/`, `recipes/`, `course/`, `cli/`), plus the foundations "
        + " and ".join(f"`{f}`" for f in FOUNDATIONS)
        + ",",
        "which many notebooks use for sizes, device and precision but none is about.",
        "Module names below omit the `llmcourse.` prefix.",
        "",
        "## Notebooks",
        "",
    ]
    if everywhere:
        out += [
            "Every notebook also uses " + " and ".join(map(_mod_link, sorted(everywhere))) + ".",
            "",
        ]
    out += ["| notebook | modules it teaches | helpers it uses |", "|---|---|---|"]
    for stem, mods in used.items():
        taught, helpers = split(mods)
        helpers = [h for h in helpers if h not in everywhere]
        out.append(
            f"| {_nb_link(stem)} | {', '.join(map(_mod_link, taught)) or '–'} "
            f"| {', '.join(map(_mod_link, helpers)) or '–'} |"
        )
    out += ["", "## Modules", ""]

    def table(names: list[str]) -> list[str]:
        rows = ["| module | what it is | used by notebooks |", "|---|---|---|"]
        for m in names:
            users = ", ".join(_nb_link(s, s[:2]) for s in sorted(by_module.get(m, [])))
            note = " *(foundation: counted as a helper)*" if _short(m) in FOUNDATIONS else ""
            rows.append(
                f"| {_mod_link(m)} | {_cell(summary(module_file(m)))}{note} "
                f"| {users or 'used by the package/tests only'} |"
            )
        return rows

    modules = all_modules()
    out += ["### Concepts (`llmcourse/*.py`)", ""]
    out += table([m for m in modules if m.count(".") == 1 and module_file(m).name != "__init__.py"])
    for pkg in subpackages():
        out += ["", f"### `{_short(pkg)}/`: {_cell(summary(module_file(pkg)))}", ""]
        # The package itself gets a row when a notebook imports from it or it holds code.
        rows = [m for m in modules if m.startswith(pkg + ".")]
        if pkg in by_module or _has_code(module_file(pkg)):
            rows.insert(0, pkg)
        out += table(rows)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- the notebooks' line


def taught_line(mods: set[str]) -> str:
    """The "Modules taught" paragraph, one link per source line (markdown joins them with spaces)."""
    taught, _ = split(mods)
    if not taught:
        return (
            f"{TAUGHT_PREFIX} none (this notebook uses only helpers; see the\n"
            f"[code map]({BLOB}docs/CODEMAP.md))"
        )
    return f"{TAUGHT_PREFIX}\n" + ",\n".join(f"[`{m}`]({BLOB}{rel(m)})" for m in taught)


def with_taught_line(text: str, line: str) -> str:
    """The first cell's text with its "Modules taught" paragraph replaced or put after the Prerequisites."""
    body = text.rstrip("\n")
    paras = [p for p in body.split("\n\n") if not p.startswith(TAUGHT_PREFIX)]
    at = next((i + 1 for i, p in enumerate(paras) if p.startswith(PREREQUISITES)), len(paras))
    paras.insert(at, line)
    return "\n\n".join(paras) + text[len(body) :]


def updated_notebook(nb: dict, mods: set[str]) -> dict | None:
    """A copy of nb with the line in its first markdown cell; None when that is already so."""
    i = next(k for k, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown")
    old = _src(nb["cells"][i])
    new = with_taught_line(old, taught_line(mods))
    if new == old:
        return None
    nb = json.loads(json.dumps(nb))
    nb["cells"][i]["source"] = new.splitlines(keepends=True)
    return nb


def dump(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------- main


def stale() -> list[str]:
    """What a run would rewrite (paths relative to the repository), empty when all is current."""
    used = usage()
    out = []
    if not CODEMAP.exists() or CODEMAP.read_text(encoding="utf-8") != render(used):
        out.append("docs/CODEMAP.md")
    out += [
        f"notebooks/{p.name}" for p in notebook_paths() if updated_notebook(_load(p), used[p.stem])
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--check", action="store_true", help="exit 1 if anything is out of date")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        if bad:
            print(f"out of date: {', '.join(bad)}; run {COMMAND}")
            return 1
        return 0
    used = usage()
    CODEMAP.write_text(render(used), encoding="utf-8")
    print(f"wrote {CODEMAP.relative_to(ROOT)}")
    for p in notebook_paths():
        nb = updated_notebook(_load(p), used[p.stem])
        if nb is not None:
            p.write_text(dump(nb), encoding="utf-8")
            print(f"updated the {TAUGHT_PREFIX} line of {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
