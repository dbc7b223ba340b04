"""The figure layer writes real PNGs: decode them back and check their size and that something was drawn."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from memtool.errors import UserError
from memtool.figures import (
    CurveMetric,
    CurveRun,
    learning_curves_figure,
    require_matplotlib,
    save_png,
    view_figure,
)
from memtool.tasks.babi.figure import attention_figure
from memtool.tasks.babi.view import AttentionView
from memtool.views import Heatmap, HeatmapView


def assert_real_png(path: Path, min_side: int = 200) -> tuple[int, int]:
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(path.parent.glob(f".{path.name}.*.tmp")), "temp file left behind"
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    width, height = rgb.size
    assert width > min_side and height > min_side, rgb.size
    colours = rgb.getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50, "image looks blank"
    return width, height


def heatmap_view() -> HeatmapView:
    small = Heatmap(
        title="read weighting",
        rows=[f"t{t}" for t in range(6)],
        columns=[f"m{m}" for m in range(8)],
        values=[[math.exp(-((t - m) ** 2)) for m in range(8)] for t in range(6)],
        marks=[[t == m for m in range(8)] for t in range(6)],
        value_range=(0.0, 1.0),
    )
    big = Heatmap(
        title="memory",
        rows=[str(t) for t in range(120)],
        columns=[str(m) for m in range(128)],
        values=[[math.sin(t / 7) * math.cos(m / 11) for m in range(128)] for t in range(120)],
        marks=[[(t * m) % 97 == 1 for m in range(128)] for t in range(120)],
    )
    return HeatmapView(title="copy task, example 0", panels=[small, big], notes=["2 wrong bits", "length 20"])


def test_heatmap_view_png(tmp_path: Path) -> None:
    path = save_png(view_figure(heatmap_view()), tmp_path / "out" / "heatmap.png")
    assert path == tmp_path / "out" / "heatmap.png"
    width, height = assert_real_png(path)
    assert height > width / 2  # two panels stacked


def test_a_panel_that_shows_its_values_writes_each_in_its_cell_readable_on_its_shade() -> None:
    coverage = Heatmap(
        title="Σ_t α against τ",
        rows=["Σ_t α", "τ"],
        columns=["frame 1", "frame 2"],
        values=[[0.25, 1.75], [1.0, 1.0]],
        value_range=(0.0, 2.0),
        show_values=True,
    )
    figure = view_figure(HeatmapView(title="t", panels=[coverage]))
    texts = {(text.get_text(), text.get_color()) for axes in figure.axes for text in axes.texts}
    assert {("0.25", "black"), ("1.75", "white"), ("1.00", "black")} <= texts
    # a feature run's hundreds of frames: numbers would overlap, so the colours alone show them
    wide = Heatmap("Σ_t α", ["Σ_t α"], [str(i) for i in range(300)], [[1.0] * 300], show_values=True)
    assert not any(axes.texts for axes in view_figure(HeatmapView(title="t", panels=[wide])).axes)
    plain = view_figure(heatmap_view())
    assert not any(text.get_text() == "1.00" for axes in plain.axes for text in axes.texts)


def test_view_figure_unknown_view() -> None:
    with pytest.raises(UserError, match="no figure for a str"):
        view_figure("not a view")


def attention_view(answer: str | None = "garden") -> AttentionView:
    memories = [
        "mary moved to the bathroom",
        "john went to the hallway",
        "mary travelled to the garden",
        "daniel journeyed back to the office and then picked up the football in the kitchen",
    ]
    return AttentionView(
        title="task 1: single supporting fact · example 0",
        memories=memories,
        memory_labels=["1", "2", "4", "5"],
        attention=[[0.05, 0.10, 0.02], [0.01, 0.02, 0.01], [0.90, 0.80, 0.95], [0.02, 0.03, 0.01]],
        supporting=[2],
        question="where is mary?",
        predicted="garden",
        top_answers=[("garden", 0.91), ("bathroom", 0.05), ("office", 0.02)],
        answer=answer,
        empty_slots=[0.02, 0.05, 0.01],
        notes=["the model was trained on tasks 1-3"],
    )


def test_attention_png(tmp_path: Path) -> None:
    assert_real_png(save_png(attention_figure(attention_view()), tmp_path / "attention.png"))
    wrong = attention_view(answer="kitchen")
    wrong.empty_slots, wrong.notes = None, []
    assert_real_png(save_png(view_figure(wrong), tmp_path / "attention-wrong.png"))


def records(restart: int, scale: float, switch_at: int | None) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for epoch in range(1, 11):
        phase = "linear_start" if switch_at is not None and epoch <= switch_at else "main"
        loss = scale * 3.0 * math.exp(-epoch / 2.5)
        rows.append(
            {
                "restart": restart,
                "epoch": epoch,
                "phase": phase,
                "step": epoch * 50,
                "lr": 0.01,
                "train_loss": loss * 0.8,
                "valid_loss": loss,
                "train_error": scale * 40 * math.exp(-epoch / 3),
                "valid_error": None if epoch == 4 else scale * 45 * math.exp(-epoch / 3),
            }
        )
    return rows


def test_learning_curves_png(tmp_path: Path) -> None:
    single = records(0, 0.7, switch_at=None)
    for record in single:
        del record["train_error"]  # a metric missing from some records is skipped, not an error
    runs = [
        CurveRun("run a", records(0, 1.0, switch_at=3) + records(1, 1.3, switch_at=5)),
        CurveRun("run b", single),
    ]
    metrics = [CurveMetric("loss", "loss"), CurveMetric("error", "error (%)")]
    assert_real_png(save_png(learning_curves_figure(runs, metrics), tmp_path / "curves.png"))


def test_learning_curves_without_data(tmp_path: Path) -> None:
    assert_real_png(save_png(learning_curves_figure([], [CurveMetric("loss", "loss")]), tmp_path / "e.png"))


def test_require_matplotlib_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes ``import matplotlib`` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'memtool\[plot\]'"):
        require_matplotlib()


def test_a_heatmap_too_wide_for_the_terminal_is_drawn_one_cell_per_value() -> None:
    from rich.console import Console

    from memtool.render import view_renderable
    from memtool.views import Heatmap, HeatmapView

    steps = 113
    values = [[(t % 7) / 6 for t in range(steps)] for _ in range(3)]
    marks = [[t == 50 for t in range(steps)] for _ in range(3)]
    wide = Heatmap(
        "read weighting", ["row 0", "row 1", "row 2"], [str(t + 1) for t in range(steps)], values, marks
    )
    narrow = Heatmap("erase", ["erase"], ["1", "2"], [[0.25, 0.75]])
    console = Console(record=True, width=140, color_system="truecolor")
    console.print(view_renderable(HeatmapView("view", [wide, narrow])))
    text = console.export_text(clear=False)
    lines = text.splitlines()
    cells = [line for line in lines if line.startswith("row ")]
    assert len(cells) == 3 and all(len(line) == len("row 0 ") + steps for line in cells)
    assert all(line[len("row 0 ") + 50] == "✗" for line in cells)
    assert "0.25" in text and "0.75" in text  # the narrow one: a table
    assert "rgb(" in console.export_html() or "background" in console.export_html()  # shaded, not blank


def test_a_wide_heatmap_piped_without_colours_keeps_its_shades_as_glyphs() -> None:
    """Piped (or NO_COLOR), backgrounds are dropped; the one-cell-per-value form then draws each value
    as a glyph from light to dark, not a blank."""
    from rich.console import Console

    from memtool.render import SHADE_GLYPHS, view_renderable
    from memtool.views import Heatmap, HeatmapView

    values = [[(t % 7) / 6 for t in range(113)]]
    console = Console(record=True, width=140, color_system=None)
    console.print(
        view_renderable(HeatmapView("view", [Heatmap("w", ["row 0"], [str(t) for t in range(113)], values)]))
    )
    cells = next(line for line in console.export_text().splitlines() if line.startswith("row 0"))[6:]
    assert cells[:7] == "".join(SHADE_GLYPHS[min(int(v * 6), 5)] for v in values[0][:7])
    assert cells[0] == " " and cells[6] == "█" and len(set(cells)) == len(SHADE_GLYPHS)
    # NO_COLOR on a terminal that could show colours: the same glyphs
    no_color = Console(record=True, width=140, color_system="truecolor", no_color=True)
    no_color.print(
        view_renderable(HeatmapView("view", [Heatmap("w", ["row 0"], [str(t) for t in range(113)], values)]))
    )
    assert next(line for line in no_color.export_text().splitlines() if line.startswith("row 0"))[6:] == cells


def frames_view() -> HeatmapView:
    from memtool.views import ImageStrip

    black = [[[0.0, 0.0, 0.0] for _ in range(16)] for _ in range(16)]
    red_dot = [row[:] for row in black]
    for y in range(6, 10):
        red_dot[y][6:10] = [[1.0, 0.0, 0.0]] * 4
    strip = ImageStrip("the frames", ["frame 1", "frame 2"], [black, red_dot])
    grid = Heatmap("attention", ["a", "red"], ["frame 1", "frame 2"], [[0.5, 0.5], [0.1, 0.9]])
    return HeatmapView("video", [grid], strips=[strip])


def test_a_picture_strip_is_drawn_above_the_heatmaps_in_the_png(tmp_path: Path) -> None:
    from PIL import Image

    path = save_png(view_figure(frames_view()), tmp_path / "frames.png")
    assert_real_png(path)
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    reds = [
        (x, y) for x in range(rgb.width) for y in range(rgb.height) if rgb.getpixel((x, y)) == (255, 0, 0)
    ]
    assert reds, "the red frame is not in the figure"
    assert max(y for _, y in reds) < rgb.height / 2  # above the attention grid
    assert min(x for x, _ in reds) > rgb.width / 3  # in the second picture's column, not the first


def test_a_picture_strip_is_drawn_in_the_terminal_in_its_colours() -> None:
    from rich.console import Console

    from memtool.render import thumbnail, view_renderable

    console = Console(record=True, width=100, color_system="truecolor")
    console.print(view_renderable(frames_view()))
    assert "▀" in console.export_text(clear=False)
    assert "#ff0000" in console.export_html()  # the red shape survives shrinking
    assert thumbnail([[[0.2, 0.4, 1.0]]], 2) == [[(51, 102, 255)] * 2] * 2


def test_a_sixteen_colour_terminal_gets_shades_whose_ink_reads() -> None:
    """rich maps the RGB ramp's middle to a grey, with the ramp's white ink on it: invisible numbers."""
    from rich.console import Console

    from memtool.render import view_renderable

    console = Console(record=True, width=100, force_terminal=True, color_system="standard")
    values = [[step / 10 for step in range(11)]]
    console.print(
        view_renderable(HeatmapView("weights", [Heatmap("w", ["row"], [str(i) for i in range(11)], values)]))
    )
    shown = console.export_text(styles=True)
    assert "\x1b[37;47m" not in shown and "\x1b[97;47m" not in shown  # white on white
    assert "\x1b[30;107m" in shown and "\x1b[97;44m" in shown  # black on bright white, white on blue


def test_a_picture_strip_without_colour_is_drawn_in_glyphs_of_brightness() -> None:
    """Piped or under NO_COLOR the ▀ cells would all look alike: the pictures become brightness glyphs."""
    from rich.console import Console

    from memtool.render import view_renderable

    # a colour terminal with NO_COLOR set, not only a pipe (which has no colour system either)
    console = Console(record=True, width=100, no_color=True, force_terminal=True, color_system="truecolor")
    console.print(view_renderable(frames_view()))
    lines = console.export_text().splitlines()
    start = lines.index(next(line for line in lines if line.startswith("frame 1"))) + 1
    pictures = lines[start : start + 6]  # 12 pixel rows, two a line
    assert "▀" not in "".join(pictures)
    black = "".join(line[:12] for line in pictures)  # two pictures of 12 columns, a blank between
    red = "".join(line[13:25] for line in pictures)
    assert not black.strip()  # the black frame: blanks
    assert red.count("█") >= 4 and set(red) <= {" ", "█"}  # the red dot, as bright as can be drawn


def test_a_run_with_one_validation_still_shows_its_training_point() -> None:
    """A dashed line through one point draws nothing: the lone training value gets a marker."""
    one = records(0, 1.0, switch_at=None)[:1]
    figure = learning_curves_figure([CurveRun("one", one)], [CurveMetric("loss", "loss")])
    dashed = [line for line in figure.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and len(dashed[0].get_xdata()) == 1
    assert dashed[0].get_marker() not in ("None", "", None)


def test_a_share_with_nothing_to_count_shows_as_a_dash_not_nan() -> None:
    from memtool.render import _cell, number

    assert number(float("nan")) == "–" and _cell(float("nan")).strip() == "–"
    assert number(0.5) == "0.50" and _cell(12.34).strip() == "12.3"


def test_a_table_too_wide_for_the_terminal_shortens_its_headers_before_it_gives_up_its_numbers() -> None:
    """rich squeezes a table wider than the terminal until its numbers read "0.…"."""
    from rich.console import Console

    from memtool.render import view_renderable

    frames = [f"frame {i}" for i in range(1, 9)]
    view = HeatmapView("video", [Heatmap("attention", ["white", "triangle"], frames, [[0.57] * 8] * 2)])
    shown = {}
    for width in (100, 80, 40):
        console = Console(record=True, width=width, color_system=None)
        console.print(view_renderable(view))
        shown[width] = console.export_text()
        assert "…" not in shown[width], width
    assert "frame 8" in shown[100] and "0.57" in shown[100]
    assert "attention · columns: frame" in shown[80] and "frame 8" not in shown[80] and "0.57" in shown[80]
    assert "one cell per value" in shown[40]  # not even "1" … "8" fit: cells, the numbers in --json
