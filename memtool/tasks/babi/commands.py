"""``memtool data download babi`` and ``memtool data generate babi``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from memtool.console import program
from memtool.errors import UserError
from memtool.schema import Strict
from memtool.tasks.base import DataCommand, DataReport


class DownloadOptions(Strict):
    to: Path = Field(Path("data/babi"), description="where to unpack it")
    url: str | None = Field(None, description="another source of the same archive (file:// works)")


class GenerateOptions(Strict):
    to: Path = Field(Path("data/generated"), description="output directory")
    seed: int = Field(0, description="the same seed writes the same stories")
    train_stories: int = Field(
        200, ge=1, le=100_000, description="stories per task in the train files (5 questions each)"
    )
    test_stories: int = Field(200, ge=1, le=100_000, description="stories per task in the test files")


def download(options: DownloadOptions, report: DataReport) -> None:
    from memtool.tasks.babi.download import BABI_URL, download_babi

    source = options.url or BABI_URL
    report.message(f"fetching {source}")
    languages = download_babi(options.to, source, report.progress)
    folders = "folder" if len(languages) == 1 else "folders"
    report.message(
        f"unpacked {len(languages)} {folders} into {options.to}: {', '.join(p.name for p in languages)}"
    )
    english = (options.to / "en").resolve()
    report.message(  # the config is the repository's (configs/); the data path works from anywhere
        f"train on them with: {program()} train configs/memn2n_babi_task1.yaml --set data.path={english}"
    )


GENERATED_MARKER = ".memtool-generated"


def generate(options: GenerateOptions, report: DataReport) -> None:
    """Writes only into a new or empty folder, or one it generated before: never over real bAbI files."""
    from memtool.tasks.babi.generator import GENERATED_TASKS, write_generated

    to = options.to
    if to.is_dir() and any(to.iterdir()) and not (to / GENERATED_MARKER).exists():
        raise UserError(
            f"--to {to}: the folder holds files memtool did not generate (real bAbI files?); "
            "choose a new or empty folder"
        )
    to.mkdir(parents=True, exist_ok=True)
    (to / GENERATED_MARKER).touch()
    written = write_generated(to, GENERATED_TASKS, options.train_stories, options.test_stories, options.seed)
    report.message(f"wrote {len(written)} files to {to}")


DATA_COMMANDS: dict[str, Any] = {
    "download": DataCommand(
        "the public bAbI QA v1.2 archive (20 tasks; en, en-10k and more)", DownloadOptions, download
    ),
    "generate": DataCommand(
        "memtool's seeded bAbI-style stories (tasks 1, 2, 6, 7, 8) as bAbI files", GenerateOptions, generate
    ),
}
