"""The attention of a memory network over a bAbI story as a PNG figure, like Fig. 2 of the MemN2N paper.

Rows are the story's sentences (supporting facts starred), columns are hops, each cell holds the attention
weight; the question, the prediction and the top answers are written below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memtool.figures import require_matplotlib, view_figure
from memtool.tasks.babi.view import AttentionView

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_LABEL_CHARS = 90  # longer sentences are cut with "…" so the figure stays printable
SUPPORTING_COLOUR = "#c05800"
UNUSED_ROW = "(unused memory slots)"
VALUE_INDENT = 1.2  # inches from a line's name ("question:") to its value


def _label(number: str, text: str, supporting: bool) -> str:
    text = text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"
    return f"{'★ ' if supporting else ''}{number}  {text}"


def _verdict(view: AttentionView) -> tuple[str, str]:
    """The predicted answer with ✓ or ✗ against the known answer, and the colour to write it in."""
    if view.answer is None:
        return view.predicted, "black"
    right = view.predicted.strip().lower() == view.answer.strip().lower()
    return (f"{view.predicted}  ✓", "green") if right else (f"{view.predicted}  ✗", "red")


def attention_figure(view: AttentionView) -> Figure:
    """One heatmap: memories × hops, each cell's weight printed, the question and answers below it."""
    plt = require_matplotlib()
    import numpy as np
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    supporting = set(view.supporting)
    labels = [
        _label(number, text, index in supporting)
        for index, (number, text) in enumerate(zip(view.memory_labels, view.memories, strict=True))
    ]
    rows = [list(weights) for weights in view.attention]
    if view.empty_slots is not None:
        labels.append(UNUSED_ROW)
        rows.append(list(view.empty_slots))
    hops = max((len(row) for row in rows), default=0)
    values = np.full((len(rows), max(hops, 1)), np.nan)
    for index, row in enumerate(rows):
        values[index, : len(row)] = row

    lines = [("question", view.question, "black"), ("predicted", *_verdict(view))]
    if view.answer is not None:
        lines.append(("answer", view.answer, "black"))
    if view.top_answers:
        top = "   ".join(f"{word} {score:.2f}" for word, score in view.top_answers)
        lines.append(("top answers", top, "black"))
    footer = (["★ supporting fact"] if supporting else []) + list(view.notes)

    label_width = 0.065 * max((len(label) for label in labels), default=10) + 0.4  # inches at 9 pt
    text_width = max(
        [0.085 * len(value) + VALUE_INDENT for _, value, _ in lines] + [0.065 * len(t) for t in footer]
    )
    width = min(24.0, max(4.5, label_width + 0.75 * max(hops, 1) + 1.6, text_width + 0.5))
    table_height = 0.3 * len(rows) + 0.9
    text_height = 0.25 * len(lines) + 0.2 * len(footer) + 0.3
    figure = plt.figure(figsize=(width, table_height + text_height + 0.5), layout="constrained")
    grid = figure.add_gridspec(2, 1, height_ratios=[table_height, text_height])
    axes = figure.add_subplot(grid[0])
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    axes.set_xticks(range(hops), [f"hop {hop + 1}" for hop in range(hops)], fontsize=9)
    axes.xaxis.tick_top()
    axes.set_yticks(range(len(labels)), labels, fontsize=9)
    axes.tick_params(length=0)
    for index, tick in enumerate(axes.get_yticklabels()):
        if index in supporting:
            tick.set_color(SUPPORTING_COLOUR)
            tick.set_fontweight("bold")
        elif view.empty_slots is not None and index == len(labels) - 1:
            tick.set_color("gray")
            tick.set_fontstyle("italic")
    for (row, hop), value in np.ndenumerate(values):
        if not np.isnan(value):
            ink = "white" if value > 0.5 else "black"
            axes.text(hop, row, f"{value:.2f}", ha="center", va="center", fontsize=8, color=ink)
    if view.empty_slots is not None and len(rows) > 1:
        axes.axhline(len(rows) - 1.5, color="gray", linewidth=0.8)
    axes.set_xticks([x - 0.5 for x in range(1, hops)], minor=True)
    axes.set_yticks([y - 0.5 for y in range(1, len(rows))], minor=True)
    axes.grid(which="minor", color="white", linewidth=0.6)
    axes.tick_params(which="minor", length=0)
    figure.colorbar(image, ax=axes, fraction=0.05, pad=0.02, label="attention")
    figure.suptitle(view.title, fontsize=12)

    text_axes = figure.add_subplot(grid[1])
    text_axes.set_axis_off()
    # x in inches from the figure's left edge (the sentences' labels start there too), y in the text axes
    left = blended_transform_factory(figure.transFigure, text_axes.transAxes)
    name_at = left + ScaledTranslation(0.15, 0, figure.dpi_scale_trans)
    value_at = left + ScaledTranslation(0.15 + VALUE_INDENT, 0, figure.dpi_scale_trans)
    step = 1.0 / max(len(lines) + len(footer), 1)
    for index, (name, value, colour) in enumerate(lines):
        y = 1.0 - index * step
        text_axes.text(0, y, f"{name}:", fontsize=10, fontweight="bold", va="top", transform=name_at)
        text_axes.text(0, y, value, fontsize=10, color=colour, va="top", transform=value_at)
    for index, text in enumerate(footer, start=len(lines)):
        y = 1.0 - index * step
        text_axes.text(0, y, text, fontsize=8, color="dimgray", va="top", transform=name_at)
    for text in text_axes.texts:
        text.set_in_layout(False)
    return figure


view_figure.register(AttentionView, attention_figure)
