"""The drawing kit of the course's conceptual diagrams: one style for every figure.

A diagram is drawn with matplotlib on a canvas measured in abstract units (x to the right, y up),
from four primitives: `box` (a rounded block, coloured by its role), `arrow`, `text` and `group`
(a dashed frame around related blocks). Roles, not colours, are chosen by the caller, so the
whole course keeps one legend: data is green, a model block blue, a trained part red, a frozen
part grey, a loss or an objective orange, an operation white.

Every diagram sits on an opaque white card with a thin border, so it reads the same on a light
and a dark notebook theme (Colab's dark theme leaves images as they are). Left out: automatic
layout; each diagram places its blocks by hand, which keeps the code close to the picture.
Every word goes through `figure_text.translate`, so the Chinese edition draws the same diagram in
Chinese (llmcourse/course/figure_text_zh/diagrams.tsv).
"""

from __future__ import annotations

from typing import Any

from llmcourse.course.figure_text import translate  # the zh edition draws every word in Chinese

# (fill, edge) per role; the fills are light enough for dark text, the edges dark enough to
# outline the block on white
ROLES: dict[str, tuple[str, str]] = {
    "data": ("#e3f1dc", "#3f7a2e"),
    "model": ("#dce9f7", "#2d5f8b"),
    "train": ("#f8d8d5", "#a3362c"),
    "frozen": ("#e8e8e8", "#6b6b6b"),
    "loss": ("#fde3c6", "#b35c00"),
    "op": ("#ffffff", "#444444"),
    "note": ("#fff8d6", "#9a7d0a"),
}
INK = "#1f1f1f"  # text and arrows
MUTED = "#5a5a5a"  # secondary text
FONT = 10  # points, the body text of every block
UNIT = 0.55  # inches per canvas unit: a 16-unit-wide diagram is 8.8 in wide


def canvas(width: float, height: float, *, title: str | None = None) -> tuple[Any, Any]:
    """A new figure of `width` x `height` units on a white card; returns (fig, ax).

    >>> fig, ax = canvas(10, 4, title="A block")
    """
    import matplotlib.pyplot as plt

    extra = 0.7 if title else 0.0
    fig = plt.figure(figsize=(width * UNIT, (height + extra) * UNIT), facecolor="white")
    ax = fig.add_axes((0, 0, 1, height / (height + extra)))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_facecolor("white")
    # the card's border, in figure coordinates
    fig.patches.append(
        plt.Rectangle(
            (0.003, 0.003),
            0.994,
            0.994,
            transform=fig.transFigure,
            fill=False,
            edgecolor="#b0b0b0",
            linewidth=1.0,
        )
    )
    if title:
        fig.text(
            0.5,
            1 - 0.45 * extra / (height + extra),
            translate(title),
            ha="center",
            va="center",
            fontsize=FONT + 2,
            fontweight="bold",
            color=INK,
        )
    return fig, ax


def box(
    ax: Any,
    xy: tuple[float, float],
    size: tuple[float, float],
    text: str = "",
    *,
    role: str = "model",
    fontsize: float = FONT,
    bold: bool = False,
    dashed: bool = False,
) -> tuple[float, float, float, float]:
    """A rounded block with its lower-left corner at `xy` and `size` = (w, h); returns (x, y, w, h).

    `role` picks the colours (`ROLES`); the text is centred and may hold line breaks.
    """
    from matplotlib.patches import FancyBboxPatch

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: use one of {sorted(ROLES)}")
    fill, edge = ROLES[role]
    (x, y), (w, h) = xy, size
    pad = min(0.12, w / 6, h / 6)
    ax.add_patch(
        FancyBboxPatch(
            (x + pad, y + pad),
            w - 2 * pad,
            h - 2 * pad,
            boxstyle=f"round,pad={pad}",
            facecolor=fill,
            edgecolor=edge,
            linewidth=1.4,
            linestyle="--" if dashed else "-",
        )
    )
    if text:
        ax.text(
            x + w / 2,
            y + h / 2,
            translate(text),
            ha="center",
            va="center",
            fontsize=fontsize,
            color=INK,
            fontweight="bold" if bold else "normal",
            linespacing=1.25,
        )
    return (x, y, w, h)


def arrow(
    ax: Any,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    text: str | None = None,
    color: str = INK,
    curve: float = 0.0,
    dashed: bool = False,
    both: bool = False,
) -> None:
    """An arrow from `start` to `end` (bent by `curve`, a fraction), with an optional label beside it."""
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle="<|-|>" if both else "-|>",
            mutation_scale=12,
            color=color,
            linewidth=1.3,
            linestyle="--" if dashed else "-",
            connectionstyle=f"arc3,rad={curve}",
            shrinkA=2,
            shrinkB=2,
        )
    )
    if text:
        text = translate(text)
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        if abs(end[0] - start[0]) >= abs(end[1] - start[1]):  # mostly horizontal: label above
            ax.text(mx, my + 0.12, text, ha="center", va="bottom", fontsize=FONT - 1, color=MUTED)
        else:  # mostly vertical: label to the right
            ax.text(mx + 0.12, my, text, ha="left", va="center", fontsize=FONT - 1, color=MUTED)


def text(
    ax: Any,
    xy: tuple[float, float],
    s: str,
    *,
    size: float = FONT,
    color: str = INK,
    ha: str = "center",
    va: str = "center",
    bold: bool = False,
    italic: bool = False,
    rotation: float = 0.0,
) -> None:
    """Free text at `xy` (a label, a formula, a caption inside the canvas), turned by `rotation`°."""
    ax.text(
        xy[0],
        xy[1],
        translate(s),
        ha=ha,
        va=va,
        fontsize=size,
        color=color,
        linespacing=1.25,
        fontweight="bold" if bold else "normal",
        fontstyle="italic" if italic else "normal",
        rotation=rotation,
    )


def group(
    ax: Any,
    xy: tuple[float, float],
    size: tuple[float, float],
    title: str = "",
    *,
    color: str = MUTED,
) -> None:
    """A dashed frame around related blocks, its title at the top left (e.g. "× N layers")."""
    from matplotlib.patches import FancyBboxPatch

    (x, y), (w, h) = xy, size
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            w,
            h,
            boxstyle="round,pad=0.05",
            fill=False,
            edgecolor=color,
            linewidth=1.1,
            linestyle=(0, (4, 3)),
        )
    )
    if title:
        ax.text(
            x + 0.15,
            y + h - 0.12,
            translate(title),
            ha="left",
            va="top",
            fontsize=FONT - 1,
            color=color,
            fontstyle="italic",
        )


def legend(
    ax: Any, xy: tuple[float, float], roles: list[str], *, labels: dict | None = None
) -> None:
    """A row of small swatches naming the roles a diagram uses, starting at `xy`."""
    names = {
        "data": "data",
        "model": "model block",
        "train": "trained",
        "frozen": "frozen",
        "loss": "loss / objective",
        "op": "operation",
        "note": "note",
    }
    names.update(labels or {})
    x, y = xy
    for role in roles:
        box(ax, (x, y), (0.5, 0.4), role=role)
        name = translate(names[role])
        ax.text(x + 0.6, y + 0.2, name, ha="left", va="center", fontsize=FONT - 2, color=MUTED)
        x += 1.0 + 0.13 * len(name) * (
            2 if name != names[role] else 1
        )  # a CJK glyph: ~2 Latin widths
