"""A disk cache for data that takes seconds to prepare (parsing and tensorising text files), so that a
run, each restart process and each rank of a data-parallel run read it in a fraction of a second.

An entry is named by a digest of what it was made from: the source files' contents (hashed: a copy that
keeps a file's size and modification time still counts as changed; hashing the 27 MB of bAbI en-10k
takes a tenth of a second), the settings that shape the tensors, and the source of the code that makes
them, so that a new parser or tensoriser never reads an old entry. The cache lives in
``$MEMTOOL_CACHE_DIR`` (``off`` switches it off), else ``$XDG_CACHE_HOME/memtool``, else
``~/.cache/memtool``; delete the folder to clear it. Each kind keeps its ``KEEP`` most recently used
entries, so edited data does not pile up. Entries are written atomically; one that cannot be read is made
again, and a cache that cannot be written (read-only, full, over quota) is skipped: the cache only ever
saves time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

FORMAT = 1  # raise when the layout of what callers store changes: old entries are then never read
KEEP = 8  # entries per kind; the least recently used beyond these are deleted when a new one is written
# only files of exactly this name are ever read, pruned or cleared, so that a cache directory pointed at a
# folder of the user's (MEMTOOL_CACHE_DIR=~, say) never loses a file memtool did not write
ENTRY = "[0-9a-f]" * 32 + ".pt"
PARTIAL = "." + "[0-9a-f]" * 32 + "-*.tmp"


def cache_dir() -> Path | None:
    """Where entries live, or None when ``MEMTOOL_CACHE_DIR=off``."""
    chosen = os.environ.get("MEMTOOL_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("off", "0", "") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "memtool"


def content_digest(path: Path) -> str:
    """SHA-256 of a file's bytes: what names its content for the cache, wherever it lies."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def cached(
    kind: str, key: Any, make: Callable[[], dict[str, Any]], code: Sequence[ModuleType] = ()
) -> dict[str, Any]:
    """``make()``'s dict of tensors, numbers, strings and lists, read from the cache entry named by
    ``kind``, ``key`` (JSON-able) and the source files of the ``code`` modules that make it, when there
    is one; else made and stored."""
    directory = cache_dir()
    if directory is None:
        return make()
    sources = [content_digest(Path(str(module.__file__))) for module in code]
    text = json.dumps([FORMAT, torch.__version__.split("+")[0], kind, key, sources], sort_keys=True)
    path = directory / kind / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.pt"
    try:
        value = torch.load(path, weights_only=True)
    except Exception:  # absent, partial or unreadable: make it again
        pass
    else:
        with contextlib.suppress(OSError):
            os.utime(path)  # used now: the last to be pruned
        return value
    value = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(value, file)
            os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide a shared cache from its other users
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        _prune(path.parent)
    except (OSError, RuntimeError):
        pass  # read-only, full or over quota (torch.save reports a short write as RuntimeError): no cache
    return value


def _prune(folder: Path) -> None:
    """Delete all but the ``KEEP`` most recently used entries of one kind."""
    entries = sorted(folder.glob(ENTRY), key=lambda entry: entry.stat().st_mtime_ns, reverse=True)
    for stale in entries[KEEP:]:
        with contextlib.suppress(OSError):  # another process may have pruned it first
            stale.unlink()


def contents() -> dict[str, tuple[int, int]]:
    """``{kind: (entries, bytes)}`` of the cache as it is now (empty when it is off or absent)."""
    directory = cache_dir()
    if directory is None or not directory.is_dir():
        return {}
    found = {}
    for kind in sorted(path for path in directory.iterdir() if path.is_dir()):
        entries = list(kind.glob(ENTRY))
        found[kind.name] = (len(entries), sum(entry.stat().st_size for entry in entries))
    return found


def clear() -> int:
    """Delete every entry (and the partial files of interrupted writes); returns the bytes freed."""
    directory = cache_dir()
    if directory is None or not directory.is_dir():
        return 0
    freed = 0
    for kind in (path for path in directory.iterdir() if path.is_dir()):
        for entry in [*kind.glob(ENTRY), *kind.glob(PARTIAL)]:
            with contextlib.suppress(OSError):
                size = entry.stat().st_size
                entry.unlink()
                freed += size
    return freed
