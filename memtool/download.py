"""Fetch a file over any URL urllib can open, ``file://`` included (which is how the tests run offline)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from memtool.errors import UserError

CHUNK = 1 << 20


def fetch(url: str, destination: Path, on_progress: Callable[[int, int | None], None] | None = None) -> None:
    """Stream ``url`` into ``destination``; ``on_progress(bytes_so_far, total_or_None)`` after each chunk."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, destination.open("wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                done += len(chunk)
                if on_progress:
                    on_progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise UserError(f"{url}: download failed: {reason}") from None
