"""What ``inspect-memory`` shows, as plain data: tasks build views, renderers draw them, ``--json`` dumps
them.

A family may define its own view class (kept beside the family) and register a table renderer and a figure
for it through ``memtool.render.view_renderable`` and ``memtool.figures.view_figure``. ``HeatmapView`` is
the shared one: any number of labelled matrices (attention or weightings over time × memory rows, a memory
matrix, inputs and outputs), which every family and plugin can return without writing a renderer;
``ImageStrip`` puts pictures (a video's frames) above them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InspectRequest:
    split: str = "test"
    example: int = 0  # index among the split's examples (after the task's own filters)
    options: Any = None  # the task's validated ``InspectOptions`` (a pydantic model), or None


@dataclass
class Heatmap:
    """One matrix with labelled rows and columns, e.g. a read weighting: time steps × memory rows."""

    title: str
    rows: list[str]  # row labels, top to bottom
    columns: list[str]  # column labels, left to right
    values: list[list[float]]  # (rows, columns)
    marks: list[list[bool]] | None = None  # cells to flag (e.g. wrong output bits), same shape as values
    value_range: tuple[float, float] | None = None  # colour scale; None: the values' own min and max
    show_values: bool = False  # write each value in its cell in pictures too (for a few cells to compare)


@dataclass
class ImageStrip:
    """A row of small RGB pictures, e.g. a video's frames, shown above a view's heatmaps so a column of
    attention can be read against the picture it attended to."""

    title: str
    labels: list[str]  # one per picture, e.g. "frame 3"
    images: list[list[list[list[float]]]]  # (pictures, height, width, 3), values in [0, 1]


@dataclass
class HeatmapView:
    """Several heatmaps about one example, shown one under the other, with lines of text below; optional
    picture strips above them."""

    title: str
    panels: list[Heatmap]
    notes: list[str] = field(default_factory=list)
    strips: list[ImageStrip] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # for --json: what the notes say, as values
