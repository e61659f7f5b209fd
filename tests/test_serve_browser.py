"""The chat page at `/`, driven in headless Chromium by Playwright against a live server on loopback.

Uses the system's Chromium or Chrome (Debian: `apt-get install chromium`; GitHub's Ubuntu runners ship
google-chrome; or set LLMCOURSE_CHROMIUM to a binary), never `playwright install`. The page must stream
an answer (several chunks), show exactly the API's answer, send the whole conversation on the next turn,
and show an error for a bad request.
"""

from __future__ import annotations

import json

import httpx
import pytest

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")

from _browser import ARGS, CHROMIUM, needs_chromium  # noqa: E402
from llmcourse.serve import BackgroundServer  # noqa: E402
from llmcourse.serve.backends import load_backend, tiny_random_model  # noqa: E402

# Skipped on a laptop without Chromium; under CI (CI set) a missing browser fails the test instead.
pytestmark = [pytest.mark.slow, needs_chromium]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tiny_random_model(tmp_path_factory.mktemp("browser") / "tiny-chat", block_size=256)
    with BackgroundServer(load_backend(directory, device="cpu")) as srv:
        yield srv


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.goto(server.url + "/")
        yield page
        browser.close()


def _api_answer(server, messages: list[dict]) -> str:
    body = {"model": "tiny-chat", "messages": messages, "temperature": 0, "max_tokens": 40}
    r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30)
    return r.json()["choices"][0]["message"]["content"]


def _ask(page, text: str) -> dict:
    """Type a message, press Enter, wait for the streamed answer; return the request the page sent."""
    k = page.locator(".assistant").count()
    with page.expect_request("**/v1/chat/completions") as request:
        page.fill("#input", text)
        page.press("#input", "Enter")
    page.wait_for_function(
        "(k) => { const a = document.querySelectorAll('.assistant');"
        " return (a.length > k && a[k].dataset.done === '1')"
        " || document.getElementById('error').style.display === 'block'; }",
        arg=k,
    )
    assert not page.is_visible("#error"), page.text_content("#error")
    return json.loads(request.value.post_data)


def test_chat_page_streams_keeps_the_conversation_and_shows_errors(server, page):
    page.wait_for_function("document.getElementById('model').textContent.includes('tiny-chat')")
    page.click("summary")  # open the settings
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "40")

    first = _ask(page, "Hello there")
    assert first["stream"] is True and first["messages"] == [
        {"role": "user", "content": "Hello there"}
    ]
    answer = page.locator(".assistant").nth(0)
    assert answer.text_content() == _api_answer(server, first["messages"])  # what the API answers
    assert int(answer.get_attribute("data-chunks")) > 1  # it arrived in pieces

    second = _ask(page, "Tell me more")
    assert second["messages"] == first["messages"] + [
        {"role": "assistant", "content": answer.text_content()},
        {"role": "user", "content": "Tell me more"},
    ]
    assert page.locator(".assistant").nth(1).text_content() == _api_answer(
        server, second["messages"]
    )
    assert not page.is_visible("#error")

    page.fill("#max_tokens", "100000000")  # far beyond the 256-token context: the server says 400
    page.fill("#input", "One more")
    page.press("#input", "Enter")
    page.wait_for_selector("#error", state="visible")
    error = page.text_content("#error")
    assert "400" in error and "context length" in error and "max_tokens" in error
    assert page.locator(".assistant").count() == 2  # the failed turn is not kept
