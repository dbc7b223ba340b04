"""Checkpoints that describe themselves, written atomically and loaded without unpickling code.

A checkpoint holds the model's name and constructor arguments, its weights, the task's state (e.g. the
vocabulary), the resolved config and the package versions, so ``eval`` and ``inspect-memory`` need nothing
but the file. ``last.pt`` also holds everything needed to resume training exactly.
"""

from __future__ import annotations

import os
import platform
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from memtool.errors import UserError

FORMAT = "memtool-checkpoint"
FORMAT_VERSION = 1
BEST, LAST = "best.pt", "last.pt"
REQUIRED = ("model_name", "model_args", "model_state", "task_state", "config")


def versions() -> dict[str, str]:
    """Versions of Python and the packages a result depends on, stored with every run."""
    found = {"python": platform.python_version()}
    for package in ("memtool", "torch", "typer", "rich", "pyyaml", "pydantic"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it over ``path``.

    A kill at any moment leaves either the old file or the new one, never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes files private; a run's files are not
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": versions(), **payload}
    atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint file, or the best one of a run directory, refusing anything else."""
    if path.is_dir():
        candidates = [path / BEST, path / LAST]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise UserError(f"{path}: no {BEST} or {LAST} in this directory; is it a memtool run directory?")
        path = found
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for a truncated, foreign or code-carrying file
        raise UserError(
            f"{path}: corrupt or not a memtool checkpoint (it could not be read as one)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a memtool checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise UserError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not supported "
            f"(this memtool reads version {FORMAT_VERSION})"
        )
    missing = [key for key in REQUIRED if key not in payload]
    if missing:
        raise UserError(f"{path}: incomplete memtool checkpoint, missing {', '.join(missing)}")
    payload["path"] = str(path)
    return payload
