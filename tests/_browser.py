"""The system's Chromium for the browser tests (never `playwright install`), and how to launch it.

Debian: `apt-get install chromium` (scripts/test.sh installs it as root); GitHub's Ubuntu runners ship
google-chrome; or set LLMCOURSE_CHROMIUM to a binary. Tests that need it are skipped without it on a
laptop, and fail under CI (CI set), where a missing browser is a setup error.
"""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("LLMCOURSE_CHROMIUM") or next(
    filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
)
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="no system Chromium (apt-get install chromium)",
)
