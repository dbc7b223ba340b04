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
    seen: set[Path] = set()
    for directory in config_dirs:
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            shown = Path(path).relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
            table.add_row(str(shown), config_summary(path))
    tables.append(table)
    return tables


def config_summary(path: Path) -> str:
    """``model · task`` of a config file, or why it cannot be read: one bad file must not hide the rest."""
    from memtool.config import read_yaml

    try:
        raw = read_yaml(path)
    except UserError as error:
        return f"[red]unreadable[/]: {escape(str(error).removeprefix(f'{path}: '))}"
    names = [raw.get(section) for section in ("model", "task")]
    return " · ".join(str(part.get("name", "?")) if isinstance(part, dict) else "?" for part in names)
