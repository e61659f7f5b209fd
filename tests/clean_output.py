"""Output noise in an executed notebook: `problems(nb)` lists what a reader of the saved notebook or
its HTML would trip over (issue 17, point 4). Used by tests/test_student_edition.py on every
notebook it executes, and unit-tested on handmade notebooks in tests/test_clean_output.py.

What counts as noise, per code cell:
- a live widget (`application/vnd.jupyter.widget-view+json`, e.g. tqdm.auto's bar): saved without
  a kernel it shows frozen, often at "0%". Unattended runs (LLMCOURSE_UNATTENDED=1) print a static
  line instead (`llmcourse.course.live_output.progress`);
- text printed in pieces: consecutive stream outputs (stdout or stderr) that do not end a line are
  rendered by the HTML one piece per line. Use `llmcourse.course.live_output.TextStream`;
- a stray repr as the cell's result: `Text(0.5, 1.0, '...')`, `<matplotlib.legend.Legend at ...>`,
  `[<matplotlib.lines.Line2D ...>]`, `<Axes: ...>`. End the cell with `;` or `plt.show()`;
- a PNG larger than `max_png` pixels (read from its IHDR header), and the same PNG twice in a cell;
- an error output is not judged here (the test that executes the notebook reports it).

Axes without labels cannot be seen in a PNG, so they are caught in the kernel, as each figure is
rendered: `install_axes_check()` (run in the kernel before the notebook) wraps matplotlib's
`FigureCanvasBase.print_figure`, through which every displayed or saved figure passes, and
`axes_problems(fig)` lists each Axes with a numeric axis that has no label (an axis whose ticks are
names, as in a bar chart of methods, labels itself; a label on an Axes sharing the axis, or a
figure-level `supxlabel`, counts). `REPORT` prints what was collected, `reported(outputs)` reads
it back.
"""

from __future__ import annotations

import base64
import builtins
import json
import re
import struct
from typing import Any

WIDGET = "application/vnd.jupyter.widget-view+json"
MAX_PNG = (2000, 1500)  # width, height in pixels: 10 x 7 inches at 150 dpi, with room for margins
MAX_FRAGMENTS = 2  # stream pieces that end mid-line, in a row, before it counts as noise
STRAY_REPR = re.compile(
    r"^[\[(]*("  # a list or tuple of them counts too
    r"Text\(|<matplotlib\.|<mpl_toolkits\.|<Axes\w*[:>]|<Figure size |<\w*Container object of "
    r"|array\(\[<Axes|<Axes3D"
    r")"
)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG: big-endian uint32s at bytes 16..24, inside the IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG (no PNG signature followed by an IHDR chunk)")
    return struct.unpack(">II", data[16:24])


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _get(node: Any, key: str, default: Any = None) -> Any:
    return node.get(key, default) if hasattr(node, "get") else getattr(node, key, default)


def cell_problems(
    cell: Any,
    where: str,
    *,
    max_png: tuple[int, int] = MAX_PNG,
    max_fragments: int = MAX_FRAGMENTS,
) -> list[str]:
    """The problems of one executed code cell, each prefixed with `where`."""
    found: list[str] = []
    run: list[str] = []  # the current run of consecutive stream outputs of one name
    run_name, fragments, pngs = None, 0, set()

    def end_run() -> None:
        nonlocal run, run_name, fragments
        if fragments > max_fragments:
            preview = "".join(run)[:60].replace("\n", "\\n")
            found.append(
                f"{where}: {fragments} {run_name} pieces that end mid-line in a row, shown one per "
                f"line in HTML ({preview!r}...): print whole lines, or grow one output with "
                "llmcourse.course.live_output.TextStream"
            )
        run, run_name, fragments = [], None, 0

    for out in _get(cell, "outputs", []) or []:
        kind = _get(out, "output_type")
        if kind == "stream":
            name, text = _get(out, "name"), _text(_get(out, "text"))
            if name != run_name:
                end_run()
                run_name = name
            run.append(text)
            if not text.endswith("\n"):
                fragments += 1
            continue
        end_run()
        data = _get(out, "data", {}) or {}
        if WIDGET in data:
            found.append(
                f"{where}: a live widget ({_text(data.get('text/plain'))[:60]!r}), saved frozen: "
                "use llmcourse.course.live_output.progress, which prints a static line when "
                "LLMCOURSE_UNATTENDED=1"
            )
        plain = _text(data.get("text/plain")).strip()
        if kind == "execute_result" and "image/png" not in data and STRAY_REPR.match(plain):
            found.append(
                f"{where}: a stray repr as the cell's result ({plain[:60]!r}): end the cell's last "
                "line with ';' or call plt.show()"
            )
        if "image/png" in data:
            raw = base64.b64decode(_text(data["image/png"]))
            w, h = png_size(raw)
            if w > max_png[0] or h > max_png[1]:
                found.append(
                    f"{where}: a {w}x{h} px image, over the {max_png[0]}x{max_png[1]} cap: pass a "
                    "smaller figsize (text in it shrinks to unreadable)"
                )
            if raw in pngs:
                found.append(
                    f"{where}: the same figure shown twice (a Figure returned as the cell's result "
                    "is shown again at the end of the cell): end the line with ';'"
                )
            pngs.add(raw)
    end_run()
    return found


def problems(
    nb: Any,
    *,
    name: str = "notebook",
    max_png: tuple[int, int] = MAX_PNG,
    max_fragments: int = MAX_FRAGMENTS,
) -> list[str]:
    """Every problem of an executed notebook (an nbformat node or its JSON dict), as readable lines
    naming the notebook and the cell (1-based, as Jupyter counts)."""
    found: list[str] = []
    for i, cell in enumerate(_get(nb, "cells", [])):
        if _get(cell, "cell_type") == "code":
            found += cell_problems(
                cell, f"{name} cell {i + 1}", max_png=max_png, max_fragments=max_fragments
            )
    return found


def _is_number(text: str) -> bool:
    """'0.5', '−1', '50%', '1e3' and mathtext such as '$\\mathdefault{10^{2}}$' are numbers."""
    if text.startswith("$"):
        return True
    try:
        float(text.replace("\u2212", "-").rstrip("%").replace(",", ""))
    except ValueError:
        return False
    return True


def _needs_label(ax: Any, axis: str) -> bool:
    from matplotlib.ticker import NullFormatter

    if getattr(ax, f"get_{axis}label")():
        return False
    siblings = getattr(ax, f"get_shared_{axis}_axes")().get_siblings(ax)
    if any(getattr(a, f"get_{axis}label")() for a in siblings if a is not ax):
        return False  # subplots sharing the axis: one label serves the row or column
    sup = getattr(ax.figure, f"_sup{axis}label", None)
    if sup is not None and sup.get_text():
        return False
    side = getattr(ax, f"{axis}axis")
    fmt = side.get_major_formatter()
    if len(side.get_majorticklocs()) == 0 or isinstance(fmt, NullFormatter):
        return False  # no ticks: nothing on this axis to read
    texts = fmt.format_ticks(list(side.get_majorticklocs()))
    # ticks that are names (bars of methods, words, dates) label themselves
    return all(_is_number(t) for t in texts if t)


def axes_problems(fig: Any) -> list[str]:
    """Each visible Axes of a matplotlib Figure with a numeric axis and no label on it."""
    found = []
    suptitle = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) else ""
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison or ax.get_label() == "<colorbar>":
            continue  # diagrams drawn with axis("off"), colour bars
        what = ax.get_title() or suptitle or "a figure without a title"
        missing = [axis for axis in ("x", "y") if _needs_label(ax, axis)]
        if missing:
            found.append(f"{what!r}: no {' or '.join(missing)} label (ax.set_xlabel/set_ylabel)")
    return found


def install_axes_check() -> None:
    """In a kernel: check every figure as it is rendered; the findings go to `builtins`."""
    from matplotlib.backend_bases import FigureCanvasBase

    if getattr(FigureCanvasBase.print_figure, "_checks_axes", False):
        return
    original = FigureCanvasBase.print_figure
    builtins._llmcourse_unlabelled = []

    def print_figure(self: Any, *args: Any, **kwargs: Any) -> Any:
        for problem in axes_problems(self.figure):
            if problem not in builtins._llmcourse_unlabelled:
                builtins._llmcourse_unlabelled.append(problem)
        return original(self, *args, **kwargs)

    print_figure._checks_axes = True
    FigureCanvasBase.print_figure = print_figure


MARK = "LLMCOURSE_UNLABELLED "
REPORT = (
    "import builtins as _b, json as _j\n"
    f"print({MARK!r} + _j.dumps(getattr(_b, '_llmcourse_unlabelled', None)))"
)


def setup_code(tests_dir: str) -> str:
    """The hidden cell that installs the axes check in a kernel (this module, from `tests_dir`)."""
    return (
        f"import sys as _s\n_s.path.insert(0, {tests_dir!r})\nimport clean_output as _c\n"
        f"_c.install_axes_check()\n_s.path.remove({tests_dir!r})\ndel _s, _c"
    )


def reported(outputs: list) -> list[str]:
    """The unlabelled Axes that `REPORT` printed; an error when the check was never installed."""
    for out in outputs:
        for line in _text(_get(out, "text", "")).splitlines():
            if line.startswith(MARK):
                found = json.loads(line[len(MARK) :])
                if found is None:
                    raise RuntimeError("the axes check was not installed in this kernel")
                return found
    raise RuntimeError(f"no {MARK.strip()} line in the report cell's output")
