"""Matplotlib figures (PNG) for what memtool shows: views from ``inspect-memory`` and learning curves.

Matplotlib is optional (``pip install 'memtool[plot]'``) and imported only when a figure is drawn, always
with the non-interactive Agg backend. A family registers a figure for its own view class on ``view_figure``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memtool.errors import UserError
from memtool.views import Heatmap, HeatmapView, ImageStrip

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_TICK_LABELS = 40
MAX_VALUE_COLUMNS = 40  # a panel's numbers are written in its cells up to this many columns; more overlap


def require_matplotlib() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; a ``UserError`` naming the install command if missing."""
    try:
        import matplotlib
    except ImportError as error:
        raise UserError(
            "drawing figures needs matplotlib; install it with: pip install 'memtool[plot]'"
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Figure, path: Path, dpi: int = 120) -> Path:
    """Write ``figure`` to ``path`` as PNG (atomically: temp file, then rename) and close it."""
    plt = require_matplotlib()
    path = Path(path)
    if path.suffix.lower() != ".png":  # never turn a config or a story into a picture
        plt.close(figure)
        raise UserError(f"--png {path}: the file name must end in .png")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(temporary, format="png", dpi=dpi)
        os.replace(temporary, path)
    except OSError as error:
        raise UserError(f"--png {path}: cannot write it: {error.strerror or error}") from None
    finally:
        plt.close(figure)
        with contextlib.suppress(OSError):  # nothing to clean when the folder itself is unusable
            temporary.unlink(missing_ok=True)
    return path


@functools.singledispatch
def view_figure(view: Any) -> Figure:
    """The figure of one view; each view class registers its own."""
    raise UserError(f"no figure for a {type(view).__name__}")


def tick_positions(count: int, limit: int = MAX_TICK_LABELS) -> list[int]:
    """Every index when there are at most ``limit``, else every k-th one (about ``limit / 2`` of them)."""
    step = 1 if count <= limit else math.ceil(count / (limit // 2))
    return list(range(0, count, step))


def _wrapped(figure: Figure, title: str) -> str:
    """A panel title broken into lines that fit the figure's width (about 11 characters an inch)."""
    import textwrap

    return "\n".join(textwrap.wrap(title, max(20, int(figure.get_figwidth() * 11)))) or title


def _draw_heatmap(figure: Figure, axes: Axes, panel: Heatmap) -> None:
    import numpy as np

    values = np.array(panel.values, dtype=float).reshape(len(panel.rows), len(panel.columns))
    own = (float(np.nanmin(values)), float(np.nanmax(values))) if np.isfinite(values).any() else (0.0, 1.0)
    low, high = panel.value_range if panel.value_range is not None else own
    colours = "Blues"
    if low < 0 < high:  # signed values (memory, add vectors, a priority): white at 0, red and blue apart
        reach = max(-low, high)
        low, high, colours = -reach, reach, "RdBu_r"
    image = axes.imshow(values, cmap=colours, aspect="auto", interpolation="nearest", vmin=low, vmax=high)
    axes.set_title(_wrapped(figure, panel.title), fontsize=10, loc="left")
    rows, columns = tick_positions(len(panel.rows)), tick_positions(len(panel.columns))
    axes.set_yticks(rows, [panel.rows[i] for i in rows], fontsize=7)
    axes.set_xticks(columns, [panel.columns[i] for i in columns], fontsize=7)
    axes.tick_params(length=2)
    if len(panel.columns) > 12 or max((len(c) for c in panel.columns), default=0) > 4:
        axes.tick_params(axis="x", labelrotation=90)
    figure.colorbar(image, ax=axes, fraction=0.04, pad=0.02, shrink=0.9)
    if panel.show_values and len(panel.columns) <= MAX_VALUE_COLUMNS:
        for (r, c), value in np.ndenumerate(values):  # white on the dark part of the scale
            share = (value - low) / (high - low) if high > low else 0.0
            dark = abs(share - 0.5) > 0.3 if colours == "RdBu_r" else share > 0.5
            color = "white" if dark else "black"
            axes.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    if panel.marks is None:
        return
    flagged = [(r, c) for r, row in enumerate(panel.marks) for c, mark in enumerate(row) if mark]
    if not flagged:
        return
    big = values.size <= 1600
    if big:  # big cells: outlined as well as crossed
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle

        boxes = [Rectangle((c - 0.5, r - 0.5), 1, 1) for r, c in flagged]
        axes.add_collection(PatchCollection(boxes, facecolor="none", edgecolor="red", linewidth=1.5))
    # the cross the terminal view and the panel titles call ✗; on tiny cells an outline would hide the cell
    axes.scatter(
        [c for _, c in flagged],
        [r for r, _ in flagged],
        marker="x",
        color="red",
        s=30 if big else 12,
        linewidths=1.2 if big else 0.8,
    )


def _draw_strip(figure: Figure, axes: Axes, strip: ImageStrip) -> None:
    """The pictures side by side in one axes, picture i over x = i, so each sits above its column of
    the heatmaps below (an invisible colour bar takes the heatmaps' colour-bar room)."""
    import numpy as np
    from matplotlib.cm import ScalarMappable
    from matplotlib.patches import Rectangle

    for index, image in enumerate(strip.images):
        pixels = np.clip(np.array(image, dtype=float), 0, 1)
        axes.imshow(pixels, extent=(index - 0.45, index + 0.45, 0.45, -0.45), interpolation="nearest")
        # an outline, so that white at a picture's edge (the slideshow's progress bar) stays on the page
        axes.add_patch(
            Rectangle((index - 0.45, -0.45), 0.9, 0.9, fill=False, edgecolor="0.55", linewidth=0.8)
        )
    axes.set_xlim(-0.5, len(strip.images) - 0.5)
    axes.set_ylim(0.5, -0.5)
    axes.set_aspect("auto")
    ticks = tick_positions(len(strip.labels))
    axes.set_xticks(ticks, [strip.labels[i] for i in ticks], fontsize=7)
    axes.set_yticks([])
    axes.tick_params(length=0)
    for side in axes.spines.values():
        side.set_visible(False)
    axes.set_title(strip.title, fontsize=10, loc="left")
    spacer = figure.colorbar(ScalarMappable(), ax=axes, fraction=0.04, pad=0.02, shrink=0.9)
    spacer.ax.set_visible(False)


@view_figure.register(HeatmapView)
def heatmap_figure(view: HeatmapView) -> Figure:
    plt = require_matplotlib()
    columns = max((len(p.columns) for p in view.panels), default=1)
    label_chars = max((len(r) for p in view.panels for r in p.rows), default=4)
    pictures = max((len(s.images) for s in view.strips), default=0)
    width = min(16.0, max(6.0, 0.3 * columns + 0.08 * label_chars + 2.0, 1.1 * pictures + 2.0))
    # a strip's pictures are about square: its height follows the width each picture gets
    strip_heights = [min(3.0, 0.75 * width / max(len(s.images), 1) + 0.4) for s in view.strips]
    heights = [min(8.0, max(1.6, 0.28 * len(p.rows) + 1.0)) for p in view.panels] or [1.0]
    notes_height = 0.2 * len(view.notes) + 0.1 if view.notes else 0.0
    total = sum(strip_heights) + sum(heights) + notes_height + 0.6
    figure = plt.figure(figsize=(width, total), layout="constrained")
    ratios = [*strip_heights, *heights, max(notes_height, 0.01)]
    grid = figure.add_gridspec(len(ratios), 1, height_ratios=ratios)
    for index, strip in enumerate(view.strips):
        _draw_strip(figure, figure.add_subplot(grid[index]), strip)
    for index, panel in enumerate(view.panels, start=len(view.strips)):
        axes = figure.add_subplot(grid[index])
        if panel.rows and panel.columns:
            _draw_heatmap(figure, axes, panel)
        else:
            axes.set_axis_off()
            axes.set_title(f"{panel.title} (empty)", fontsize=10, loc="left")
    figure.suptitle(view.title, fontsize=12)
    notes = figure.add_subplot(grid[-1])
    notes.set_axis_off()
    if view.notes:
        notes.text(0, 1, "\n".join(view.notes), va="top", ha="left", fontsize=8, color="dimgray")
    return figure


@dataclass
class CurveRun:
    """One run's validation records (the JSON objects of its ``metrics.jsonl``), shown under ``label``."""

    label: str
    records: list[dict[str, Any]]


@dataclass
class CurveMetric:
    """A metric to plot from the records' ``train_<name>`` and ``valid_<name>`` keys."""

    name: str
    label: str
    higher_is_better: bool = False


def _points(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    steps: list[float] = []
    values: list[float] = []
    for record in records:
        step, value = record.get("step"), record.get(key)
        if step is not None and value is not None and math.isfinite(float(value)):
            steps.append(float(step))
            values.append(float(value))
    return steps, values


def _phase_changes(records: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """(step, new phase) where the phase changes: at the last step of the phase that ended."""
    changes = []
    for before, after in itertools.pairwise(records):
        if before.get("phase") != after.get("phase") and before.get("step") is not None:
            changes.append((float(before["step"]), str(after.get("phase"))))
    return changes


def learning_curves_figure(runs: list[CurveRun], metrics: list[CurveMetric]) -> Figure:
    """Valid (solid) and train (dashed) curves per run and restart, one subplot per metric, x = steps."""
    plt = require_matplotlib()
    from matplotlib.lines import Line2D

    count = max(len(metrics), 1)
    figure, grid = plt.subplots(count, 1, sharex=True, squeeze=False, figsize=(8, 1.2 + 2.6 * count))
    figure.set_layout_engine("constrained")
    all_axes: list[Axes] = [row[0] for row in grid]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: list[Line2D] = []
    annotated: set[tuple[float, str]] = set()
    plotted: dict[str, list[float]] = {metric.name: [] for metric in metrics}
    colour_index = 0
    for run in runs:
        restarts: dict[int, list[dict[str, Any]]] = {}
        for record in run.records:
            restarts.setdefault(int(record.get("restart", 0)), []).append(record)
        for restart, records in sorted(restarts.items()):
            colour = colours[colour_index % len(colours)]
            colour_index += 1
            label = run.label if len(restarts) == 1 else f"{run.label} · restart {restart + 1}"
            handles.append(Line2D([], [], color=colour, marker="o", markersize=3, label=label))
            for axes, metric in zip(all_axes, metrics, strict=False):
                steps, values = _points(records, f"valid_{metric.name}")
                axes.plot(steps, values, "-o", color=colour, markersize=3, linewidth=1.4)
                plotted[metric.name] += values
                steps, values = _points(records, f"train_{metric.name}")
                single = "x" if len(values) == 1 else None  # a dashed line of one point draws nothing
                axes.plot(steps, values, "--", marker=single, color=colour, linewidth=1.0, alpha=0.8)
                plotted[metric.name] += values
            for step, phase in _phase_changes(records):
                for axes in all_axes:
                    axes.axvline(step, color=colour, linestyle=":", linewidth=1.0, alpha=0.8)
                if (step, phase) not in annotated:
                    annotated.add((step, phase))
                    all_axes[0].annotate(
                        f" {phase}", (step, 1.0), xycoords=("data", "axes fraction"), va="top",
                        fontsize=7, color="dimgray",
                    )  # fmt: skip
    for axes, metric in zip(all_axes, metrics, strict=False):
        better = "higher" if metric.higher_is_better else "lower"
        axes.set_ylabel(f"{metric.label}\n({better} is better)", fontsize=9)
        axes.grid(True, alpha=0.3)
        values = plotted[metric.name]
        if metric.name == "loss" and values and min(values) > 0 and max(values) / min(values) > 10:
            axes.set_yscale("log")
    all_axes[-1].set_xlabel("optimizer steps")
    if any(plotted.values()):
        handles += [
            Line2D([], [], color="black", linestyle="-", label="valid"),
            Line2D([], [], color="black", linestyle="--", label="train"),
        ]
        all_axes[0].legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        all_axes[0].text(0.5, 0.5, "no data", ha="center", va="center", transform=all_axes[0].transAxes)
    figure.suptitle("learning curves", fontsize=12)
    return figure
