"""docs/GLOSSARY.md, the English–Chinese glossary every notebook links to.

The glossary is markdown tables with the columns English | 中文 | Definition | Introduced in. The
checks: every table parses (right header, four cells, none empty), no English term appears twice,
the terms the "Classroom edition" issue names are there with their Chinese, every Chinese cell has
Chinese in it, every "introduced in" cell links only to notebooks that exist, and every notebook is
linked at least once. Each check is also run on a broken copy, which it must reject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GLOSSARY = ROOT / "docs" / "GLOSSARY.md"
HEADER = ["English", "中文", "Definition", "Introduced in"]
MIN_TERMS = 90

# The issue's own list: Chinese term -> the English term of its row (parenthetical abbreviations ignored).
NAMED = {
    "预训练": "pretraining",
    "微调": "fine-tuning",
    "监督微调": "supervised fine-tuning",
    "偏好对齐": "preference alignment",
    "注意力": "attention",
    "困惑度": "perplexity",
}

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
NB_LINK = re.compile(r"\[(\d{2})\]\(\.\./notebooks/((\d{2})_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb)\)")
# separators between alternative Chinese terms in one cell: 又作 A、B（C）/ D
ZH_SEPARATORS = re.compile(r"[、，,;；/／()（）\s]+|又作|即")


class GlossaryError(ValueError):
    pass


@dataclass(frozen=True)
class Row:
    line: int
    english: str
    chinese: str
    definition: str
    introduced: str


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())
    if parts and parts[0] == "":
        parts = parts[1:]
    if parts and parts[-1] == "":
        parts = parts[:-1]
    return [p.strip() for p in parts]


def parse(text: str) -> list[Row]:
    """All table rows of the glossary; raises GlossaryError on a malformed table."""
    rows: list[Row] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].lstrip().startswith("|"):
            i += 1
            continue
        start = i + 1
        if _cells(lines[i]) != HEADER:
            raise GlossaryError(f"line {start}: a table must have the header {' | '.join(HEADER)}")
        if i + 1 >= len(lines) or not re.fullmatch(
            r"\|?(\s*:?-{3,}:?\s*\|){3}\s*:?-{3,}:?\s*\|?", lines[i + 1].strip()
        ):
            raise GlossaryError(
                f"line {start + 1}: the header must be followed by a |---| separator row"
            )
        i += 2
        while i < len(lines) and lines[i].lstrip().startswith("|"):
            cells = _cells(lines[i])
            if len(cells) != len(HEADER):
                raise GlossaryError(f"line {i + 1}: {len(cells)} cells, expected {len(HEADER)}")
            empty = [HEADER[k] for k, c in enumerate(cells) if not c]
            if empty:
                raise GlossaryError(f"line {i + 1}: empty cell(s) {empty}")
            rows.append(Row(i + 1, *cells))
            i += 1
    return rows


def _base_term(english: str) -> str:
    return re.sub(r"\s*\(.*?\)", "", english).strip().lower()


def chinese_terms(cell: str) -> set[str]:
    return {t for t in ZH_SEPARATORS.split(cell) if t}


# ---------------------------------------------------------------------------- the checks


def check_duplicates(rows: list[Row]) -> list[str]:
    seen: dict[str, int] = {}
    problems = []
    for r in rows:
        key = r.english.lower()
        if key in seen:
            problems.append(f"line {r.line}: {r.english!r} already defined on line {seen[key]}")
        seen.setdefault(key, r.line)
    return problems


def check_named_terms(rows: list[Row]) -> list[str]:
    problems = []
    for zh, en in NAMED.items():
        matching = [r for r in rows if _base_term(r.english) == en]
        if not matching:
            problems.append(f"no row for {en!r} ({zh})")
        elif not any(zh in chinese_terms(r.chinese) for r in matching):
            problems.append(
                f"the row {en!r} does not give {zh} as its Chinese: {matching[0].chinese!r}"
            )
    return problems


def check_chinese(rows: list[Row]) -> list[str]:
    return [
        f"line {r.line}: the 中文 cell of {r.english!r} has no Chinese character: {r.chinese!r}"
        for r in rows
        if not CJK.search(r.chinese)
    ]


def check_links(rows: list[Row], notebooks: Path) -> list[str]:
    problems = []
    for r in rows:
        links = NB_LINK.findall(r.introduced)
        rest = NB_LINK.sub("", r.introduced)
        if not links:
            problems.append(
                f"line {r.line}: {r.english!r}: no [NN](../notebooks/NN_topic.ipynb) link"
            )
        if re.sub(r"[\s,→·]", "", rest):
            problems.append(
                f"line {r.line}: {r.english!r}: unlinked text in 'Introduced in': {rest.strip()!r}"
            )
        for text, name, number in links:
            if text != number:
                problems.append(f"line {r.line}: link text [{text}] does not match {name}")
            if not (notebooks / name).is_file():
                problems.append(f"line {r.line}: {r.english!r} links to a missing notebook {name}")
    return problems


def check_every_notebook_linked(rows: list[Row], notebooks: Path) -> list[str]:
    linked = {name for r in rows for _, name, _ in NB_LINK.findall(r.introduced)}
    return [
        f"no glossary term is introduced in {p.name}: add its key terms"
        for p in sorted(notebooks.glob("*.ipynb"))
        if p.name not in linked
    ]


def check_anchors(text: str) -> list[str]:
    def slug(heading: str) -> str:  # GitHub's rule: lower case, drop punctuation, spaces -> '-'
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    anchors = {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}
    return [
        f"link to #{a} matches no heading"
        for a in re.findall(r"\]\(#([^)]+)\)", text)
        if a not in anchors
    ]


# ---------------------------------------------------------------------------- the glossary


@pytest.fixture(scope="module")
def text() -> str:
    assert GLOSSARY.is_file(), f"{GLOSSARY} is missing"
    return GLOSSARY.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def rows(text: str) -> list[Row]:
    return parse(text)


def test_glossary_parses_and_is_large_enough(rows):
    assert len(rows) >= MIN_TERMS, f"only {len(rows)} terms; the course needs at least {MIN_TERMS}"


def test_no_duplicate_english_terms(rows):
    assert check_duplicates(rows) == []


def test_issue_terms_present_with_their_chinese(rows):
    assert check_named_terms(rows) == []


def test_every_chinese_cell_has_chinese(rows):
    assert check_chinese(rows) == []


def test_introduced_in_links_point_to_existing_notebooks(rows):
    assert check_links(rows, ROOT / "notebooks") == []


def test_every_notebook_is_linked(rows):
    assert check_every_notebook_linked(rows, ROOT / "notebooks") == []


def test_internal_anchors_resolve(text):
    assert check_anchors(text) == []


# ---------------------------------------------------------------------------- the checks themselves

GOOD = """\
# Glossary

Parts: [Basics](#basics-notebook-01)

## Basics (notebook 01)

| English | 中文 | Definition | Introduced in |
|---|---|---|---|
| perplexity (PPL) | 困惑度 | exp of the mean negative log-probability per token. | [01](../notebooks/01_ngram.ipynb) |
| pretraining | 预训练 | Stage 1. | [00](../notebooks/00_start_here.ipynb), [08](../notebooks/08_gpt_pretraining.ipynb) |
| fine-tuning | 微调（又作 精调） | More training. | [07](../notebooks/07_bert.ipynb) |
| supervised fine-tuning (SFT) | 监督微调（又作 有监督微调） | Stage 2. | [11](../notebooks/11_sft.ipynb) |
| preference alignment | 偏好对齐 | Stage 3. | [13](../notebooks/13_dpo.ipynb) |
| attention | 注意力（注意力机制） | A weighted average. | [04](../notebooks/04_attention.ipynb) |
"""


@pytest.fixture
def fake_notebooks(tmp_path: Path) -> Path:
    for name in (
        "00_start_here",
        "01_ngram",
        "04_attention",
        "07_bert",
        "08_gpt_pretraining",
        "11_sft",
        "13_dpo",
    ):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    return tmp_path


def test_checks_pass_on_a_good_sample(fake_notebooks):
    rows = parse(GOOD)
    assert len(rows) == 6 and rows[1].introduced.count("](") == 2
    assert check_duplicates(rows) == check_named_terms(rows) == check_chinese(rows) == []
    assert (
        check_links(rows, fake_notebooks) == check_every_notebook_linked(rows, fake_notebooks) == []
    )
    assert check_anchors(GOOD) == []
    assert chinese_terms("微调（又作 精调、调优）") == {"微调", "精调", "调优"}


def _row(english: str, chinese: str, introduced: str = "[01](../notebooks/01_ngram.ipynb)") -> str:
    return f"| {english} | {chinese} | Something. | {introduced} |\n"


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("| attention | 注意力 | A weighted average. |\n", "3 cells"),
        ("| attention | 注意力 |  | [04](../notebooks/04_attention.ipynb) |\n", "empty cell"),
        ("| attention | 注意力 | a | b | [04](../notebooks/04_attention.ipynb) |\n", "5 cells"),
    ],
)
def test_parse_rejects_malformed_rows(bad_line, message):
    with pytest.raises(GlossaryError, match=message):
        parse(GOOD + bad_line)


def test_parse_rejects_a_wrong_header():
    with pytest.raises(GlossaryError, match="header"):
        parse(GOOD.replace("| English | 中文 |", "| English | Chinese |"))
    with pytest.raises(GlossaryError, match="separator"):
        parse(GOOD.replace("|---|---|---|---|\n", ""))


def test_checks_catch_violations(fake_notebooks):
    dup = parse(GOOD + _row("Attention", "注意力"))
    assert check_duplicates(dup)
    missing = parse(GOOD.replace("| preference alignment | 偏好对齐 |", "| alignment | 对齐 |"))
    assert any("preference alignment" in p for p in check_named_terms(missing))
    wrong_zh = parse(GOOD.replace("| 困惑度 |", "| 混乱度 |"))
    assert any("困惑度" in p for p in check_named_terms(wrong_zh))
    assert check_chinese(parse(GOOD + _row("KV cache", "KV cache")))
    assert check_links(
        parse(GOOD + _row("token", "词元", "[06](../notebooks/06_tokenization.ipynb)")),
        fake_notebooks,
    )  # notebook does not exist
    assert check_links(parse(GOOD + _row("token", "词元", "notebook 06")), fake_notebooks)
    assert check_links(
        parse(GOOD + _row("token", "词元", "[07](../notebooks/01_ngram.ipynb)")), fake_notebooks
    )  # text and target disagree
    assert check_links(
        parse(GOOD + _row("token", "词元", "[01](../notebooks/01_ngram.ipynb) and 06")),
        fake_notebooks,
    )
    (fake_notebooks / "17_many_gpus.ipynb").write_text("{}")
    assert check_every_notebook_linked(parse(GOOD), fake_notebooks) == [
        "no glossary term is introduced in 17_many_gpus.ipynb: add its key terms"
    ]
    assert check_anchors(GOOD.replace("(#basics-notebook-01)", "(#basics)"))
