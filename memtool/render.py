"""Rich renderables for everything memtool shows: training progress, metric tables, attention views.

The CLI prints what these return; nothing here trains or computes a metric.
"""

from __future__ import annotations

import functools
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from memtool.tasks.base import EvalResult
from memtool.views import AttentionView


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def metrics_table(result: EvalResult, title: str) -> RenderableType:
    overall = Table(title=title, show_header=True, header_style="bold")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    for name, value in result.metrics.items():
        label = f"{name} (%)" if name in ("error", "mean_task_error") else name
        overall.add_row(label, _number(value))
    return Group(overall, group_table(result)) if result.groups else overall


def group_table(result: EvalResult) -> Table:
    """One row per group (bAbI task), errors above 5% in red: the paper's "failed task" line."""
    groups = Table(title=result.group_label.replace("_", " "), header_style="bold")
    groups.add_column("task", justify="right")
    for name in ("error (%)", "loss", "examples"):
        groups.add_column(name, justify="right")
    for key, metrics in result.groups.items():
        error = metrics["error"]
        style = "red" if error > 5.0 else "green"
        groups.add_row(
            key, Text(f"{error:.1f}", style=style), _number(metrics["loss"]), str(metrics["examples"])
        )
    return groups


def _shade(weight: float) -> str:
    """White → deep blue as the weight goes 0 → 1, so a glance finds where the model looked."""
    level = max(0.0, min(1.0, weight))
    red = int(255 - 200 * level)
    green = int(255 - 150 * level)
    ink = "white" if level > 0.5 else "black"
    return f"{ink} on rgb({red},{green},255)"


def attention_view(view: AttentionView) -> RenderableType:
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
        cells = [Text(f"{w:.2f}", style=_shade(w)) for w in weights]
        marker = Text("★", style="bold yellow") if index in supporting else ""
        table.add_row(label, marker, Text(text), *cells)  # Text: a story's "[word]" is not markup
    if view.empty_slots is not None:
        cells = [Text(f"{w:.2f}", style=_shade(w)) for w in view.empty_slots]
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


@functools.singledispatch
def view_renderable(view: Any) -> RenderableType:
    raise TypeError(f"no renderer for {type(view).__name__}")


view_renderable.register(AttentionView, attention_view)


def summary_renderable(summary: Any) -> RenderableType:
    table = Table(title=f"run {summary.run_dir}", header_style="bold", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("best restart", f"{summary.best_restart + 1} (seed {summary.seed + summary.best_restart})")
    table.add_row("best validation error (%)", _number(summary.best_valid_error))
    table.add_row("test error (%)", _number(summary.test.metrics["error"]))
    for key in ("mean_task_error", "failed_tasks"):
        if key in summary.test.metrics:
            label = "test mean task error (%)" if key == "mean_task_error" else "failed tasks (error > 5%)"
            table.add_row(label, _number(summary.test.metrics[key]))
    table.add_row("optimizer steps (last restart)", str(summary.steps))
    table.add_row("wall time", f"{summary.train_seconds:.1f} s")
    parts: list[RenderableType] = [table]
    if summary.test.groups:
        parts.append(group_table(summary.test))
    return Group(*parts)


class TrainProgress:
    """The engine's observer: a progress bar per epoch and one line per validation."""

    def __init__(self, console: Console, refresh_every: int = 10) -> None:
        self.console = console
        self.refresh_every = refresh_every
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f} · accuracy {task.fields[accuracy]:5.1f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.bar: Any = None
        self.live = False
        self.restarts = 1
        self.loss = 0.0

    def started(self, config: Any, task: Any, model: Any, device: Any, resumed: bool) -> None:
        self.restarts = config.train.restarts
        parameters = sum(p.numel() for p in model.parameters())
        sizes = " / ".join(f"{task.split_size(name)} {name}" for name in ("train", "valid", "test"))
        verb = "resuming" if resumed else "training"
        self.console.print(
            f"[bold]{verb}[/] {config.model.name} on {config.task.name} · {parameters:,} params · "
            f"{sizes} · {device}"
        )
        restart = f"{'restart':>7} " if self.restarts > 1 else ""
        self.console.print(
            f"[bold]{restart}{'epoch':>5} {'phase':6} {'lr':>8}  {'train loss':>10} {'err %':>6}  "
            f"{'valid loss':>10} {'err %':>6} {'time':>7}[/]"
        )
        self.progress.start()
        self.live = True

    def epoch_started(self, progress: Any, batches: int, lr: float) -> None:
        restart = f"restart {progress.restart + 1}/{self.restarts} · " if self.restarts > 1 else ""
        description = f"{restart}epoch {progress.epoch + 1} {progress.phase} lr {lr:g}"
        if self.bar is not None:
            self.progress.remove_task(self.bar)
        self.bar = self.progress.add_task(
            description, total=batches, completed=progress.batches_done, loss=self.loss, accuracy=0.0
        )

    def stepped(self, progress: Any, loss: float) -> None:
        self.loss = 0.9 * self.loss + 0.1 * loss if self.loss else loss
        if progress.batches_done % self.refresh_every == 0:
            accuracy = 100 * (1 - progress.epoch_wrong / max(progress.epoch_examples, 1))
            self.progress.update(self.bar, completed=progress.batches_done, loss=self.loss, accuracy=accuracy)

    def evaluated(self, record: Any) -> None:
        restart = f"{record.restart + 1:>7} " if self.restarts > 1 else ""
        self.console.print(
            f"{restart}{record.epoch:5d} {record.phase:6} {record.lr:8.4g}  "
            f"{record.train_loss:10.3f} {record.train_error:6.1f}  "
            f"{record.valid_loss:10.3f} {record.valid_error:6.1f} {record.elapsed:6.0f}s"
        )

    def message(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/]")

    def close(self) -> None:
        if self.live:
            self.progress.stop()
            self.live = False
