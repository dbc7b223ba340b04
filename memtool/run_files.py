"""Reading a finished run's files for the scripts beside the CLI (results tables, probes), without
importing torch: each refuses a folder that is not a finished run, or a run of another kind, in one line."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from memtool.errors import UserError


def finished_run(run: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A finished run's ``summary.json`` and ``config.yaml``."""
    if not run.is_dir():
        raise UserError(f"{run}: no such run directory")
    for name in ("summary.json", "config.yaml"):
        if not (run / name).is_file():
            raise UserError(f"{run}: no {name} (not a run directory, or the run has not finished)")
    return json.loads((run / "summary.json").read_text()), yaml.safe_load((run / "config.yaml").read_text())


def require_task(run: Path, config: dict[str, Any], tasks: Collection[str], needed: str) -> None:
    """Refuse a run whose task is not one of ``tasks``; ``needed`` names what the script reads."""
    model, task = config.get("model", {}).get("name"), config.get("task", {}).get("name")
    if task not in tasks:
        raise UserError(f"{run}: {needed} is needed, this is {model} on {task}")


def distinct(runs: list[Path]) -> list[Path]:
    """The runs, refusing one given twice (it would count twice in a mean)."""
    seen: dict[Path, Path] = {}
    for run in runs:
        again = seen.setdefault(run.resolve(), run)
        if again is not run:
            raise UserError(f"{run}: given twice (as {again})")
    return runs
