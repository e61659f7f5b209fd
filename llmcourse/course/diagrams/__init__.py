"""Conceptual diagrams, drawn by package code in one style: `diagrams.show("gpt_block")`.

Each diagram is a matplotlib drawing (`draw.py` holds the kit) rendered to SVG and shown as an
image with its alt text and caption, so a screen reader, a text-only output and the HTML export
all carry what it shows. A teacher can write them all to files:
`python -m llmcourse.course.diagrams build/diagrams` (one SVG per diagram).

Diagrams of model structure are in `architecture.py`; those of training, adaptation and serving in
`training.py`. `catalog.DIAGRAMS` lists them all.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from . import architecture, training  # noqa: F401  (registers the diagrams)
from ..figure_text import translate
from .catalog import DIAGRAMS, Diagram


def get(name: str) -> Diagram:
    """The catalogue entry `name`, or a clear error listing the names that exist."""
    if name not in DIAGRAMS:
        raise KeyError(f"no diagram named {name!r}; the course has: {', '.join(sorted(DIAGRAMS))}")
    return DIAGRAMS[name]


# the same picture wherever it is drawn: a notebook's style (`notebook.start()` sets a tight bbox,
# autolayout and a larger font) must not move or crop a diagram laid out by hand
STYLE = {
    "savefig.bbox": "standard",
    "figure.autolayout": False,
    "font.size": 10.0,
    "font.family": "sans-serif",
    "axes.grid": False,
}


def _render(name: str, fmt: str, *, dpi: int = 100, metadata: dict | None = None) -> bytes:
    import matplotlib
    import matplotlib.pyplot as plt

    # keep a CJK font the notebook added (config.use_cjk_font) as the fallback of the diagram's font
    family = matplotlib.rcParams["font.family"]
    extra = [f for f in ([family] if isinstance(family, str) else family) if f != "sans-serif"]
    with matplotlib.rc_context(dict(STYLE, **{"font.family": [*extra, "sans-serif"]})):
        fig = get(name).draw()
        buffer = io.BytesIO()
        fig.savefig(buffer, format=fmt, dpi=dpi, facecolor="white", metadata=metadata)
        plt.close(fig)
    return buffer.getvalue()


def svg(name: str) -> str:
    """The diagram `name` as SVG text, with its alt text as the SVG's <title> for screen readers."""
    return _render(name, "svg", metadata={"Title": get(name).alt}).decode()


def png(name: str, *, dpi: int = 100) -> bytes:
    """The diagram `name` as PNG bytes (for slides, and for checking a drawing by eye)."""
    return _render(name, "png", dpi=dpi)


def html_figure(name: str) -> str:
    """An HTML <figure>: the SVG as an <img> with its alt text, and the caption below it."""
    entry = get(name)
    title, alt = translate(entry.title), translate(entry.alt)
    figure = "图" if title != entry.title else "Figure"
    data = base64.b64encode(svg(name).encode()).decode()
    return (
        '<figure style="margin:0.5em 0">'
        f'<img src="data:image/svg+xml;base64,{data}" alt="{html.escape(alt)}" '
        'style="max-width:100%;height:auto;background:white">'
        f'<figcaption style="font-size:90%"><b>{figure}.</b> {html.escape(title)}</figcaption>'
        "</figure>"
    )


def show(name: str) -> None:
    """Show the diagram `name` in a notebook; outside one, print its caption and alt text."""
    entry = get(name)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # no IPython: plain Python
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        plain = f"[Figure: {translate(entry.title)}] {translate(entry.alt)}"
        display({"text/html": html_figure(name), "text/plain": plain}, raw=True)
    else:
        print(f"[Figure: {entry.title}]\n{entry.alt}")


def write_all(folder: str | Path) -> list[Path]:
    """Write every diagram as `<name>.svg` into `folder`; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in sorted(DIAGRAMS):
        path = folder / f"{name}.svg"
        path.write_text(svg(name))
        paths.append(path)
    return paths
