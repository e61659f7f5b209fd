"""Live output that stays readable when nobody is watching: a progress bar and a growing text.

A person running a notebook sees tqdm's bar move and generated text grow token by token. A notebook
run unattended (nbmake, nbclient, CI, `scripts/run_course.py`) is read later, as a saved notebook or
HTML page, and there live output goes wrong: tqdm's widget is saved as it last looked in a kernel
with no front end, often frozen at "0%", and text printed piece by piece is saved as one output per
piece, which the HTML shows one piece per line. This module gives each a form that reads well both
ways:

* `unattended()`: True when the environment variable `LLMCOURSE_UNATTENDED` is 1 (or true/yes).
  `scripts/test.sh`, `scripts/run_course.py` (and so the rehearsals) and the tests that execute
  notebooks set it; Colab and a Jupyter session opened by a person do not. They also set
  `HF_HUB_DISABLE_PROGRESS_BARS=1` and `HF_DATASETS_DISABLE_PROGRESS_BARS=1`, which turn off the
  bars of huggingface_hub, transformers ("Loading weights", "Writing model shards") and datasets,
  read when those libraries are imported.
* `progress(total, desc="fit")`: tqdm.auto's live bar for a person; unattended, a silent stand-in
  that prints one static line when it closes, e.g. `fit: 300 steps in 12.4 s, loss=1.2345`.
* `TextStream`: text that grows in ONE output. In IPython (Jupyter, Colab, nbclient) it is one
  display slot updated in place (`display(..., display_id=True)`), so the saved notebook holds a
  single output with the whole text; in plain Python it prints each piece and flushes.

    with TextStream("KING:\\n") as out:
        for token in generate.stream(model, idx, 200, generator=g):
            out.write(vocab.decode(token[0].tolist()))

References: tqdm's `tqdm.auto` (widget in Jupyter, text in a terminal); IPython's display-update
API (`DisplayHandle.update`), which nbclient applies to the saved output.
Left out: nested bars, rate estimates in the static line, and rich (HTML/Markdown) streaming.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

UNATTENDED_ENV = "LLMCOURSE_UNATTENDED"


def unattended() -> bool:
    """True when the notebook runs with nobody watching (LLMCOURSE_UNATTENDED=1): static output."""
    return os.environ.get(UNATTENDED_ENV, "").strip().lower() in {"1", "true", "yes"}


class StaticProgress:
    """The unattended stand-in for a tqdm bar: same calls (`update`, `set_postfix`, `close`), no
    drawing; `close()` prints one line with the count, the time taken and the last postfix."""

    def __init__(
        self,
        total: int | None = None,
        *,
        desc: str = "",
        initial: int = 0,
        unit: str = "step",
        disable: bool = False,
        file: Any = None,
    ):
        self.total, self.desc, self.initial, self.unit = total, desc, initial, unit
        self.n, self.disable, self.postfix = initial, disable, ""
        self._file, self._t0, self._closed = file, time.perf_counter(), False

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def line(self) -> str:
        """The line `close()` prints, e.g. 'fit: 300 steps in 12.4 s, loss=1.2345'."""
        done = self.n - self.initial
        text = f"{self.desc}: " if self.desc else ""
        seconds = time.perf_counter() - self._t0
        text += f"{done} {self.unit}{'' if done == 1 else 's'} in {seconds:.1f} s"
        if self.initial:  # resumed from a checkpoint
            text += f" (resumed at {self.initial}, now {self.n}/{self.total})"
        return text + (f", {self.postfix}" if self.postfix else "")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable:
            print(self.line(), file=self._file or sys.stdout, flush=True)

    def __enter__(self) -> StaticProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(
    total: int | None = None,
    *,
    desc: str = "",
    initial: int = 0,
    unit: str = "step",
    disable: bool = False,
) -> Any:
    """A progress bar: tqdm.auto's (a widget in Jupyter and Colab) when a person watches, a
    `StaticProgress` that prints one line at the end when unattended (see `unattended`)."""
    if unattended():
        return StaticProgress(total, desc=desc, initial=initial, unit=unit, disable=disable)
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit=unit, disable=disable, dynamic_ncols=True
    )


def _ipython_display() -> Any:
    """IPython's `display` when a kernel runs this code, else None (plain Python, a test)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    shell = get_ipython()
    # a kernel (Jupyter, Colab, nbclient) has a kernel attribute; the terminal IPython has none
    return display if shell is not None and getattr(shell, "kernel", None) is not None else None


class TextStream:
    """Text that grows in one output: a display slot updated in place under a kernel, plain
    printing elsewhere. `write(piece)` adds text; `close()` (or leaving the `with`) shows the rest.

    Updates are sent at most every `interval` seconds (the last one always), so a fast generator
    does not flood the front end with one message per token.
    """

    def __init__(self, prefix: str = "", *, interval: float = 0.05):
        self.text, self.interval = prefix, interval
        self._display, self._handle, self._last = _ipython_display(), None, 0.0
        if self._display is None and prefix:
            sys.stdout.write(prefix)
            sys.stdout.flush()

    def write(self, piece: str) -> None:
        self.text += piece
        if self._display is None:
            sys.stdout.write(piece)
            sys.stdout.flush()
        elif time.perf_counter() - self._last >= self.interval:
            self._show()

    def _show(self) -> None:
        data = {"text/plain": self.text}
        if self._handle is None:
            self._handle = self._display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)
        self._last = time.perf_counter()

    def close(self) -> None:
        if self._display is None:
            sys.stdout.write("\n")
            sys.stdout.flush()
        else:
            self._show()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
