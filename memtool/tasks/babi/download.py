"""``memtool data download babi``: fetch and unpack the public bAbI v1.2 archive."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from memtool.download import fetch
from memtool.errors import UserError

BABI_URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"
DOWNLOADED_MARKER = ".memtool-downloaded"  # a folder memtool unpacked into: a new download may replace it


def _inside(member: tarfile.TarInfo) -> Path | None:
    """A regular file's path below the archive's top folder (tasks_1-20_v1-2/), or None: links,
    absolute paths and ``..`` never get out of the folder unpacked into."""
    parts = PurePosixPath(member.name).parts
    if not member.isfile() or len(parts) < 2 or member.name.startswith("/") or ".." in parts:
        return None
    return Path(*parts[1:])


def _task_file(relative: Path) -> bool:
    return len(relative.parts) == 2 and relative.name.startswith("qa") and relative.suffix == ".txt"


def unpack_babi(archive: Path, to: Path, name: str | None = None) -> list[Path]:
    """Unpack the archive's ``<top>/<language>/qaN_*.txt`` files (and what lies beside them) into
    ``to/<language>/``; returns the language folders.

    The whole archive is read and checked into a scratch folder inside ``to`` first: a truncated,
    corrupt or wrong archive writes nothing into ``to``.
    """
    name = name or str(archive)
    to.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=to, prefix=".unpacking-") as scratch:
        try:
            with tarfile.open(archive, "r:*") as tar:
                wanted = [(member, path) for member in tar.getmembers() if (path := _inside(member))]
                if not any(_task_file(path) for _, path in wanted):
                    raise UserError(
                        f"{name}: no bAbI task files (<folder>/<language>/qaN_*.txt) in this archive"
                    )
                for member, path in wanted:
                    source = tar.extractfile(member)
                    if source is None:
                        continue
                    target = Path(scratch) / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with source, target.open("wb") as out:
                        shutil.copyfileobj(source, out)
                # on to the stream's end: a gzip's CRC-32 there is the only check of the whole archive,
                # and tarfile stops reading at the tar's end-of-archive blocks
                while tar.fileobj.read(1 << 20):  # type: ignore[union-attr]
                    pass
        except (tarfile.TarError, EOFError, zlib.error) as error:
            raise UserError(f"{name}: not a readable tar archive, or cut short ({error})") from None
        except OSError as error:
            if error.filename is not None:  # writing failed (a full disk), not reading the archive
                raise
            raise UserError(f"{name}: a corrupt archive ({error})") from None
        for file in sorted(p for p in Path(scratch).rglob("*") if p.is_file()):
            destination = to / file.relative_to(scratch)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, destination)
    return sorted({to / path.parts[0] for _, path in wanted if _task_file(path)})


def download_babi(
    to: Path, url: str = BABI_URL, on_progress: Callable[[int, int | None], None] | None = None
) -> list[Path]:
    """Fetch and unpack into ``to``: a new or empty folder, or one memtool downloaded into before (whose
    files the archive's replace); never a folder of the user's."""
    if to.exists() and not to.is_dir():
        raise UserError(f"--to {to}: is a file; give a folder to unpack into")
    if to.is_dir() and any(to.iterdir()) and not (to / DOWNLOADED_MARKER).exists():
        raise UserError(
            f"--to {to}: the folder holds files memtool did not download (its files would be replaced); "
            "choose a new or empty folder"
        )
    created = not to.exists()
    to.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=to, prefix=".download-") as scratch:
            archive = Path(scratch) / "babi.tar.gz"
            fetch(url, archive, on_progress)
            languages = unpack_babi(archive, to, name=url)
        (to / DOWNLOADED_MARKER).touch()
        return languages
    except BaseException:
        if created and not any(to.iterdir()):  # leave no empty folder behind a failed download
            to.rmdir()
        raise
