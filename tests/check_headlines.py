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
    missing = sorted(set(NOTEBOOKS) - set(ran))
    assert not missing, (
        f"these notebooks did not run (or failed), so their headlines were not checked: {missing}"
    )
    failures = targets.check(values, ran, size="smoke")
    assert not failures, "headlines below their smoke targets:\n  " + "\n  ".join(failures)
