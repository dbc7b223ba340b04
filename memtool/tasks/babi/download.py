"""``memtool data download babi``: fetch and unpack the public bAbI v1.2 archive."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from memtool.download import fetch
from memtool.errors import UserError

BABI_URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"


def unpack_babi(archive: Path, to: Path, name: str | None = None) -> list[Path]:
    """Unpack the archive's ``<top>/<language>/qaN_*.txt`` files into ``to/<language>/``.

    Members are written one by one after checking their paths, so an archive cannot write outside ``to``.
    """
    name = name or str(archive)
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 (closed by the with below)
    except (tarfile.TarError, OSError):
        raise UserError(f"{name}: not a readable tar archive") from None
    languages: set[Path] = set()
    with tar:
        for member in tar.getmembers():
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or len(parts) < 2 or member.name.startswith("/") or ".." in parts:
                continue
            relative = Path(*parts[1:])  # drop the archive's top folder (tasks_1-20_v1-2/)
            target = to / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            if source is None:
                continue
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            if relative.name.startswith("qa") and len(relative.parts) == 2:
                languages.add(to / relative.parts[0])
    if not languages:
        raise UserError(f"{name}: no bAbI task files (<folder>/<language>/qaN_*.txt) in this archive")
    return sorted(languages)


def download_babi(
    to: Path, url: str = BABI_URL, on_progress: Callable[[int, int | None], None] | None = None
) -> list[Path]:
    created = not to.exists()
    to.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=to) as scratch:
            archive = Path(scratch) / "babi.tar.gz"
            fetch(url, archive, on_progress)
            return unpack_babi(archive, to, name=url)
    except BaseException:
        if created and not any(to.iterdir()):  # leave no empty folder behind a failed download
            to.rmdir()
        raise
