"""The course runner ends in a book: build/course/index.html links every executed notebook.

Runs the real runner on notebook 00 (the quickest), then opens the front page in the system's headless
Chromium (as tests/test_serve_browser.py does) and follows every link.
"""

from __future__ import annotations

import json
import os

import pytest
from _browser import ARGS, CHROMIUM, needs_chromium
from _scripts import load_script

sync_api = pytest.importorskip("playwright.sync_api")
course = load_script("run_course")

pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def course_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    stale = out / "checkpoints" / "00_old_run"
    stale.mkdir(parents=True)  # a previous run's state: the runner must not keep it
    before = dict(os.environ)
    code = course.main(["--size", "smoke", "--only", "00", "--out", str(out), "--threads", "1"])
    assert dict(os.environ) == before, "the runner must leave the caller's environment as it was"
    return out, code


def test_runner_starts_from_a_fresh_checkpoint_root_and_meets_the_target(course_run):
    out, code = course_run
    assert code == 0
    assert not (out / "checkpoints" / "00_old_run").exists()
    (row,) = json.loads((out / "summary.json").read_text())
    assert row["status"] == "ok" and row["target_met"] is True and row["threads"] == 1
    assert row["headline"].startswith("6B_inference_GB = ")


def test_index_links_every_executed_notebook_and_each_link_opens(course_run):
    out, _ = course_run
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.goto((out / "index.html").as_uri())
        assert "the executed course" in page.title()
        links = page.eval_on_selector_all("table a", "els => els.map(e => [e.textContent, e.href])")
        assert len(links) == 1 and links[0][0].startswith("00"), links
        row = page.inner_text("tbody tr")
        assert "6B_inference_GB" in row and "≤ 18 GB" in row and "smoke" in row and "met" in row
        for _, href in links:
            response = page.goto(href)
            assert response is not None and response.ok, href
            assert "headline: 6B_inference_GB" in page.inner_text(
                "body"
            )  # the executed outputs are there
        browser.close()
