"""The targets table: complete, consistent with the notebooks, and a check that fails when it should."""

import json
import re
from pathlib import Path

import pytest

from llmcourse.course import targets
from llmcourse.course.targets import Target

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _code(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")


def test_every_notebook_has_one_target_and_records_its_headline_and_baseline():
    assert sorted(t.notebook for t in targets.TARGETS) == [p.stem for p in NOTEBOOKS]
    assert len(targets.BY_METRIC) == len(targets.TARGETS), "headline names must be unique"
    for path in NOTEBOOKS:
        t = targets.for_notebook(path.stem)
        code = _code(path)
        calls = re.findall(r"notebook\.headline\(\s*[\"']([^\"']+)", code)
        assert calls == [t.metric], (
            f"{path.name}: one headline {t.metric!r} expected, found {calls}"
        )
        for name in [t.vs] * bool(t.vs) + [
            n for a, b, _ in t.also for n in (a, b) if n != t.metric
        ]:
            assert re.search(rf"notebook\.metric\(\s*[\"']{re.escape(name)}[\"']", code), (
                f"{path.name}: {name!r} is never recorded with notebook.metric"
            )


# Smoke sizes that run on a different, generated text than the full size: their figures don't compare.
OTHER_TEXT_AT_SMOKE = {"03_rnn", "07_bert"}


def test_smoke_targets_are_no_harder_than_full_targets():
    for t in targets.TARGETS:
        if t.notebook in OTHER_TEXT_AT_SMOKE:
            continue
        assert (t.smoke <= t.full) if t.higher_is_better else (t.smoke >= t.full), t.notebook


T = Target(
    "04_attention", "acc", "%", True, "no attention", 80.0, 95.0, vs="acc_no_attention", margin=20.0
)


def _recs(acc, base):
    return [
        {"notebook": "04_attention", "name": "acc", "value": acc},
        {"notebook": "04_attention", "name": "acc_no_attention", "value": base},
    ]


@pytest.fixture
def one_target(monkeypatch):
    monkeypatch.setattr(targets, "BY_NOTEBOOK", {"04_attention": T})


def test_check_passes_when_target_and_margin_are_met(one_target):
    assert targets.check(_recs(90.0, 40.0), ["04_attention"]) == []


def test_check_fails_below_target_below_margin_and_when_missing(one_target):
    assert "smoke target ≥ 80%" in targets.check(_recs(70.0, 10.0), ["04_attention"])[0]
    assert "by 5, 20 needed" in targets.check(_recs(90.0, 85.0), ["04_attention"])[0]
    assert "was not recorded" in targets.check(_recs(90.0, 40.0)[1:], ["04_attention"])[0]
    assert "no target" in targets.check([], ["99_unknown"])[0]
    assert targets.check([], []) == ["no notebook ran, so no headline was checked"]
    assert targets.check(
        [{"notebook": "04_attention", "name": "acc", "value": float("nan")}, _recs(0, 0)[1]],
        ["04_attention"],
    )


def test_lower_is_better_targets_compare_the_other_way():
    t = Target("x", "loss", "", False, "unigram", 2.0, 1.5, vs="unigram", margin=0.5)
    assert targets.meets(t, 1.9) and not targets.meets(t, 2.1)
    import dataclasses

    recs = [
        {"notebook": "x", "name": "loss", "value": 1.9},
        {"notebook": "x", "name": "unigram", "value": 2.2},
    ]
    targets.BY_NOTEBOOK["x"] = t
    try:
        assert "by 0.3, 0.5 needed" in targets.check(recs, ["x"])[0]
        recs[1]["value"] = 2.5
        assert targets.check(recs, ["x"]) == []
    finally:
        del targets.BY_NOTEBOOK["x"]
    assert dataclasses.is_dataclass(t)


def test_describe_gives_the_full_size_figure_or_the_command():
    text = targets.describe(targets.for_notebook("05_transformer"), "smoke")
    assert "measured: 100.0%" in text and "target at smoke size: ≥ 90%" in text
    text = targets.describe(Target("07_bert", "m", "%", True, "b", 1, 2), "smoke")
    assert "not measured yet: run `bash scripts/course.sh --size full --only 07` on a GPU" in text


def test_readme_table_is_rendered_from_the_targets_and_the_measured_values():
    """README.md shows targets.py and docs/smoke_measured.json; edit those, then re-render."""
    from _scripts import load_script

    table = load_script("targets_table")
    assert table.main(["--check"]) == 0, "run: python scripts/targets_table.py"
    block = table.current_block((ROOT / "README.md").read_text(encoding="utf-8"))
    for t in targets.TARGETS:
        assert f"`{t.metric}`" in block


def test_extra_lessons_of_a_run_are_checked_too(monkeypatch):
    t = Target(
        "15_prompting_rag", "hit", "", True, "random", 0.5, 0.8, also=(("icl_k6", "icl_k0", 0.1),)
    )
    monkeypatch.setattr(targets, "BY_NOTEBOOK", {"15_prompting_rag": t})
    recs = [
        {"notebook": "15_prompting_rag", "name": "hit", "value": 0.7},
        {"notebook": "15_prompting_rag", "name": "icl_k6", "value": 0.58},
        {"notebook": "15_prompting_rag", "name": "icl_k0", "value": 0.55},
    ]
    assert (
        "icl_k6 = 0.58 beats icl_k0 = 0.55 by 0.03, 0.1 needed"
        in targets.check(recs, ["15_prompting_rag"])[0]
    )
    recs[1]["value"] = 0.78
    assert targets.check(recs, ["15_prompting_rag"]) == []
    assert "must both be recorded" in targets.check(recs[:2], ["15_prompting_rag"])[0]
