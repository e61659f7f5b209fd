"""The code map (docs/CODEMAP.md and the notebooks' "Modules taught" lines) is generated and current."""

import json
from pathlib import Path

from _scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
codemap = load_script("codemap")


def test_codemap_and_modules_taught_lines_are_current():
    """Edit the notebooks or the package, then re-render: never edit docs/CODEMAP.md by hand."""
    stale = codemap.stale()
    assert not stale, f"out of date: {', '.join(stale)}; run: python scripts/codemap.py"
    assert codemap.main(["--check"]) == 0


def test_every_notebook_and_every_top_level_module_appears():
    text = (ROOT / "docs" / "CODEMAP.md").read_text(encoding="utf-8")
    for path in codemap.notebook_paths():
        assert f"](../notebooks/{path.name})" in text, path.name
    for path in sorted((ROOT / "llmcourse").glob("*.py")):
        if path.stem != "__init__":
            assert f"](../llmcourse/{path.name})" in text, path.name


def test_imports_are_resolved_to_modules_and_magics_are_skipped():
    cells = [
        "%pip install x\nfrom llmcourse import gpt",
        "import torch\nfrom llmcourse import gpt, data",
        "from llmcourse.cost.memory import GB\nfrom llmcourse.course import notebook, plots",
        "from llmcourse.serve import BackgroundServer\nimport llmcourse.lora as L\nimport llmcourse",
    ]
    nb = {
        "cells": [{"cell_type": "code", "source": c} for c in cells]
        + [{"cell_type": "markdown", "source": "from llmcourse import rnn"}]
    }
    found = codemap.imports(nb)
    assert found == {
        "llmcourse.gpt",
        "llmcourse.data",
        "llmcourse.cost.memory",
        "llmcourse.course.notebook",
        "llmcourse.course.plots",
        "llmcourse.serve",
        "llmcourse.lora",
    }
    taught, helpers = codemap.split(found)
    assert taught == ["llmcourse.gpt", "llmcourse.lora"]
    assert (
        "llmcourse.config" not in codemap.split({"llmcourse.config"})[0]
    )  # a foundation, not a lesson


def test_modules_taught_line_goes_after_the_prerequisites_and_is_replaced_not_repeated():
    intro = "# 99 · Demo\n\n**Learning goals**\n\n- one\n\n**Prerequisites:** notebook 08\nand 09.\n\nMore.\n"
    once = codemap.with_taught_line(intro, "**Modules taught:** A")
    assert once == intro.replace("and 09.\n\n", "and 09.\n\n**Modules taught:** A\n\n")
    assert codemap.with_taught_line(once, "**Modules taught:** B").count("**Modules taught:**") == 1
    assert (
        codemap.with_taught_line("# T\n\ntext", "**Modules taught:** A")
        == "# T\n\ntext\n\n**Modules taught:** A"
    )


def test_first_cells_link_taught_modules_absolutely():
    for path in codemap.notebook_paths():
        first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
        assert "**Modules taught:**" in first, path.name
        assert "](../llmcourse/" not in first, f"{path.name}: relative links break in Colab"


def test_check_fails_with_the_command_when_the_map_is_stale(tmp_path, monkeypatch, capsys):
    stale_map = tmp_path / "CODEMAP.md"
    stale_map.write_text("edited by hand\n", encoding="utf-8")
    monkeypatch.setattr(codemap, "CODEMAP", stale_map)
    assert codemap.main(["--check"]) == 1
    assert "run python scripts/codemap.py" in capsys.readouterr().out
