"""Shared fixtures for the unit tests (the repository-root conftest.py holds the notebooks' hooks).

The tiny model configs themselves live in tests/tiny.py, so that a test module can use them at import
time (in a parametrize list, a module constant) with `from tiny import TINY_GPT`; pytest puts this
folder on sys.path because this conftest.py is here. The fixtures below hand out fresh models built
from them.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _fresh_fallback_lines(monkeypatch):
    """Each offline fallback line is given once per process; each test starts with none given, so a
    test that expects one does not depend on which tests ran before it in the same worker."""
    import llmcourse.data.resolve

    monkeypatch.setattr(llmcourse.data.resolve, "_warned", set())


@pytest.fixture(autouse=True)
def _no_figure_left_open():
    """A test that leaves a matplotlib figure open fails (at teardown): open figures pile up in the
    worker's memory, and a later test that counts figures would see another test's. Close what you
    make (`plt.close(fig)`); a function that draws a figure and does not return it closes it itself.
    The leaked figures are closed here, so only the test that left them fails."""
    import sys

    pyplot = sys.modules.get("matplotlib.pyplot")  # not imported yet: no figure can be open
    before = set(pyplot.get_fignums()) if pyplot else set()
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    left = sorted(set(pyplot.get_fignums()) - before) if pyplot else []
    for number in left:
        pyplot.close(number)
    if left:
        pytest.fail(
            f"the test left {len(left)} matplotlib figure(s) open: close them (plt.close(fig))"
        )


@pytest.fixture
def tiny_gpt_model():
    """A fresh GPT of tiny.TINY_GPT's sizes, seeded (0) and in eval mode; tests may change it freely."""
    import tiny

    return tiny.tiny_gpt()
