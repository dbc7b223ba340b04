"""The ``memtool`` command line: parse, call, render. No training or metric logic lives here."""

from __future__ import annotations

import functools
import sys
from dataclasses import asdict
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from memtool import jsonio, render
from memtool.errors import TrainingDiverged, UserError

app = typer.Typer(
    help="Train, evaluate and open up neural networks with an external memory.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="Get datasets: download the real bAbI tasks, or generate bAbI-style stories.", no_args_is_help=True
)
app.add_typer(data_app, name="data")

# Piped output gets 120 columns rather than rich's 80, so tables and paths are not folded.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)

CONFIG_DIRS = (Path(__file__).resolve().parent.parent / "configs", Path.cwd() / "configs")


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a config value: KEY.PATH=VALUE (repeatable), e.g. train.lr=0.005."
    ),
]


def _error_line(message: str) -> None:
    """A user error as the one line on stderr that every command promises, whatever the message held."""
    err.print(f"[red]error:[/] {escape(' '.join(message.split()))}", soft_wrap=True)


def user_errors(command: Any) -> Any:
    """Turn a UserError into one red line on stderr and exit code 2; divergence into exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except UserError as error:
            _error_line(str(error))
            raise typer.Exit(2) from None
        except TrainingDiverged as error:
            err.print(f"[red]training stopped:[/] {escape(str(error))}", soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as error:  # a path the user gave: an existing file as --out, a read-only folder
            _error_line(f"{error.filename or 'path'}: {error.strerror or error}")
            raise typer.Exit(2) from None

    return wrapper


def _default_run_dir(config_path: Path, resume: bool) -> Path:
    """``runs/<config name>``; a fresh run never overwrites one, a resume takes the newest of that name.

    A run's own ``config.yaml`` resumes that run."""
    if resume and config_path.name == "config.yaml" and (config_path.parent / "last.pt").exists():
        return config_path.parent
    base = Path("runs") / config_path.stem
    candidates = [base, *sorted(base.parent.glob(f"{base.name}-*"))] if base.parent.exists() else [base]
    existing = [c for c in candidates if (c / "last.pt").exists()]
    if resume:
        return max(existing, key=lambda c: (c / "last.pt").stat().st_mtime) if existing else base
    if not base.exists():
        return base
    number = 2
    while Path(f"{base}-{number}").exists():
        number += 1
    return Path(f"{base}-{number}")


@app.command()
@user_errors
def train(
    config: Annotated[Path, typer.Argument(help="A YAML config, e.g. configs/quickstart.yaml.")],
    overrides: SetOption = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Run directory (default: runs/<config name>).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed for data split, init and order (overrides the config).")
    ] = None,
    device: Annotated[Device | None, typer.Option(help="auto: CUDA when present, else CPU.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
) -> None:
    """Train a model; the run directory gets the resolved config, metrics.jsonl and best/last checkpoints."""
    from memtool.config import load_config
    from memtool.engine import Interrupted
    from memtool.engine import train as run_training

    run_config = load_config(config, overrides or [], seed=seed, device=device.value if device else None)
    run_dir = out_dir or _default_run_dir(config, resume)
    observer = render.TrainProgress(out)
    try:
        summary = run_training(run_config, run_dir, resume=resume, observer=observer)
    except Interrupted as stopped:
        observer.close()
        # the run's own resolved config carries every --set, so this command resumes it as it was
        hint = f"memtool train {run_dir / 'config.yaml'} --out {run_dir} --resume"
        err.print(f"[yellow]{escape(str(stopped))}[/] · continue with: {escape(hint)}", soft_wrap=True)
        raise typer.Exit(130) from None
    finally:
        observer.close()
    out.print(render.summary_renderable(summary))
    out.print(
        f"results in [bold]{run_dir}[/] · look inside with: memtool inspect-memory {run_dir}", soft_wrap=True
    )


def _restore(run: Path, overrides: list[str], device: Device | None) -> tuple[Any, Any, Any]:
    from memtool.build import restore
    from memtool.checkpoint import load_checkpoint

    payload = load_checkpoint(run)
    return restore(payload, overrides, device.value if device else None)


@app.command("eval")
@user_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory (its best.pt) or a checkpoint file.")],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Score on this bAbI directory (same as --set data.path=DIR)."),
    ] = None,
    split: Annotated[str, typer.Option(help="test, valid or train.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
    overrides: SetOption = None,
    device: Annotated[Device | None, typer.Option(help="auto: CUDA when present, else CPU.")] = None,
) -> None:
    """Score a trained model on a split; bAbI runs also get the error of every task."""
    extra = list(overrides or [])
    if data is not None:
        extra += [f"data.path={data}", "data.source=files"]
    config, task, model = _restore(run, extra, device)
    if split not in ("train", "valid", "test"):
        raise UserError(f"--split: unknown split {split!r}; choose test, valid or train")
    if task.split_size(split) == 0:
        raise UserError(f"--split {split}: no questions in this split of data.path {config.data.path!r}")
    result = task.evaluate(model, split, config.train.eval_batch_size)
    if as_json:
        payload: dict[str, Any] = {"metrics": result.metrics}
        if result.groups:
            payload[result.group_label] = result.groups
        sys.stdout.write(jsonio.dumps(payload) + "\n")
        return
    out.print(render.metrics_table(result, f"{split} · {run}"))


@app.command("inspect-memory")
@user_errors
def inspect_memory(
    run: Annotated[Path, typer.Argument(help="A run directory (its best.pt) or a checkpoint file.")],
    example: Annotated[int, typer.Option(help="Which example of the split (of --task, when given).")] = 0,
    task_number: Annotated[
        int | None, typer.Option("--task", help="Only examples of this bAbI task.")
    ] = None,
    split: Annotated[str, typer.Option(help="test, valid or train.")] = "test",
    story: Annotated[
        Path | None, typer.Option(help="Run the model on a story you wrote (one sentence a line).")
    ] = None,
    question: Annotated[
        str | None, typer.Option(help='The question about --story, e.g. "Where is Mary?".')
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the view as JSON for scripts.")] = False,
    overrides: SetOption = None,
    device: Annotated[Device | None, typer.Option(help="auto: CUDA when present, else CPU.")] = None,
) -> None:
    """Show what the model attended to, hop by hop, for one example."""
    from memtool.views import InspectRequest

    _, task, model = _restore(run, list(overrides or []), device)
    view = task.inspect(model, InspectRequest(split, example, task_number, story, question))
    if as_json:
        sys.stdout.write(jsonio.dumps(asdict(view)) + "\n")
        return
    out.print(render.view_renderable(view))


@app.command("list")
@user_errors
def list_components() -> None:
    """The registered models and tasks, and the shipped configs."""
    from memtool.registry import MODELS, TASKS, load_all

    load_all()
    for registry in (MODELS, TASKS):
        table = Table(title=f"{registry.kind}s", header_style="bold")
        table.add_column("name")
        table.add_column("what it is")
        for entry in registry.entries():
            table.add_row(entry.name, entry.summary)
        out.print(table)
    table = Table(title="configs", header_style="bold")
    table.add_column("path")
    table.add_column("model · task")
    seen: set[Path] = set()
    for directory in CONFIG_DIRS:
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            shown = Path(path).relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            table.add_row(str(shown), _config_summary(path))
    out.print(table)


def _config_summary(path: Path) -> str:
    """``model · task`` of a config file, or why it cannot be read: one bad file must not hide the rest."""
    from memtool.config import read_yaml

    try:
        raw = read_yaml(path)
    except UserError as error:
        return f"[red]unreadable[/]: {escape(str(error).removeprefix(f'{path}: '))}"
    names = [raw.get(section) for section in ("model", "task")]
    return " · ".join(str(part.get("name", "?")) if isinstance(part, dict) else "?" for part in names)


class Dataset(str, Enum):
    babi = "babi"


@data_app.command("download")
@user_errors
def download(
    dataset: Annotated[Dataset, typer.Argument(help="Which dataset.")],
    to: Annotated[Path, typer.Option(help="Where to unpack it.")] = Path("data/babi"),
    url: Annotated[
        str | None, typer.Option(help="Another source of the same archive (file:// works).")
    ] = None,
) -> None:
    """Fetch and unpack the public bAbI QA v1.2 archive (20 tasks; en, en-10k and more)."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from memtool.download import BABI_URL, download_babi

    source = url or BABI_URL
    out.print(f"fetching {source}")
    with Progress(
        *Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=out, transient=True
    ) as bar:
        job = bar.add_task("bAbI", total=None)
        languages = download_babi(
            to, source, lambda done, total: bar.update(job, completed=done, total=total)
        )
    out.print(f"unpacked {len(languages)} folders into {to}: {', '.join(p.name for p in languages)}")
    out.print(f"train on them with: memtool train configs/memn2n_babi_task1.yaml --set data.path={to}/en")


@data_app.command("generate")
@user_errors
def generate(
    dataset: Annotated[Dataset, typer.Argument(help="Which dataset.")],
    to: Annotated[Path, typer.Option(help="Output directory.")] = Path("data/generated"),
    seed: Annotated[int, typer.Option(help="The same seed writes the same stories.")] = 0,
    train_stories: Annotated[
        int, typer.Option(min=1, help="Stories per task in the train files (5 questions each).")
    ] = 200,
    test_stories: Annotated[int, typer.Option(min=1, help="Stories per task in the test files.")] = 200,
) -> None:
    """Write memtool's seeded bAbI-style stories (tasks 1, 2, 6, 7, 8) in the bAbI text format."""
    from memtool.tasks.babi.generator import GENERATED_TASKS, write_generated

    written = write_generated(to, GENERATED_TASKS, train_stories, test_stories, seed)
    out.print(f"wrote {len(written)} files to {to}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; usage errors (unknown flag, bad value, missing argument) become one line, exit 2."""
    try:
        code = app(args=argv, standalone_mode=False)
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
        _error_line(error.format_message() + hint)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
