"""How a bAbI attention view is drawn: a rich table (sentences × hops, shaded) and a PNG figure."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from memtool.render import shade, view_renderable
from memtool.tasks.babi.view import AttentionView


@view_renderable.register
def attention_table(view: AttentionView) -> RenderableType:
    hops = len(view.attention[0]) if view.attention else 0
    table = Table(title=view.title, header_style="bold", show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("", width=1)
    table.add_column("memory")
    for hop in range(hops):
        table.add_column(f"hop {hop + 1}", justify="right")
    supporting = set(view.supporting)
    for index, (label, text, weights) in enumerate(
        zip(view.memory_labels, view.memories, view.attention, strict=True)
    ):
        cells = [Text(f"{w:.2f}", style=shade(w)) for w in weights]
        marker = Text("★", style="bold yellow") if index in supporting else ""
        table.add_row(label, marker, Text(text), *cells)  # Text: a story's "[word]" is not markup
    if view.empty_slots is not None:
        cells = [Text(f"{w:.2f}", style=shade(w)) for w in view.empty_slots]
        table.add_row("", "", Text("(unused memory slots)", style="dim"), *cells)
    verdict = ""
    if view.answer is not None:
        verdict = " ✓" if view.predicted == view.answer else " ✗"
    lines = [
        Text.assemble(("question  ", "bold"), view.question),
        Text.assemble(
            ("predicted ", "bold"),
            (view.predicted + verdict, "green" if verdict == " ✓" else "red" if verdict else ""),
        ),
    ]
    if view.answer is not None:
        lines.append(Text.assemble(("answer    ", "bold"), view.answer))
    lines.append(
        Text.assemble(("top 3     ", "bold"), ", ".join(f"{w} {p:.2f}" for w, p in view.top_answers))
    )
    if supporting:
        lines.append(Text("★ supporting fact", style="dim"))
    lines.extend(Text(note, style="yellow") for note in view.notes)
    return Group(table, *lines)
