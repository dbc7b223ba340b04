"""The tables of ``memtool list``: the registered models and tasks, the tasks' own options, the configs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from memtool.errors import UserError
from memtool.registry import MODELS, TASKS


def component_tables(config_dirs: Iterable[Path]) -> list[Table]:
    """Models, tasks, the tasks' options (inspect, eval, data commands) and the configs in ``config_dirs``."""
    tables = []
    for registry in (MODELS, TASKS):
        table = Table(title=f"{registry.kind}s", header_style="bold")
        table.add_column("name")
        table.add_column("what it is")
        for entry in registry.entries():
            table.add_row(entry.name, entry.summary)
        tables.append(table)
    table = Table(title="the tasks' own options", header_style="bold")
    for column in ("task", "command", "option", "what it does"):
        table.add_column(column)
    for entry in TASKS.entries():
        task = entry.target
        commands = [("inspect-memory RUN", task.InspectOptions), ("eval RUN", task.EvalOptions)]
        commands += [(f"data {action} {entry.name}", c.Options) for action, c in task.data_commands.items()]
        for command, schema in commands:
            for name, field in schema.model_fields.items():
                default = "" if field.default is None else f" (default: {field.default})"
                option = f"--{name.replace('_', '-')}"
                table.add_row(entry.name, command, option, f"{field.description or ''}{default}")
    tables.append(table)
    table = Table(title="configs", header_style="bold")
    table.add_column("path")
    table.add_column("model · task")
    table.add_column("apart from the others of its model and task")
    seen: set[Path] = set()
    paths = []
    for directory in config_dirs:
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                paths.append(path)
    summaries = {path: config_summary(path) for path in paths}
    for path, differences in settings_apart(paths, summaries).items():
        shown = Path(path).relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        table.add_row(str(shown), summaries[path], differences)
    tables.append(table)
    return tables


def settings_apart(paths: list[Path], summaries: dict[Path, str]) -> dict[Path, str]:
    """Per config, the settings in which it differs from the other configs of the same model and task
    (``model.reg_lambda=0.0``), so that configs of one pair are told apart; "" for one of its kind."""
    from memtool.config import config_leaves, read_yaml

    read: dict[Path, dict[str, str]] = {}
    for path in paths:
        try:
            read[path] = config_leaves(read_yaml(path))
        except UserError:  # config_summary already says why it is unreadable
            read[path] = {}
    apart: dict[Path, str] = {}
    for path in paths:
        kin = [other for other in paths if other != path and summaries[other] == summaries[path]]
        keys = sorted(
            {
                key
                for other in kin
                for key in read[path].keys() | read[other].keys()
                if read[path].get(key) != read[other].get(key)
            }
        )
        shown = [f"{key}={read[path][key]}" for key in keys if key in read[path]][:3]
        apart[path] = escape(", ".join(shown))
    return apart


def config_summary(path: Path) -> str:
    """``model · task`` of a config file, or why it cannot be read: one bad file must not hide the rest."""
    from memtool.config import read_yaml

    try:
        raw = read_yaml(path)
    except UserError as error:
        return f"[red]unreadable[/]: {escape(str(error).removeprefix(f'{path}: '))}"
    names = [raw.get(section) for section in ("model", "task")]
    return " · ".join(str(part.get("name", "?")) if isinstance(part, dict) else "?" for part in names)
