"""The other half of the full-size rehearsal (tests/test_rehearsal.py has the first, and the why):
a file of its own so that CI's second worker takes it (`--dist loadfile`)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_rehearsal import HERE, REHEARSED, rehearse_notebooks  # noqa: E402

THERE = [n for n in REHEARSED if n not in HERE]


@pytest.mark.slow
@pytest.mark.parametrize("numbers", THERE)
def test_notebook_rehearses_at_full_size(numbers):
    """As in tests/test_rehearsal.py; its own stand-in hub folder, as both halves run at once."""
    rehearse_notebooks(numbers, hub="hub-more")
