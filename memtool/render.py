"""Rich renderables for everything memtool shows: training progress, metric tables, views.

The CLI prints what these return; nothing here trains or computes a metric. Which metrics exist, how they
are labelled and what "failed" means come from the task's ``Scoring``. A family registers the table of its
own view type on ``view_renderable``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from rich.color import Color
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as ProgressBar
from rich.style import Style
from rich.table import Table
from rich.text import Text

from memtool.errors import UserError
from memtool.tasks.base import EvalResult, Metric, Scoring, training_metrics
from memtool.train_state import Summary, TrainState
from memtool.views import Heatmap, HeatmapView, ImageStrip


def missing(value: Any) -> bool:
    """None, or NaN: a share with nothing to count (no repeated words, say) shows as a dash."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: Any) -> str:
    if missing(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 0.01 or value == 0 else f"{value:.2e}"
    return str(value)


def _label(name: str, scoring: Scoring) -> str:
    known = {m.name: m.label for m in (scoring.select, *scoring.progress, *scoring.summary)}
    return known.get(name, name)


def metrics_table(result: EvalResult, title: str, scoring: Scoring) -> RenderableType:
    overall = Table(title=title, show_header=True, header_style="bold")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    for name, value in result.metrics.items():
        overall.add_row(_label(name, scoring), number(value))
    parts: list[RenderableType] = [overall]
    if result.note:
        parts.append(Text(result.note, style="dim"))
    if result.groups:
        parts.append(group_table(result, scoring))
    return Group(*parts) if len(parts) > 1 else overall


def group_table(result: EvalResult, scoring: Scoring) -> Table:
    """One row per group (e.g. a bAbI task, a sequence length); failed groups in red, others green."""
    groups = Table(title=scoring.group_key.replace("_", " "), header_style="bold")
    groups.add_column(scoring.group_label, justify="right")
    metrics = scoring.group_metrics or tuple(
        Metric(name, name) for name in next(iter(result.groups.values()), {})
    )
    for metric in metrics:
        groups.add_column(metric.label, justify="right")
    rule = scoring.failed
    for key, values in result.groups.items():
        cells: list[Any] = []
        for metric in metrics:
            value = values.get(metric.name)
            if rule is not None and metric.name == rule.metric and value is not None:
                style = "red" if rule.failed(value) else "green"
                cells.append(Text(f"{value:.{metric.decimals}f}", style=style))
            else:
                cells.append(number(value))
        groups.add_row(key, *cells)
    return groups


SHADE_GLYPHS = " ·░▒▓█"  # low → high, where a terminal shows no colours


def step_of(steps: tuple[str, ...] | str, level: float) -> str:
    """The step of an even light → dark scale that a level in [0, 1] falls on."""
    return steps[min(int(max(0.0, min(1.0, level)) * len(steps)), len(steps) - 1)]


def shade_glyph(level: float) -> str:
    """A level in [0, 1] as one of ``SHADE_GLYPHS``."""
    return step_of(SHADE_GLYPHS, level)


# a 16-colour terminal's own shades, light → dark, each with an ink that reads on it: rich would map the
# RGB ramp's middle to grey with the RGB ramp's white ink on it
SIXTEEN_COLOUR_SHADES = (
    "black on bright_white",
    "black on white",
    "black on bright_cyan",
    "bright_white on bright_blue",
    "bright_white on blue",
)


def shade(weight: float, low: float = 0.0, high: float = 1.0, sixteen_colours: bool = False) -> str:
    """White → deep blue as the weight goes low → high, so a glance finds where the model looked."""
    level = 0.0 if high <= low else max(0.0, min(1.0, (weight - low) / (high - low)))
    if sixteen_colours:
        return step_of(SIXTEEN_COLOUR_SHADES, level)
    red = int(255 - 200 * level)
    green = int(255 - 150 * level)
    ink = "white" if level > 0.5 else "black"
    return f"{ink} on rgb({red},{green},255)"


@functools.singledispatch
def view_renderable(view: Any) -> RenderableType:
    """The table of one view; each view class registers its own (``HeatmapView`` is registered here)."""
    raise UserError(f"no table for a {type(view).__name__}: a task's inspect() returns a registered view")


class HeatmapPanel:
    """One heatmap: a table of shaded values when it fits the terminal, else one shaded cell per value
    (the numbers are in ``--json``), so a 113-step weighting still reads as a picture."""

    VALUE = 5  # characters a value takes in the full table: "0.83✗"

    def __init__(self, panel: Heatmap) -> None:
        self.panel = panel
        flat = [v for row in panel.values for v in row]
        self.low, self.high = panel.value_range or ((min(flat), max(flat)) if flat else (0.0, 1.0))

    def _marks(self, index: int, row: list[float]) -> list[bool]:
        return self.panel.marks[index] if self.panel.marks else [False] * len(row)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        panel = self.panel
        label_width = max((len(label) for label in panel.rows), default=0)
        sixteen = console.color_system in ("standard", "windows")  # rich names the system
        # each column as wide as its header or a value, plus rich's padding (2) and border (1): a table
        # squeezed below that cuts its numbers to "0.…"; headers "frame 1" … "frame 8" shrink to 1 … 8
        # first (the title names them), and where even that does not fit, the values become cells
        tables = [(panel.columns, panel.title)]
        short, word = short_headers(panel.columns)
        if word is not None:
            tables.append((short, f"{panel.title} · columns: {word}"))
        for headers, title in tables:
            if (
                label_width + 4 + sum(max(len(header), self.VALUE) + 3 for header in headers)
                <= options.max_width
            ):
                yield self._table(sixteen, headers, title)
                return
        yield Text(f"{panel.title} (one cell per value, dark = high; the numbers: --json)", style="italic")
        ticks = [" "] * len(panel.columns)
        for index in range(0, len(panel.columns), 5):  # a column label every 5 cells, where it fits
            label = panel.columns[index]
            if index + len(label) <= len(ticks):
                ticks[index : index + len(label)] = list(label)
        yield Text(" " * (label_width + 1) + "".join(ticks), style="dim")
        plain = console.color_system is None or console.no_color  # piped or NO_COLOR: glyphs carry the shade
        for index, (label, row) in enumerate(zip(panel.rows, panel.values, strict=True)):
            line = Text(label.rjust(label_width) + " ", style="dim")
            for value, marked in zip(row, self._marks(index, row), strict=True):
                style = "bold red on white" if marked else self._shade(value, sixteen)
                line.append("✗" if marked else (self._glyph(value) if plain else " "), style=style)
            yield line

    def _glyph(self, value: float) -> str:
        """The shade as a character, light to dark, for output without colours."""
        span = self.high - self.low
        return shade_glyph(0.0 if span <= 0 else (value - self.low) / span)

    def _shade(self, value: float, sixteen_colours: bool) -> str:
        return shade(value, self.low, self.high, sixteen_colours)

    def _table(self, sixteen_colours: bool, headers: list[str], title: str) -> Table:
        panel = self.panel
        table = Table(title=title, header_style="bold")
        table.add_column("", style="dim")
        for header in headers:
            table.add_column(header, justify="right")
        for index, (label, row) in enumerate(zip(panel.rows, panel.values, strict=True)):
            cells = [
                Text(
                    f"{v:.2f}{'✗' if marked else ''}",
                    style="bold red" if marked else self._shade(v, sixteen_colours),
                )
                for v, marked in zip(row, self._marks(index, row), strict=True)
            ]
            table.add_row(label, *cells)
        return table


def short_headers(columns: list[str]) -> tuple[list[str], str | None]:
    """Column headers without the word they share ("frame 1" … → "1" …, and "frame"); as they are,
    and None, where they share none."""
    first = columns[0].rpartition(" ")[0] if columns else ""
    if first and all(column.startswith(first + " ") for column in columns):
        return [column[len(first) + 1 :] for column in columns], first
    return columns, None


def thumbnail(image: list[list[list[float]]], size: int) -> list[list[tuple[int, int, int]]]:
    """An (H, W, 3) picture in [0, 1] shrunk to ``size`` × ``size`` RGB bytes, each pixel the brightest
    of its block (a mean would fade a small shape into the background)."""
    height, width = len(image), len(image[0]) if image else 0
    cells: list[list[tuple[int, int, int]]] = []
    for row in range(size):
        top, bottom = row * height // size, max(row * height // size + 1, (row + 1) * height // size)
        line = []
        for column in range(size):
            left = column * width // size
            right = max(left + 1, (column + 1) * width // size)
            block = [image[y][x] for y in range(top, bottom) for x in range(left, right)]
            brightest = max(block, key=sum) if block else [0.0, 0.0, 0.0]
            line.append(tuple(int(255 * max(0.0, min(1.0, v))) for v in brightest[:3]))  # type: ignore[misc]
        cells.append(line)
    return cells


class ImageStripPanel:
    """Pictures side by side in the terminal, two pixel rows per text line (▀ in the top pixel's colour
    on the bottom pixel's), as wide as the terminal allows."""

    SMALLEST = 4  # characters a picture needs to be worth drawing

    def __init__(self, strip: ImageStrip) -> None:
        self.strip = strip

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        strip = self.strip
        total = len(strip.images)
        # pictures and the one-character gaps between them must fit the width
        fits = max(1, (options.max_width + 1) // (self.SMALLEST + 1))
        shown = min(total, fits)
        size = max(self.SMALLEST, min(12, (options.max_width + 1) // max(shown, 1) - 1) // 2 * 2)
        title = strip.title if shown == total else f"{strip.title} (the first {shown} of {total}; all: --png)"
        yield Text(title, style="bold")
        labels = strip.labels[:shown]
        if any(len(label) > size for label in labels):
            labels = [str(index + 1) for index in range(shown)]  # "frame 12" does not fit: "12"
        yield Text(" ".join(label[:size].ljust(size) for label in labels), style="dim")
        pictures = [thumbnail(image, size) for image in strip.images[:shown]]
        plain = console.color_system is None or console.no_color  # piped or NO_COLOR: glyphs carry the light
        for row in range(0, size, 2):
            line = Text()
            for index, picture in enumerate(pictures):
                if index:
                    line.append(" ")
                for top, bottom in zip(picture[row], picture[row + 1], strict=True):
                    if plain:  # the brighter pixel's brightest channel: pure red is as bright as white
                        line.append(shade_glyph(max(*top, *bottom) / 255))
                    else:
                        line.append(
                            "▀", style=Style(color=Color.from_rgb(*top), bgcolor=Color.from_rgb(*bottom))
                        )
            yield line


@view_renderable.register
def heatmap_tables(view: HeatmapView) -> RenderableType:
    """Picture strips, then each panel as a shaded table (or shaded cells when too wide); marked cells get
    a red ✗."""
    title = Text(view.title, style="bold")
    strips = [ImageStripPanel(strip) for strip in view.strips]
    panels = [HeatmapPanel(panel) for panel in view.panels]
    return Group(title, *strips, *panels, *(Text(note, style="yellow") for note in view.notes))


def summary_renderable(summary: Summary, scoring: Scoring) -> RenderableType:
    table = Table(title=f"run {summary.run_dir}", header_style="bold", show_header=False)
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row("best restart", f"{summary.best_restart + 1} (seed {summary.seed + summary.best_restart})")
    table.add_row(f"best validation {scoring.select.label}", number(summary.best_valid))
    table.add_row(f"test {scoring.select.label}", number(summary.test.metrics.get(scoring.select.name)))
    for metric in scoring.summary:
        if metric.name in summary.test.metrics:
            table.add_row(f"test {metric.label}", number(summary.test.metrics[metric.name]))
    if summary.target is not None:
        kept, noun = summary.target["kept"], summary.target["examples_noun"]
        reached = f"after {kept['examples']:,} {noun} ({kept['seconds']:.0f} s)" if kept else "not reached"
        table.add_row(f"validation {summary.target['label'] or summary.target['metric']}", reached)
    table.add_row("optimizer steps (last restart)", str(summary.steps))
    table.add_row("wall time", f"{summary.train_seconds:.1f} s")
    parts: list[RenderableType] = [table]
    if len(summary.restarts) > 1:
        parts.append(restarts_table(summary, scoring))
    if summary.test.groups:
        parts.append(group_table(summary.test, scoring))
    return Group(*parts)


def restarts_table(summary: Summary, scoring: Scoring) -> Table:
    """Every restart's best model: its validation and test scores, the kept one marked."""
    select = scoring.select
    table = Table(title="restarts (each one's best validation)", header_style="bold")
    for header in ("restart", "seed", f"valid {select.label}", f"test {select.label}", "kept"):
        table.add_column(header, justify="right")
    for restart, scores in sorted(summary.restarts.items(), key=lambda item: int(item[0])):
        kept = int(restart) == summary.best_restart
        table.add_row(
            str(int(restart) + 1),
            str(summary.seed + int(restart)),
            number(scores["best_valid"]),
            number(scores["test"]["metrics"].get(select.name)),
            "✓" if kept else "",  # best.pt: eval and inspect-memory read it
            style="bold" if kept else None,
        )
    return table


class TrainProgress:
    """The engine's observer: a progress bar per epoch and one line per validation."""

    def __init__(self, console: Console, refresh_every: int = 10) -> None:
        self.console = console
        self.refresh_every = refresh_every
        self.shown = 0  # batches_done when the bar was last updated
        self.bar_display = ProgressBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}{task.fields[metric]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.bar: Any = None
        self.live = False
        self.restarts = 1
        self.together = False  # train.stack_restarts: one bar for every restart
        self.loss = 0.0
        self.task: Any = None
        self.metrics: tuple[Metric, ...] = ()  # of validation
        self.train_metrics: tuple[Metric, ...] = ()
        self.phase_width = 6
        self.status: Any = None

    def started(self, config: Any, task: Any, model: Any, device: Any, resumed: bool) -> None:
        if self.live:  # the next restart: the header stands, the restart column tells them apart
            return
        self.restarts = config.train.restarts
        self.together = config.train.stack_restarts and self.restarts > 1
        self.task = task
        self.metrics = task.scoring.progress
        self.train_metrics = training_metrics(task.scoring)
        start = config.train.start_phase
        self.phase_width = max(6, len(start.mode) if start else 0)
        parameters = sum(p.numel() for p in model.parameters())
        sizes = " / ".join(f"{task.split_size(name)} {name}" for name in ("train", "valid", "test"))
        verb = "resuming" if resumed else "training"
        self.console.print(
            f"[bold]{verb}[/] {config.model.name} on {config.task.name} · {parameters:,} params · "
            f"{sizes} · {device}" + (" · bf16 autocast" if config.train.precision == "bf16" else "")
        )
        restart = f"{'restart':>7} " if self.restarts > 1 else ""
        train_columns = " ".join(f"{m.short or m.name:>6}" for m in self.train_metrics)  # as wide as _cell's
        columns = " ".join(f"{m.short or m.name:>6}" for m in self.metrics)
        self.console.print(
            f"[bold]{restart}{'epoch':>5} {'phase':{self.phase_width}} {'lr':>8}  "
            f"{'train loss':>10} {train_columns}  {'valid loss':>10} {columns} {'time':>7}[/]"
        )
        self.bar_display.start()
        self.live = True

    def epoch_started(self, state: TrainState, batches: int, lr: float) -> None:
        restart = f"restart {state.restart + 1}/{self.restarts} · " if self.restarts > 1 else ""
        if self.together:
            restart = f"restarts 1-{self.restarts} together · "
        description = f"{restart}epoch {state.epoch + 1} {state.phase} lr {lr:g}"
        if self.bar is not None:
            self.bar_display.remove_task(self.bar)
        self.bar = self.bar_display.add_task(
            description, total=batches, completed=state.batches_done, loss=self.loss, metric=""
        )

    def stepped(self, state: TrainState, loss: float) -> None:
        self.loss = 0.9 * self.loss + 0.1 * loss if self.loss else loss
        # every refresh_every batches, or at each call when the engine reads its steps less often
        if (
            state.batches_done % self.refresh_every == 0
            or abs(state.batches_done - self.shown) >= self.refresh_every
        ):
            self.shown = state.batches_done
            shown = self.train_metrics
            values = self.task.train_metrics(state.window_sums, state.window_examples) if shown else {}
            metric = "".join(
                f" · {m.short or m.name} {values[m.name]:.1f}" for m in shown if m.name in values
            )
            self.bar_display.update(self.bar, completed=state.batches_done, loss=self.loss, metric=metric)

    def evaluated(self, record: dict[str, Any]) -> None:
        restart = f"{record['restart'] + 1:>7} " if self.restarts > 1 else ""

        def cells(split: str) -> str:
            return " ".join(
                _cell(record.get(f"{split}_{m.name}"), max(6, len(m.short or m.name)), m.decimals)
                for m in (self.train_metrics if split == "train" else self.metrics)
            )

        epoch = record["epoch"]
        shown = f"{epoch:5d}" if isinstance(epoch, int) else f"{epoch:5.2f}"
        self.console.print(
            f"{restart}{shown} {record['phase']:{self.phase_width}} {record['lr']:8.4g}  "
            f"{_cell(record['train_loss'], 10, 3)} {cells('train')}  "
            f"{_cell(record['valid_loss'], 10, 3)} {cells('valid')} {record['elapsed']:6.0f}s"
        )

    def message(self, text: str) -> None:
        self.console.print(f"[yellow]{text}[/]")

    def stage(self, text: str | None) -> None:
        """A spinner while data is prepared (it can take minutes for large generated sets)."""
        if self.status is not None:
            self.status.stop()
            self.status = None
        if text is not None:
            self.status = self.console.status(text)
            self.status.start()

    def close(self) -> None:
        self.stage(None)
        if self.live:
            self.bar_display.stop()
            self.live = False


def _cell(value: Any, width: int = 6, decimals: int = 1) -> str:
    return f"{'–':>{width}}" if missing(value) else f"{value:{width}.{decimals}f}"


class DataProgress:
    """A data command's progress as a transient rich bar, its messages as lines."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = ProgressBar(
            *ProgressBar.get_default_columns(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        )
        self.job: Any = None

    def progress(self, done: int, total: int | None) -> None:
        if self.job is None:
            self.bar.start()
            self.job = self.bar.add_task("", total=total)
        self.bar.update(self.job, completed=done, total=total)

    def message(self, text: str) -> None:
        self.console.print(Text(text), soft_wrap=True)

    def close(self) -> None:
        if self.job is not None:
            self.bar.stop()
