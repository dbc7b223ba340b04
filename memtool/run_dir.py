"""The files of a run directory: the resolved config, the versions, the metrics log and the summary, and
who owns the directory while a run trains.

Checkpoints (``best.pt``, ``last.pt``) are ``memtool.checkpoint``'s; this module owns the rest, so the
training loop never builds a path. memtool writes only into a new or empty folder, or one it made itself
(it holds ``.memtool-run``), and one process at a time (a lock held for the life of the run).
``default_run_dir`` picks ``runs/<config name>`` when no ``--out`` is given.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from memtool import jsonio
from memtool.checkpoint import (
    BEST,
    LAST,
    RESTART_BEST_PREFIX,
    RESTARTS_FOLDER,
    RUN_MARKER,
    atomic_write,
    versions,
)
from memtool.errors import UserError

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, VERSIONS_FILE = (
    "config.yaml",
    "metrics.jsonl",
    "summary.json",
    "versions.json",
)
MARKER, LOCK = RUN_MARKER, ".lock"


class RunDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.best, self.last = path / BEST, path / LAST
        self._lock: int | None = None

    # -- ownership -----------------------------------------------------------------------------------
    def is_run(self) -> bool:
        """A folder memtool made: its marker, or (runs of memtool 0.1) a ``last.pt``."""
        return (self.path / MARKER).is_file() or self.last.is_file()

    def claim(self) -> None:
        """Own the folder for the life of this process: a second ``train`` on it is refused.

        ``flock`` is released by the kernel when the process ends however it ends (even SIGKILL), so a
        lock left by a killed run never blocks the next one. A folder that holds files memtool did not
        write is refused: memtool never writes over the user's files."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"{self.path}: exists and is not a folder; choose another --out")
        if self.path.is_dir() and any(self.path.iterdir()) and not self.is_run():
            raise UserError(
                f"{self.path}: a folder that is not empty and not a memtool run; memtool does not write "
                "into folders of yours: choose a new or empty --out"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / MARKER).touch()
        self._lock = _lock(self.path / LOCK)

    def remove(self) -> None:
        """Delete a folder this process made and filled only with memtool's own files (and folders: a
        run of parallel restarts holds one per restart)."""
        self.release()
        shutil.rmtree(self.path)

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor releases the flock
            self._lock = None

    # -- files ---------------------------------------------------------------------------------------
    def restart_best(self, restart: int) -> Path:
        """The best checkpoint of one restart, kept beside ``best.pt`` when a run trains several."""
        return self.path / f"{RESTART_BEST_PREFIX}{restart}.pt"

    def start_fresh(self) -> None:
        """A new run in a folder memtool made before (a run that died before its first checkpoint): its
        records would mix with the new ones."""
        (self.path / METRICS_FILE).unlink(missing_ok=True)
        (self.path / SUMMARY_FILE).unlink(missing_ok=True)
        self.best.unlink(missing_ok=True)
        for path in self.path.glob(f"{RESTART_BEST_PREFIX}*.pt"):
            path.unlink()

    def write_config(self, resolved: dict[str, Any], source: str) -> None:
        """config.yaml, headed by the config it came from; a resumed run keeps the first header."""
        path = self.path / CONFIG_FILE
        header = f"# resolved from {source}\n"
        if path.exists():
            header = path.read_text(encoding="utf-8").splitlines(keepends=True)[0]
        text = header + yaml.safe_dump(resolved, sort_keys=False)
        atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
        versions_text = json.dumps(versions(), indent=2) + "\n"
        atomic_write(self.path / VERSIONS_FILE, lambda handle: handle.write(versions_text.encode("utf-8")))

    def append_record(self, record: dict[str, Any]) -> None:
        path = self.path / METRICS_FILE
        try:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(jsonio.dumps(record) + "\n")
        except OSError as error:
            raise _naming(error, path) from None

    def records(self) -> list[dict[str, Any]]:
        return self.read_records()[0]

    def read_records(self) -> tuple[list[dict[str, Any]], int]:
        """The log's records, and how many lines could not be read: a torn last line from a kill during
        an append, or a line that is not one of ours. The log is a record of the run, not its state:
        ``last.pt`` is the truth, so an unreadable line is dropped, never fatal."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return [], 0
        records, bad = [], 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                bad += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("restart"), int) and "step" in record:
                records.append(record)
            else:
                bad += 1
        return records, bad

    def trim_records(self, restart: int, step: int, together: bool = False) -> int:
        """Keep the records up to the checkpoint we resume from (the resumed run writes the rest again):
        of the earlier restarts and this one's up to ``step``, or, restarts trained ``together``, every
        restart's up to ``step``; returns how many unreadable lines were dropped."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return 0
        records, bad = self.read_records()
        if together:
            kept = [r for r in records if r["step"] <= step]
        else:
            kept = [r for r in records if (r["restart"], r["step"]) <= (restart, step)]
        text = "".join(jsonio.dumps(r) + "\n" for r in kept)
        atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
        return bad

    def write_summary(self, summary: dict[str, Any]) -> None:
        text = jsonio.dumps(summary, indent=2) + "\n"
        atomic_write(self.path / SUMMARY_FILE, lambda handle: handle.write(text.encode("utf-8")))


def _lock(path: Path) -> int | None:
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock, as before
        return None
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.read(descriptor, 64).decode(errors="replace").strip() or "?"
        os.close(descriptor)
        raise UserError(
            f"{path.parent}: another memtool train (pid {owner}) is writing this run; wait for it to end "
            "or choose another --out"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(descriptor, f"{os.getpid()}\n".encode())
    return descriptor


def _naming(error: OSError, path: Path) -> OSError:
    """The same error, naming the file it was about (a full disk names none)."""
    if error.filename is None:
        error.filename = str(path)
    return error


class ReadOnlyRunDirectory(RunDirectory):
    """The run directory as a data-parallel process other than the first sees it: it reads checkpoints
    and writes nothing (the first process owns the folder, its lock and every file)."""

    def claim(self) -> None:
        pass

    def remove(self) -> None:
        pass

    def start_fresh(self) -> None:
        pass

    def write_config(self, resolved: dict[str, Any], source: str) -> None:
        pass

    def append_record(self, record: dict[str, Any]) -> None:
        pass

    def trim_records(self, restart: int, step: int, together: bool = False) -> int:
        return 0

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass


def resumable(folder: Path) -> bool:
    """A run to resume: its ``last.pt``, or the restarts of a ``--parallel-restarts`` run."""
    return (folder / LAST).exists() or (folder / RESTARTS_FOLDER).is_dir()


def _last_saved(folder: Path) -> float:
    """When the run last saved a checkpoint: its own, or any of its restarts'."""
    saved = [path for path in (folder / "last.pt", *folder.glob("restarts/*/last.pt")) if path.exists()]
    return max((path.stat().st_mtime for path in saved), default=0.0)


def default_run_dir(config_path: Path, resume: bool) -> Path:
    """``runs/<config name>``; a fresh run never overwrites one, a resume takes the newest of that name.

    A run's own ``config.yaml`` resumes that run."""
    if resume and config_path.name == "config.yaml" and resumable(config_path.parent):
        return config_path.parent
    base = Path("runs") / config_path.stem
    candidates = [base, *sorted(base.parent.glob(f"{base.name}-*"))] if base.parent.exists() else [base]
    existing = [c for c in candidates if resumable(c)]
    if resume:
        return max(existing, key=_last_saved) if existing else base
    if not base.exists():
        return base
    number = 2
    while Path(f"{base}-{number}").exists():
        number += 1
    return Path(f"{base}-{number}")
