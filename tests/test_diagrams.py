"""The conceptual diagrams (issue 17, point 3): each one draws, carries alt text and a caption, is
shown where its structure is taught, and every image a notebook references exists and has alt text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmcourse.course import diagrams
from llmcourse.course.diagrams import draw
from llmcourse.course.diagrams.catalog import DIAGRAMS, register

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# the structures issue 17 names, each of which must have a diagram
REQUIRED = {
    "llm_life_cycle",
    "rnn_unrolled",
    "attention_heads",
    "transformer_encoder_decoder",
    "bert_inputs",
    "gpt_block",
    "kv_cache",
    "chat_template_loss_mask",
    "lora",
    "rlhf_vs_dpo",
    "zero_stages",
    "paged_kv_batching",
    "rag_pipeline",
}
SHOW = re.compile(r"""diagrams\.show\(\s*["']([a-z0-9_]+)["']""")
MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)")
HTML_IMAGE = re.compile(r"<img\b[^>]*>", re.IGNORECASE)


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_every_structure_the_issue_names_has_a_diagram():
    assert REQUIRED <= set(DIAGRAMS), f"missing: {sorted(REQUIRED - set(DIAGRAMS))}"


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_diagram_draws_on_a_white_card_with_alt_text(name):
    entry = diagrams.get(name)
    assert len(entry.alt) >= 40 and entry.title
    text = diagrams.svg(name)
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    # the alt text travels inside the SVG (its <title>), and the card is opaque white
    assert "<title>" in text
    page = diagrams.html_figure(name)
    assert 'alt="' in page and "<figcaption" in page
    head = diagrams.png(name, dpi=40)[:24]
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    # readable at Colab's width: neither a sliver nor a poster (pixels at 100 dpi = 2.5 x these)
    assert 150 <= width <= 520 and 80 <= height <= 440, (width, height)


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_diagram_is_shown_in_the_notebook_that_teaches_it(name):
    notebook = next(p for p in NOTEBOOKS if p.name.startswith(DIAGRAMS[name].notebook + "_"))
    shown = {
        m for c in _cells(notebook) if c["cell_type"] == "code" for m in SHOW.findall(_source(c))
    }
    assert name in shown, f"{notebook.name} does not call diagrams.show({name!r})"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_referenced_image_exists_and_has_alt_text(path):
    for cell in _cells(path):
        source = _source(cell)
        if cell["cell_type"] == "code":
            for name in SHOW.findall(source):
                assert name in DIAGRAMS, f"{path.name}: diagrams.show({name!r}) names no diagram"
            continue
        for alt, target in MD_IMAGE.findall(source):
            if "colab-badge" in target or target.startswith("https://colab"):
                continue
            assert alt.strip(), f"{path.name}: image {target} has no alt text"
            if not re.match(r"https?://", target):
                assert (path.parent / target).resolve().exists(), f"{path.name}: {target} missing"
        for tag in HTML_IMAGE.findall(source):
            assert re.search(r'alt="[^"]+"', tag), f"{path.name}: <img> without alt text: {tag}"


def test_unknown_names_and_roles_fail_clearly():
    with pytest.raises(KeyError, match="no diagram named"):
        diagrams.get("no_such_diagram")
    import matplotlib.pyplot as plt

    fig, ax = draw.canvas(4, 2)
    with pytest.raises(ValueError, match="unknown role"):
        draw.box(ax, (0, 0), (1, 1), role="purple")
    plt.close(fig)  # canvas hands the figure to its caller, who closes it
    with pytest.raises(ValueError, match="alt text"):
        register("x_short", title="t", alt="too short", notebook="00")(lambda: None)


def test_show_outside_a_notebook_prints_caption_and_alt(capsys):
    name = sorted(DIAGRAMS)[0]
    diagrams.show(name)
    out = capsys.readouterr().out
    assert DIAGRAMS[name].title in out and DIAGRAMS[name].alt in out


def test_write_all_writes_one_svg_per_diagram(tmp_path):
    paths = diagrams.write_all(tmp_path)
    assert sorted(p.stem for p in paths) == sorted(DIAGRAMS)
    assert all(p.read_text().count("<svg") == 1 for p in paths)


def test_command_line_writes_the_svg_files(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "llmcourse.course.diagrams", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.stem for p in tmp_path.glob("*.svg")) == sorted(DIAGRAMS)
