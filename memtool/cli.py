"""The ``memtool`` command line: parse, call, render. No training or metric logic lives here."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from memtool import jsonio
from memtool.console import (
    LAUNCHED_VARIABLE,
    PROGRAM_VARIABLE,
    err,
    error_line,
    main_process,
    out,
    program,
    stdout_is_devnull,
    user_errors,
)
from memtool.errors import UserError

app = typer.Typer(
    help="Train, evaluate and open up neural networks with an external memory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


CONFIG_DIRS = (Path(__file__).resolve().parent.parent / "configs", Path.cwd() / "configs")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


ScoreSetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override how the run is scored: KEY.PATH=VALUE (repeatable), e.g. train.eval_batch_size=64, "
        "train.threads=2 or the task's data keys; the model's keys are fixed by the checkpoint.",
        metavar="KEY=VALUE",
    ),
]


def _threads_if_asked(config: Any, overrides: list[str]) -> None:
    """--set train.threads=N caps scoring's threads; the run's own training setting is not applied."""
    from memtool.config import override_key

    if any(override_key(item) == "train.threads" for item in overrides) and config.train.threads:
        import torch

        torch.set_num_threads(config.train.threads)


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a config value: KEY.PATH=VALUE (repeatable), e.g. train.lr=0.005.",
        metavar="KEY=VALUE",
    ),
]


@app.command()
@user_errors
def train(
    config: Annotated[
        Path, typer.Argument(help="A YAML config, e.g. configs/quickstart.yaml.", metavar="CONFIG")
    ],
    overrides: SetOption = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default: runs/<config name>).", metavar="DIR")
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed for data split, init and order (overrides the config).", metavar="N"),
    ] = None,
    device: Annotated[
        Device | None, typer.Option(help="auto: CUDA when present, else CPU.", metavar="auto|cpu|cuda")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.", metavar="")
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            "--nproc",
            help="Data-parallel processes on this machine (PyTorch DDP under torchrun; one per GPU on CUDA).",
            metavar="N",
            min=1,
        ),
    ] = 1,
    parallel_restarts: Annotated[
        int,
        typer.Option(
            "--parallel-restarts",
            help="Train train.restarts as independent processes, K at a time (each in RUN/restarts/<r>).",
            metavar="K",
            min=1,
        ),
    ] = 1,
) -> None:
    """Train a model; the run directory gets the resolved config, metrics.jsonl and best/last checkpoints.

    Examples: memtool train configs/quickstart.yaml --out runs/quickstart · memtool train
    configs/memn2n_babi_task1.yaml --set train.lr=0.01 --seed 1 · memtool train runs/quickstart/config.yaml
    --out runs/quickstart --resume"""
    from memtool.config import load_config
    from memtool.engine import train as run_training
    from memtool.interrupts import Interrupted, say_interrupted
    from memtool.run_dir import default_run_dir

    run_config = load_config(config, overrides or [], seed=seed, device=device.value if device else None)
    run_dir = out_dir or default_run_dir(config, resume)
    from memtool.restarts import ParallelRestarts, is_parallel_run

    parallel = parallel_restarts > 1 or (resume and is_parallel_run(run_dir))
    if parallel and processes > 1:
        raise UserError(
            "--parallel-restarts and --nproc: choose one (restarts side by side, or one run on N)"
        )
    if parallel_restarts > 1 and run_config.train.restarts == 1:
        raise UserError(
            f"--parallel-restarts {parallel_restarts}: train.restarts is 1; add --set train.restarts=N"
        )
    if run_config.train.stack_restarts and run_config.train.restarts > 1 and (parallel or processes > 1):
        fresh = "" if resume else ", or set train.stack_restarts=false"  # a run keeps how it was trained
        raise UserError(
            "train.stack_restarts trains the restarts together in one process: drop "
            f"{'--parallel-restarts' if parallel else '--nproc'}{fresh}"
        )
    if processes > 1:  # the checked command again, in each process torchrun starts
        from memtool.launch import launch

        os.environ.setdefault(PROGRAM_VARIABLE, program())
        arguments = [str(config), "--out", str(run_dir), *[a for o in overrides or [] for a in ("--set", o)]]
        arguments += [*(["--seed", str(seed)] if seed is not None else [])]
        arguments += [*(["--device", device.value] if device else []), *(["--resume"] if resume else [])]
        code = launch(arguments, processes, run_config.device, run_dir, resume_hint(run_dir, processes, 1))
        if code:
            raise typer.Exit(code)
        return
    from memtool import render

    observer = render.TrainProgress(out)
    try:
        if parallel:
            summary = ParallelRestarts(run_config, run_dir, parallel_restarts, observer).run(resume)
        else:
            summary = run_training(run_config, run_dir, resume=resume, observer=observer)
    # KeyboardInterrupt: a Ctrl-C the engine could not turn into a save (data preparation, a second one)
    except (Interrupted, KeyboardInterrupt) as stopped:
        if not main_process() or os.environ.get(LAUNCHED_VARIABLE):  # `--nproc`'s launcher says it
            raise typer.Exit(130) from None
        world = int(os.environ.get("WORLD_SIZE", "1"))  # under torchrun: resume with as many processes
        hint = resume_hint(run_dir, world, parallel_restarts)
        if isinstance(stopped, Interrupted):
            err.print(f"[yellow]{escape(str(stopped))}[/] · continue with: {escape(hint)}", soft_wrap=True)
        else:
            say_interrupted(run_dir, hint)
        raise typer.Exit(130) from None
    finally:
        observer.close()
    from memtool.registry import TASKS

    if not main_process():
        return
    out.print(render.summary_renderable(summary, TASKS.get(run_config.task.name).scoring))
    out.print(
        f"results in [bold]{escape(str(run_dir))}[/] · look inside with: "
        f"{escape(program())} inspect-memory {escape(str(run_dir))}",
        soft_wrap=True,
    )


ImportOption = Annotated[
    list[str] | None,
    typer.Option(
        "--import",
        help="A module or .py file that registers models or tasks (as a config's imports:); repeatable.",
        metavar="MODULE",
    ),
]

TASK_OPTIONS = {"allow_extra_args": True, "ignore_unknown_options": True}


def _checkpoint_task(run: Path, overrides: list[str]) -> tuple[dict[str, Any], Any, list[str]]:
    """A checkpoint, the class of the task it was trained on (its plugins imported first), and the
    overrides left for ``restore``. ``--set imports=[PATH]`` points at a plugin that moved since training
    (a relative path is read from the current folder)."""
    from memtool.checkpoint import load_checkpoint
    from memtool.config import override_key, set_override
    from memtool.registry import TASKS, load_all, load_imports

    payload = load_checkpoint(run)
    if run.is_dir() and Path(payload["path"]).name != "best.pt":  # say so: it is not the selected model
        err.print(f"[yellow]note:[/] {escape(str(run))} has no best.pt; using {escape(payload['path'])}")
    load_all()
    raw = {"imports": payload["config"].get("imports", [])}
    moved = [a for a in overrides if override_key(a) == "imports"]
    for assignment in moved:
        set_override(raw, assignment)
    if not isinstance(raw["imports"], list):
        raise UserError(f"--set imports: expected a list, e.g. imports=[plugin.py], got {raw['imports']!r}")
    payload["config"] = {**payload["config"], "imports": load_imports(raw["imports"], Path.cwd())}
    rest = [a for a in overrides if a not in moved]
    return payload, TASKS.get(payload["config"]["task"]["name"]), rest


@app.command("eval", context_settings=TASK_OPTIONS)
@user_errors
def evaluate(
    context: typer.Context,
    run: Annotated[
        Path, typer.Argument(help="A run directory (its best.pt) or a checkpoint file.", metavar="RUN")
    ],
    split: Annotated[str, typer.Option(help="test, valid or train.", metavar="SPLIT")] = "test",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.", metavar="")
    ] = False,
    overrides: ScoreSetOption = None,
    device: Annotated[
        Device | None, typer.Option(help="auto: CUDA when present, else CPU.", metavar="auto|cpu|cuda")
    ] = None,
) -> None:
    """Score a trained model on a split, with the task's metrics and per-group table.

    A task may add options of its own (e.g. another data directory); `memtool list` shows them.

    Examples: memtool eval runs/quickstart · memtool eval runs/quickstart --json · memtool eval
    runs/memn2n_babi_1k_joint --data data/babi/hn"""
    from memtool import render
    from memtool.build import restore
    from memtool.task_options import parse_task_options

    payload, task_class, overrides = _checkpoint_task(run, overrides or [])
    task_name = payload["config"]["task"]["name"]
    options = parse_task_options(context.args, task_class.EvalOptions, f"eval of task {task_name}")
    extra = [*overrides, *task_class.eval_overrides(options)]
    config, task, model = restore(payload, extra, device.value if device else None)
    _threads_if_asked(config, extra)
    if split not in ("train", "valid", "test"):
        raise UserError(f"--split: unknown split {split!r}; choose test, valid or train")
    if task.split_size(split) == 0:
        raise UserError(f"--split {split}: no examples in this split of the data")
    result = task.evaluate(model, split, config.train.eval_batch_size)
    if as_json:
        payload_out: dict[str, Any] = {"checkpoint": payload["path"], "metrics": result.metrics}
        if result.groups:
            payload_out[result.group_label] = result.groups
        if result.note:
            payload_out["note"] = result.note
        sys.stdout.write(jsonio.dumps(payload_out) + "\n")
        return
    changed = "".join(f" --set {item}" for item in extra)  # what the scores were made with: a seed, data
    out.print(
        render.metrics_table(
            result, f"{split} · {payload['path']}{' ·' + changed if changed else ''}", task.scoring
        )
    )


@app.command("inspect-memory", context_settings=TASK_OPTIONS)
@user_errors
def inspect_memory(
    context: typer.Context,
    run: Annotated[
        Path, typer.Argument(help="A run directory (its best.pt) or a checkpoint file.", metavar="RUN")
    ],
    example: Annotated[
        int,
        typer.Option(
            help="Which example of the split (after the task's filters), from 0.", metavar="N", min=0
        ),
    ] = 0,
    split: Annotated[str, typer.Option(help="test, valid or train.", metavar="SPLIT")] = "test",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the view as JSON for scripts.", metavar="")
    ] = False,
    png: Annotated[
        Path | None, typer.Option("--png", help="Also draw the view as a PNG figure.", metavar="FILE")
    ] = None,
    overrides: ScoreSetOption = None,
    device: Annotated[
        Device | None, typer.Option(help="auto: CUDA when present, else CPU.", metavar="auto|cpu|cuda")
    ] = None,
) -> None:
    """Show what the model attended to or stored for one example: a table, --json, or a --png figure.

    A task may add options of its own (e.g. which group, or your own input); `memtool list` shows them.

    Examples: memtool inspect-memory runs/quickstart --task 2 --example 3 --png attention.png ·
    memtool inspect-memory runs/quickstart --story story.txt --question 'Where is Mary?'"""
    from memtool import render
    from memtool.build import restore
    from memtool.task_options import parse_task_options
    from memtool.views import InspectRequest

    payload, task_class, overrides = _checkpoint_task(run, overrides or [])
    options = parse_task_options(
        context.args, task_class.InspectOptions, f"inspect-memory of task {payload['config']['task']['name']}"
    )
    config, task, model = restore(payload, overrides, device.value if device else None)
    _threads_if_asked(config, overrides)
    if split not in ("train", "valid", "test"):
        raise UserError(f"--split: unknown split {split!r}; choose test, valid or train")
    view = task.inspect(model, InspectRequest(split, example, options))
    if png is not None:
        from memtool.figures import save_png, view_figure

        figure = view_figure(view)  # before any output: a missing matplotlib is one error line
        save_png(figure, png)
    if as_json:
        sys.stdout.write(jsonio.dumps(asdict(view)) + "\n")
        return
    out.print(render.view_renderable(view))
    if png is not None:
        out.print(f"figure: {png}", soft_wrap=True)


@app.command()
@user_errors
def plot(
    runs: Annotated[
        list[Path], typer.Argument(help="One or more run directories, drawn on one figure.", metavar="RUN...")
    ],
    png: Annotated[Path, typer.Option("--png", help="Where to write the PNG figure.", metavar="FILE")],
    metric: Annotated[
        list[str] | None,
        typer.Option(help="Which metric(s) besides loss (default: the task's own).", metavar="NAME"),
    ] = None,
) -> None:
    """Learning curves from runs' metrics.jsonl: training and validation per step, phase changes marked.

    Example: memtool plot runs/quickstart runs/other --png curves.png"""
    from memtool.figures import CurveMetric, CurveRun, learning_curves_figure, require_matplotlib, save_png
    from memtool.run_dir import RunDirectory

    require_matplotlib()
    curves, metrics = [], [CurveMetric("loss", "loss")]
    for path in runs:
        if not path.is_dir():
            raise UserError(f"{path}: not a run directory")
        records = RunDirectory(path).records()
        if not records:
            raise UserError(f"{path}: no metrics.jsonl records to plot; is it a memtool run directory?")
        curves.append(CurveRun(str(path), records))
        for found in _run_metrics(path, records):
            if all(found.name != m.name for m in metrics):
                metrics.append(found)
    if metric:
        available = {m.name: m for m in metrics}
        unknown = [name for name in metric if name not in available]
        if unknown:
            raise UserError(f"--metric {unknown[0]}: not in these runs; they have: {', '.join(available)}")
        metrics = [available[name] for name in metric]
    written = save_png(learning_curves_figure(curves, metrics), png)
    out.print(f"figure: {written}", soft_wrap=True)


def _run_metrics(path: Path, records: list[dict[str, Any]]) -> list[Any]:
    """The run task's progress metrics with their labels, or the metric names its records hold."""
    from memtool.figures import CurveMetric
    from memtool.registry import TASKS, load_all, load_imports

    load_all()
    try:
        raw = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
        load_imports(raw.get("imports", []), path)  # a plugin's task knows its own metrics
        scoring = TASKS.get(raw["task"]["name"]).scoring
        return [CurveMetric(m.name, m.label, m.higher_is_better) for m in scoring.progress]
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, UserError):
        names = {
            key[6:]
            for key in records[0]
            if key.startswith("valid_") and key not in ("valid_loss", "valid_groups")
        }
        return [CurveMetric(name, name) for name in sorted(names)]


@app.command("list")
@user_errors
def list_components(imports: ImportOption = None) -> None:
    """The registered models and tasks (with their options and data commands), and the shipped configs.

    Example: memtool list · memtool list --import my_plugin.py"""
    from memtool.listing import component_tables
    from memtool.registry import load_all, load_imports

    load_all()
    load_imports(imports or [], Path.cwd())
    for table in component_tables(CONFIG_DIRS):
        out.print(table)


@app.command("cache")
@user_errors
def cache_command(
    clear: Annotated[bool, typer.Option("--clear", help="Delete every entry.", metavar="")] = False,
) -> None:
    """Where prepared data is cached (bAbI tensors, generated videos), what it holds, and --clear.

    Example: memtool cache · memtool cache --clear · MEMTOOL_CACHE_DIR=off memtool train ..."""
    from memtool import cache

    directory = cache.cache_dir()
    if directory is None:
        out.print("the data cache is off (MEMTOOL_CACHE_DIR=off): data is prepared anew by every run")
        return
    if clear:
        out.print(f"cleared {cache.clear() / 1e6:.1f} MB from {directory}")
        return
    held = {kind: counts for kind, counts in cache.contents().items() if counts[0]}
    out.print(f"data cache: {directory}" + ("" if held else " (empty)"))
    if held:
        table = Table(header_style="bold")
        for column in ("kind", "entries", "MB"):
            table.add_column(column, justify="left" if column == "kind" else "right")
        for kind, (entries, size) in held.items():
            table.add_row(kind, str(entries), f"{size / 1e6:.1f}")
        out.print(table)
    out.print(
        f"each kind keeps its {cache.KEEP} most recently used entries; memtool cache --clear empties it"
    )


@app.command("data", context_settings=TASK_OPTIONS)
@user_errors
def data(
    context: typer.Context,
    action: Annotated[str, typer.Argument(help="What to do, e.g. download or generate.", metavar="ACTION")],
    task: Annotated[
        str, typer.Argument(help="Which task's data, e.g. a name from `memtool list`.", metavar="TASK")
    ],
    imports: ImportOption = None,
) -> None:
    """Get a task's data: each task declares its own commands and options (`memtool list` shows them).

    Examples: memtool data download babi --to data/babi · memtool data generate babi --seed 1"""
    from memtool import render
    from memtool.registry import TASKS, load_all, load_imports
    from memtool.task_options import parse_task_options

    load_all()
    load_imports(imports or [], Path.cwd())
    commands = TASKS.get(task).data_commands
    if action not in commands:
        known = ", ".join(commands) or "none"
        raise UserError(f"{action!r}: task {task!r} has no such data command; it has: {known}")
    command = commands[action]
    options = parse_task_options(context.args, command.Options, f"data {action} {task}")
    report = render.DataProgress(out)
    try:
        command.run(options, report)
    finally:
        report.close()


def resume_hint(run_dir: Path, processes: int, parallel_restarts: int) -> str:
    """The command that resumes an interrupted run as it was: the run's own resolved config carries
    every --set."""
    hint = f"{program()} train {run_dir / 'config.yaml'} --out {run_dir} --resume"
    hint += f" --nproc {processes}" if processes > 1 else ""
    return hint + (f" --parallel-restarts {parallel_restarts}" if parallel_restarts > 1 else "")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; usage errors (unknown flag, bad value, missing argument) become one line, exit 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except SystemExit as stop:  # rich's answer to a reader that closed the pipe (`memtool --help | head`)
        if stop.code == 1 and stdout_is_devnull():
            sys.exit(0)  # as when a command's output is cut short: what the reader wanted, it got
        raise
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as error:  # click's usage errors: typer may vendor click, so match by shape
        if not (hasattr(error, "format_message") and hasattr(error, "exit_code")):
            raise
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare `memtool` or group: show the help
            out.print(error.format_message())
            sys.exit(0)
        context = getattr(error, "ctx", None)
        hint = f" (see: {context.command_path} --help)" if context is not None else ""
        error_line(error.format_message() + hint)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
