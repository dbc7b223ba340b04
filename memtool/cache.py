"""A disk cache for data that takes seconds to prepare (parsing and tensorising text files), so that a
run, each restart process and each rank of a data-parallel run read it in a fraction of a second.

An entry is named by a digest of what it was made from: the source files' paths, sizes and modification
times, and the settings that shape the tensors. A changed file is a new entry, never a stale one. The
cache lives in ``$MEMTOOL_CACHE_DIR`` (``off`` switches it off), else ``$XDG_CACHE_HOME/memtool``, else
``~/.cache/memtool``. Entries are written atomically; one that cannot be read is made again, and a cache
that cannot be written is skipped: the cache only ever saves time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

FORMAT = 1  # raise when the layout of what callers store changes: old entries are then never read


def cache_dir() -> Path | None:
    """Where entries live, or None when ``MEMTOOL_CACHE_DIR=off``."""
    chosen = os.environ.get("MEMTOOL_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("off", "0", "") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "memtool"


def file_identity(path: Path) -> list[Any]:
    """What names a file's content for the cache: its absolute path, size and modification time."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def files_identity(paths: Sequence[Path]) -> list[list[Any]]:
    return [file_identity(path) for path in paths]


def cached(kind: str, key: Any, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``make()``'s dict of tensors, numbers, strings and lists, read from the cache entry named by
    ``kind`` and ``key`` (JSON-able) when there is one, else made and stored."""
    directory = cache_dir()
    if directory is None:
        return make()
    text = json.dumps([FORMAT, torch.__version__.split("+")[0], kind, key], sort_keys=True)
    path = directory / kind / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.pt"
    try:
        return torch.load(path, weights_only=True)
    except Exception:  # absent, partial or unreadable: make it again
        pass
    value = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(value, file)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    except OSError:
        pass  # a read-only or full disk: the run goes on without the cache
    return value
