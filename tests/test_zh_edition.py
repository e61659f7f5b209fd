"""The Chinese edition: in sync with the English notebooks, generated as documented, figures in Chinese.

scripts/make_zh_edition.py makes notebooks/zh/*.ipynb from the English notebooks and the translation
sources (notebooks/zh/source/*.md); llmcourse/course/figure_text.py translates figure text.
"""

from __future__ import annotations

import importlib.util
import json
import re
import warnings
from pathlib import Path

import matplotlib
import pytest

from llmcourse import config
from llmcourse.course import figure_text

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location(
    "make_zh_edition", ROOT / "scripts" / "make_zh_edition.py"
)
mz = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mz)


def test_the_zh_edition_is_complete_and_in_sync_with_the_english():
    problems = mz.check()
    assert not problems, "run `python scripts/make_zh_edition.py --check`:\n  " + "\n  ".join(
        problems
    )


def test_zh_notebooks_run_the_english_code_with_the_language_set_in_the_setup_cell():
    for english in mz.english_notebooks():
        zh = json.loads((mz.ZH / english.name).read_text(encoding="utf-8"))
        en = json.loads(english.read_text(encoding="utf-8"))
        zh_code = [mz._text(c) for c in zh["cells"] if c["cell_type"] == "code"]
        en_code = [mz._text(c) for c in en["cells"] if c["cell_type"] == "code"]
        assert zh_code[1:] == en_code[1:], f"{english.stem}: code cells differ from the English"
        assert 'os.environ["LLMCOURSE_LANG"] = "zh"' in zh_code[0], english.stem
        assert all(not c.get("outputs") for c in zh["cells"] if c["cell_type"] == "code")


def test_relative_links_of_the_translations_resolve_from_notebooks_zh():
    link = re.compile(r"\]\((?!https?:|#|mailto:)([^)\s#]+)")
    broken = []
    for source in sorted(mz.SOURCES.glob("*.md")):
        for target in link.findall(source.read_text(encoding="utf-8")):
            if not (mz.ZH / target).resolve().exists():
                broken.append(f"{source.name}: {target}")
    assert not broken, "relative links that do not resolve from notebooks/zh/: " + ", ".join(broken)


@pytest.fixture
def tiny_course(tmp_path, monkeypatch):
    """A course of one English notebook (the real setup cell, one markdown cell) in a temporary folder."""
    real = json.loads((mz.NOTEBOOKS / "04_attention.ipynb").read_text(encoding="utf-8"))
    setup = next(c for c in real["cells"] if c["cell_type"] == "code")
    badge = f"[![Open In Colab](x)]({mz.REPO_BLOB}zh/99_tiny.ipynb)"
    nb = {
        "cells": [
            {
                "cell_type": "markdown",
                "id": "intro",
                "metadata": {},
                "source": "# 99 · Tiny\n\nHello.",
            },
            dict(setup, outputs=[], execution_count=None),
            {"cell_type": "markdown", "id": "end", "metadata": {}, "source": "The end."},
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (tmp_path / "zh" / "source").mkdir(parents=True)
    (tmp_path / "99_tiny.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    monkeypatch.setattr(mz, "NOTEBOOKS", tmp_path)
    monkeypatch.setattr(mz, "ZH", tmp_path / "zh")
    monkeypatch.setattr(mz, "SOURCES", tmp_path / "zh" / "source")
    monkeypatch.setattr(mz, "ROOT", tmp_path)

    def translate(intro="# 99 · 小例子\n\n" + badge + "\n\n你好。", end="完。"):
        text = mz.skeleton("99_tiny")
        text = text.replace("# 99 · Tiny\n\nHello.", intro).replace("The end.", end)
        (tmp_path / "zh" / "source" / "99_tiny.md").write_text(text, encoding="utf-8")

    return tmp_path, nb, translate


def test_a_full_translation_generates_and_checks_clean(tiny_course):
    folder, _, translate = tiny_course
    translate()
    assert mz.main([]) == 0
    assert mz.check() == []
    zh = json.loads((folder / "zh" / "99_tiny.ipynb").read_text(encoding="utf-8"))
    assert zh["cells"][2]["source"] == "完。"
    assert zh["metadata"]["llmcourse"]["edition"] == "zh"


def test_a_changed_english_cell_makes_its_translation_stale_and_visible(tiny_course):
    folder, nb, translate = tiny_course
    translate()
    mz.main([])
    nb["cells"][2]["source"] = "The end, revised."
    (folder / "99_tiny.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    problems = mz.check()
    assert any("cell 3 (id end): stale" in p for p in problems), problems
    assert any("out of date" in p for p in problems), problems  # the committed zh notebook, too
    zh, _ = mz.build(folder / "99_tiny.ipynb")
    assert zh["cells"][2]["source"].startswith(mz.STALE) and zh["cells"][2]["source"].endswith(
        "完。"
    )


def test_missing_untranslated_and_badge_problems_are_named(tiny_course):
    folder, _, translate = tiny_course
    assert "no translation source" in mz.build(folder / "99_tiny.ipynb")[1][0]
    translate(end="The end.")  # left in English
    problems = mz.build(folder / "99_tiny.ipynb")[1]
    assert any("has no Chinese characters" in p for p in problems), problems
    translate(intro="# 99 · 小例子\n\n你好。")  # no zh badge
    assert any("Colab badge" in p for p in mz.build(folder / "99_tiny.ipynb")[1])
    source = folder / "zh" / "source" / "99_tiny.md"
    source.write_text(source.read_text(encoding="utf-8").split("<!-- llmcourse-zh cell=end")[0])
    zh, problems = mz.build(folder / "99_tiny.ipynb")
    assert any("(id end): not translated" in p for p in problems)
    assert zh["cells"][2]["source"] == mz.MISSING + "The end."


def test_figure_text_catalog_exact_patterns_numbered_and_nested():
    assert figure_text.translate("loss", language="zh") == "损失"
    assert figure_text.translate("train (EMA 0.9)", language="zh") == "训练（指数滑动平均 0.9）"
    assert figure_text.translate("PCA of 40 vectors", language="zh") == "40 个向量的 PCA"
    assert (
        figure_text.translate("loss (nats)", language="zh") == "损失（nats）"
    )  # nested, names kept
    assert figure_text.translate("step\nloss", language="zh") == "步数\n损失"  # line by line
    assert figure_text.translate("loss", language="en") == "loss"
    assert figure_text.looks_english("the loss") and not figure_text.looks_english("GPT-2 (nats)")
    assert not figure_text.looks_english("$\\alpha$ = 0.5")


def test_every_catalog_parses_and_no_string_gets_two_translations():
    exact, _ = figure_text.catalog("zh")
    seen: dict[str, tuple[str, str]] = {}
    clashes = []
    for path in sorted(figure_text.CATALOGS["zh"].glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                english, chinese = (p.strip() for p in line.split("\t"))
                if english in seen and seen[english][1] != chinese:
                    clashes.append(f"{english!r}: {seen[english]} vs {path.name} {chinese!r}")
                seen[english] = (path.name, chinese)
    assert not clashes, "one English string, two translations:\n" + "\n".join(clashes)
    assert exact, "the zh catalog is empty"


def test_a_malformed_catalog_line_is_an_error_that_says_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "x.tsv").write_text("loss after {} steps\t损失\n", encoding="utf-8")
    monkeypatch.setitem(figure_text.CATALOGS, "xx", tmp_path)
    figure_text.catalog.cache_clear()
    with pytest.raises(ValueError, match="x.tsv, line 1: .* must have as many"):
        figure_text.catalog("xx")
    (tmp_path / "x.tsv").write_text("loss 损失\n", encoding="utf-8")
    figure_text.catalog.cache_clear()
    with pytest.raises(ValueError, match="one `English<TAB>中文` pair per line"):
        figure_text.catalog("xx")
    figure_text.catalog.cache_clear()


def test_installed_translation_reaches_titles_labels_and_legends_and_records_misses(
    tmp_path, monkeypatch
):
    metrics = tmp_path / "m.jsonl"
    monkeypatch.setenv("LLMCOURSE_METRICS_FILE", str(metrics))
    monkeypatch.setenv("LLMCOURSE_NOTEBOOK", "99_tiny")
    figure_text.install("zh")
    try:
        fig, ax = plt.subplots()
        ax.plot([0, 1], label="validation")
        ax.set(xlabel="step", ylabel="loss", title="a title nobody translated")
        ax.legend()
        fig.suptitle("train")
        assert ax.get_xlabel() == "步数" and ax.get_ylabel() == "损失"
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["验证"]
        assert fig._suptitle.get_text() == "训练"
        assert ax.get_title() == "a title nobody translated"
        plt.close(fig)
    finally:
        figure_text.uninstall()
    records = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    assert records == [
        {
            "notebook": "99_tiny",
            "kind": "untranslated",
            "text": "a title nobody translated",
            "lang": "zh",
        }
    ]
    fig, ax = plt.subplots()
    ax.set_xlabel("step")
    assert ax.get_xlabel() == "step"  # uninstalled: matplotlib's own methods again
    plt.close(fig)


def test_a_chinese_figure_draws_without_missing_glyphs(tmp_path):
    """The test setup installs a CJK font (scripts/test.sh); with it no glyph is drawn as a box."""
    name = config.use_cjk_font()
    assert name is not None, (
        "no CJK font: sudo apt-get install fonts-wqy-microhei (scripts/test.sh does)"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r".*[Gg]lyph.*missing")
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [2.0, 1.0, 0.5], label="验证损失")
        ax.set(
            title="唐诗三百首：字符级 GPT 的损失", xlabel="训练步数 $t$", ylabel="损失（nats/字）"
        )
        ax.legend()
        fig.savefig(tmp_path / "zh.png")
        plt.close(fig)
    assert (tmp_path / "zh.png").stat().st_size > 1000


def test_a_chinese_run_is_judged_as_zh_notebook_against_its_own_or_the_english_target():
    from llmcourse.course import targets

    t = targets.for_notebook("04_attention")
    recs = [
        {"notebook": "04_attention", "lang": "zh", "name": t.metric, "value": t.smoke + 1},
        {"notebook": "04_attention", "lang": "zh", "name": t.vs, "value": t.smoke - t.margin - 1},
    ]
    assert targets.for_notebook("zh/04_attention") is t  # English data in the zh edition: same row
    assert targets.check(recs, ["zh/04_attention"]) == []
    assert "was not recorded" in targets.check(recs, ["04_attention"])[0]  # not an English run
    recs[0]["value"] = t.smoke - 1
    assert "smoke target" in targets.check(recs, ["zh/04_attention"])[0]
    spec = importlib.util.spec_from_file_location("run_course", ROOT / "scripts" / "run_course.py")
    course = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(course)
    verdict = course.judge([("04_attention.ipynb", "ok", 1.0, {})], recs, "smoke")["04_attention"]
    assert not verdict["target_met"] and "smoke target" in verdict["target_failure"]


def test_the_student_edition_of_a_zh_notebook_has_chinese_placeholders():
    spec = importlib.util.spec_from_file_location(
        "make_student_edition", ROOT / "scripts" / "make_student_edition.py"
    )
    se = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(se)
    cells = [
        {
            "cell_type": "markdown",
            "metadata": {},
            "source": "答：<!-- BEGIN SOLUTION -->因为……<!-- END SOLUTION -->",
        },
        {
            "cell_type": "code",
            "metadata": {},
            "outputs": [],
            "execution_count": None,
            "source": "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION",
        },
    ]
    nb = {
        "cells": cells,
        "metadata": {"llmcourse": {"edition": "zh"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    student = se.student_notebook(nb, "99_tiny.ipynb")
    assert "".join(student["cells"][0]["source"]) == "答：" + se.ANSWER_ZH
    assert se.STUB_ZH in "".join(student["cells"][1]["source"])
    nb["metadata"] = {}
    assert se.ANSWER in "".join(se.student_notebook(nb, "99_tiny.ipynb")["cells"][0]["source"])


def test_quoted_text_inside_a_pattern_is_data_and_stays_as_it_is():
    title = "next character after 'To be, or\\nnot to be'"  # a repr(): a literal backslash-n
    assert figure_text.translate(title, language="zh") == "'To be, or\\nnot to be' 之后的下一个字符"


def test_readme_zh_links_every_zh_notebook_and_its_colab_badge():
    text = (ROOT / "README.zh.md").read_text(encoding="utf-8")
    for english in mz.english_notebooks():
        assert f"](notebooks/zh/{english.name})" in text, (
            f"README.zh.md does not link {english.name}"
        )
        assert f"{mz.REPO_BLOB}zh/{english.name}" in text, (
            f"README.zh.md: no Colab badge for {english.name}"
        )
    for target in re.findall(r"\]\((?!https?:|#)([^)\s#]+)", text):
        assert (ROOT / target).exists(), f"README.zh.md links {target}, which does not exist"


def test_tick_labels_are_translated_only_where_the_catalog_has_them_exactly(tmp_path, monkeypatch):
    metrics = tmp_path / "m.jsonl"
    monkeypatch.setenv("LLMCOURSE_METRICS_FILE", str(metrics))
    figure_text.install("zh")
    try:
        fig, ax = plt.subplots()
        ax.bar(["validation", "the cat sat"], [1.0, 2.0])  # a label, and data
        fig.canvas.draw()
        assert [t.get_text() for t in ax.get_xticklabels()] == ["验证", "the cat sat"]
        ax.set_yticks([0, 1], labels=["loss", "dog"])
        assert [t.get_text() for t in ax.get_yticklabels()] == ["损失", "dog"]
        plt.close(fig)
    finally:
        figure_text.uninstall()
    assert not metrics.exists(), "tick labels are data: never recorded as misses"
    fig, ax = plt.subplots()
    ax.bar(["validation"], [1.0])
    fig.canvas.draw()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["validation"]
    plt.close(fig)
