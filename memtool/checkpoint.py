"""Checkpoints that describe themselves, written atomically and loaded without unpickling code.

A checkpoint holds the model's name and constructor arguments, its weights, the task's state (e.g. the
vocabulary), the resolved config and the package versions, so ``eval`` and ``inspect-memory`` need nothing
but the file. ``last.pt`` also holds everything needed to resume training exactly.
"""

from __future__ import annotations

import functools
import os
import platform
import tempfile
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from memtool.errors import UserError

FORMAT = "memtool-checkpoint"
FORMAT_VERSION = 2  # 2: named optimizer, start phase and mode, task-declared metrics
BEST, LAST = "best.pt", "last.pt"
# the run directory's other names that a checkpoint's loader points to (memtool.run_dir lays them out)
RUN_MARKER, RESTARTS_FOLDER, RESTART_BEST_PREFIX = ".memtool-run", "restarts", "best-restart-"
REQUIRED = ("model_name", "model_args", "model_state", "task_state", "config")


@functools.cache  # reading the packages' metadata costs ~10 ms, and checkpoints are written often
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
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename in (None, temporary):
            error.filename = str(path)  # a full disk names no file, or the temporary one: name ours
        raise


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "versions": dict(versions()), **payload}
    atomic_write(path, lambda handle: torch.save(payload, handle))


def _damaged_entry(path: Path) -> str | None:
    """The first entry of a checkpoint's zip whose bytes fail their CRC-32: torch.load does not check,
    so a flipped byte in the weights would load and score as garbage."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except zipfile.BadZipFile:  # torch.load read it, so it is torch's older, non-zip format
        return None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint file, or the best one of a run directory, refusing anything else."""
    if path.is_dir():
        candidates = [path / BEST, path / LAST]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None and (path / RUN_MARKER).is_file():
            raise UserError(f"{path}: this run has saved no checkpoint yet (starting, or it died first)")
        if found is None:
            raise UserError(f"{path}: no {BEST} or {LAST} in this directory; is it a memtool run directory?")
        path = found
    if not path.is_file():
        hint = ""
        restart = (
            path.stem.removeprefix(RESTART_BEST_PREFIX) if path.name.startswith(RESTART_BEST_PREFIX) else None
        )
        if restart is not None and (path.parent / LAST).is_file():
            hint = (  # a run training its restarts stacked writes them as it ends or stops
                f"; a run of stacked restarts writes it when the run ends or stops: resume it with "
                f"memtool train {path.parent / 'config.yaml'} --out {path.parent} --resume, or use "
                f"{path.parent / BEST}"
            )
        process = path.parent / RESTARTS_FOLDER / str(restart) / BEST
        if restart is not None and process.is_file():  # --parallel-restarts
            hint = f"; a run of restarts in processes keeps each one's best in its own folder: {process}"
        raise UserError(f"{path}: checkpoint not found{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many types for a truncated, foreign or code-carrying file
        raise UserError(
            f"{path}: corrupt or not a memtool checkpoint (it could not be read as one)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not a memtool checkpoint")
    damaged = _damaged_entry(path)
    if damaged is not None:
        raise UserError(f"{path}: corrupt: its entry {damaged} fails its checksum (changed on disk)")
    if payload.get("format_version") == 1:
        payload = _upgrade_from_v1(payload)
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


def _upgrade_from_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """Read a version-1 checkpoint (memtool 0.1: ``train.warmup``, ``optimizer: sgd`` + ``momentum``)."""
    config = payload.get("config", {})
    train = dict(config.get("train", {}))
    warmup = train.pop("warmup", None)
    train["start_phase"] = {"mode": "linear_start", **warmup} if warmup else None
    train["optimizer"] = {"name": train.get("optimizer", "sgd")}
    momentum = train.pop("momentum", 0.0)
    if momentum:
        train["optimizer"]["momentum"] = momentum
    payload["config"] = {**config, "train": train}
    payload["mode"] = "linear_start" if payload.pop("warmup_active", False) else None
    if "training" in payload:
        old = payload["training"]["progress"]
        phase = {"warmup": "linear_start"}.get(old.get("phase"), old.get("phase", "main"))
        payload["training"]["progress"] = {
            **{k: old[k] for k in ("restart", "epoch", "batches_done", "step", "main_epochs") if k in old},
            "phase": phase,
            "phase_best_loss": old.get("warmup_best_loss", float("inf")),
            "phase_stalls": old.get("warmup_stalls", 0),
            "window_loss": old.get("epoch_loss", 0.0),
            "window_sums": {"wrong": float(old.get("epoch_wrong", 0))},
            "window_examples": old.get("epoch_examples", 0),
            "best_score": old.get("best_error", float("nan")),
            "best_loss": old.get("best_loss", float("inf")),
            "best_restart": old.get("best_restart", -1),
            "elapsed": old.get("elapsed", 0.0),
            "finished": old.get("finished", False),
        }
    payload["format_version"] = FORMAT_VERSION
    return payload
