"""The chat page at `/`, driven in headless Chromium by Playwright against a live server on loopback.

Uses the system's Chromium or Chrome (Debian: `apt-get install chromium`; GitHub's Ubuntu runners ship
google-chrome; or set LLMCOURSE_CHROMIUM to a binary), never `playwright install`. The page must stream
an answer (several chunks), show exactly the API's answer, send the whole conversation on the next turn,
and show an error for a bad request. Against a server started with an API key, it must show the 401
until the key is typed, then send it as a Bearer token and stream the answer, never logging the key.
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


KEY = "sekret-Key-42"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_random_model(tmp_path_factory.mktemp("browser") / "tiny-chat", block_size=256)


@pytest.fixture(scope="module")
def server(model_dir):
    with BackgroundServer(load_backend(model_dir, device="cpu")) as srv:
        yield srv


@pytest.fixture(scope="module")
def keyed(model_dir):
    with BackgroundServer(load_backend(model_dir, device="cpu"), api_key=KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


def _open(browser, url: str):
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(url + "/")
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    page = _open(browser, server.url)
    yield page
    page.close()


def _api_answer(server, messages: list[dict], key: str = "unused") -> str:
    body = {"model": "tiny-chat", "messages": messages, "temperature": 0, "max_tokens": 40}
    r = httpx.post(
        server.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    return r.json()["choices"][0]["message"]["content"]


def _ask(page, text: str, *, ok: bool = True):
    """Type a message, press Enter, wait for the streamed answer (or the error when `ok` is False);
    return the request the page sent (a Playwright Request)."""
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
    assert page.is_visible("#error") is not ok, page.text_content("#error")
    return request.value


def test_chat_page_streams_keeps_the_conversation_and_shows_errors(server, page):
    page.wait_for_function("document.getElementById('model').textContent.includes('tiny-chat')")
    page.click("summary")  # open the settings
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "40")

    first = json.loads(_ask(page, "Hello there").post_data)
    assert first["stream"] is True and first["messages"] == [
        {"role": "user", "content": "Hello there"}
    ]
    answer = page.locator(".assistant").nth(0)
    assert answer.text_content() == _api_answer(server, first["messages"])  # what the API answers
    assert int(answer.get_attribute("data-chunks")) > 1  # it arrived in pieces

    second = json.loads(_ask(page, "Tell me more").post_data)
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


def test_chat_page_shows_the_401_then_sends_the_typed_key(keyed, browser):
    page = _open(browser, keyed.url)
    logged = []
    page.on("console", lambda message: logged.append(message.text))
    try:
        # Without the key the page says so at once (its /v1/models request got the 401)...
        page.wait_for_selector("#error", state="visible")
        error = page.text_content("#error")
        assert "401" in error and "API key" in error and "Settings" in error
        assert page.text_content("#model") == ""

        # ... and so does a message sent anyway; the failed turn is not kept.
        refused = _ask(page, "Hello there", ok=False)
        assert "authorization" not in refused.headers
        assert refused.response().status == 401
        error = page.text_content("#error")
        assert "401" in error and "Incorrect or missing API key" in error
        assert page.locator(".msg").count() == 0

        # With the key typed under Settings, the next message carries it and an answer streams.
        page.click("summary")
        page.fill("#temperature", "0")
        page.fill("#max_tokens", "40")
        page.fill("#api_key", KEY)
        sent = _ask(page, "Hello there")
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert not page.is_visible("#error")
        assert "tiny-chat" in page.text_content("#model")
        answer = page.locator(".assistant").nth(0)
        assert int(answer.get_attribute("data-chunks")) > 1  # it arrived in pieces
        messages = json.loads(sent.post_data)["messages"]
        assert answer.text_content() == _api_answer(keyed, messages, KEY)

        assert page.get_attribute("#api_key", "type") == "password"  # shown as dots
        assert not any(KEY in line for line in logged)
        assert page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == (
            "{}{}"
        )
    finally:
        page.close()
