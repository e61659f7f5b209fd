"""The catalogue of conceptual diagrams: each one's name, title, alt text and drawing function.

A drawing module registers its diagrams with `@register(...)`; `llmcourse.course.diagrams` shows
them. The alt text is written for someone who cannot see the picture: it says what the diagram
shows, in the order a reader's eye would follow it, in one to three sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Diagram:
    name: str  # the key notebooks use: diagrams.show("gpt_block")
    title: str  # the caption under the picture
    alt: str  # what the picture shows, for a screen reader and for a text-only output
    draw: Callable[[], Any]  # draws and returns a matplotlib Figure
    notebook: str  # the two-digit number of the notebook that teaches it


DIAGRAMS: dict[str, Diagram] = {}


def register(name: str, *, title: str, alt: str, notebook: str) -> Callable:
    """Decorator: record a drawing function under `name` with its caption and alt text."""

    def wrap(draw: Callable[[], Any]) -> Callable[[], Any]:
        if name in DIAGRAMS:
            raise ValueError(f"diagram {name!r} is registered twice")
        if len(alt.strip()) < 40:
            raise ValueError(f"diagram {name!r}: write an alt text that says what it shows")
        DIAGRAMS[name] = Diagram(name, title, alt.strip(), draw, notebook)
        return draw

    return wrap
