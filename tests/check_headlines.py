"""After the notebooks ran under nbmake: every headline meets its smoke target (run by scripts/test.sh).

Not collected with the unit tests (the name does not start with `test_`): it reads what the notebook
run recorded, so scripts/test.sh runs it explicitly once that run is over, as

    LLMCOURSE_METRICS_FILE=build/test/metrics.jsonl python -m pytest -s tests/check_headlines.py

Each notebook's `notebook.headline`/`notebook.metric` calls and the runner's "ran" records (conftest.py)
are in that file. A notebook that ran must have recorded its headline, reach the smoke target of
`llmcourse.course.targets`, and beat its in-run baseline by the stated margin. A lesson that silently stops
working (a model that no longer learns, a baseline that catches up) turns CI red here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from llmcourse.course import targets

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# the Chinese edition's runs, as "zh/<notebook>" (conftest.py, targets.for_notebook)
ZH_NOTEBOOKS = sorted(
    f"zh/{p.stem}" for p in (ROOT / "notebooks" / "zh").glob("[0-9][0-9]_*.ipynb")
)


def _records() -> list[dict]:
    path = os.environ.get("LLMCOURSE_METRICS_FILE")
    assert path, (
        "set LLMCOURSE_METRICS_FILE to the metrics file of a notebook run (scripts/test.sh does)"
    )
    assert Path(path).exists(), (
        f"{path} does not exist: run the notebooks first (bash scripts/test.sh)"
    )
    return [
        json.loads(line)
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def test_every_notebook_ran_and_every_headline_meets_its_smoke_target():
    records = _records()
    ran = sorted(
        {r["notebook"] for r in records if r.get("kind") == "ran" and r.get("outcome") == "passed"}
    )
    values = [r for r in records if r.get("kind") in ("headline", "metric")]
    print("\n" + targets.render_check(values, ran))
    missing = sorted(set(NOTEBOOKS + ZH_NOTEBOOKS) - set(ran))
    assert not missing, (
        f"these notebooks did not run (or failed), so their headlines were not checked: {missing}"
    )
    failures = targets.check(values, ran, size="smoke")
    assert not failures, "headlines below their smoke targets:\n  " + "\n  ".join(failures)


def test_every_figure_of_the_chinese_edition_has_chinese_text():
    """A title, axis label or legend label of a zh notebook's figure that the catalog
    (llmcourse/course/figure_text_zh/) did not translate is recorded as "untranslated"."""
    misses = sorted(
        {(r["notebook"], r["text"]) for r in _records() if r.get("kind") == "untranslated"}
    )
    assert not misses, (
        "English text left in Chinese figures; add `English<TAB>中文` lines to "
        "llmcourse/course/figure_text_zh/<notebook>.tsv:\n  "
        + "\n  ".join(f"{nb}: {text!r}" for nb, text in misses)
    )
