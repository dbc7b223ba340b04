"""The data cache: prepared bAbI files are read back, not parsed again, and never served stale."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from memtool.tasks.babi import task as babi_task
from memtool.tasks.babi.task import BabiData, BabiParams, BabiTask


def _task(directory: Path, state: dict | None = None) -> BabiTask:
    return BabiTask(BabiParams(memory_size=20), BabiData(path=str(directory)), seed=0, state=state)


def _same(a: BabiTask, b: BabiTask) -> None:
    assert a.vocab.words == b.vocab.words and a.task_numbers == b.task_numbers
    for name in ("train", "valid", "test"):
        for field in a.splits[name].__dataclass_fields__:
            left, right = getattr(a.splits[name], field), getattr(b.splits[name], field)
            assert torch.equal(left, right) if isinstance(left, torch.Tensor) else left == right


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("MEMTOOL_CACHE_DIR", str(directory))
    return directory


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise AssertionError("parsed the files again")

    monkeypatch.setattr(babi_task, "read_task_file", fail)


def test_a_second_build_reads_the_cache_instead_of_the_files(
    babi_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _task(babi_dir)
    assert len(list((cache / "babi").glob("*.pt"))) == 1
    _no_parsing(monkeypatch)
    _same(_task(babi_dir), first)


def test_a_changed_file_is_parsed_again_even_with_its_old_size_and_time(babi_dir: Path, cache: Path) -> None:
    before = _task(babi_dir)
    train = sorted(babi_dir.glob("qa1_*_train.txt"))[0]
    text, stat = train.read_text(), train.stat()
    assert "garden" in text and "moon" not in text
    train.write_text(text.replace("garden", "moon!!"))  # same length, as a copy with `cp -p` could be
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert train.stat().st_size == stat.st_size and train.stat().st_mtime_ns == stat.st_mtime_ns
    after = _task(babi_dir)
    assert "moon" in after.vocab.words and "moon" not in before.vocab.words
    assert len(list((cache / "babi").glob("*.pt"))) == 2


def test_the_task_number_of_a_file_name_is_part_of_the_key(
    babi_dir: Path, tmp_path: Path, cache: Path
) -> None:
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for path in babi_dir.glob("qa1_*.txt"):  # the same bytes, filed as task 3
        (renamed / path.name.replace("qa1_", "qa3_")).symlink_to(path)
    assert _task(babi_dir).task_numbers[0] == 1
    assert _task(renamed).task_numbers == [3]


def test_a_failed_write_is_skipped(babi_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(*_: object) -> None:
        raise RuntimeError("unexpected pos 98368 vs 98304")  # how torch.save reports a short write

    monkeypatch.setattr(torch, "save", full_disk)
    _task(babi_dir)
    assert not list((cache / "babi").glob("*")) and not list((cache / "babi").glob(".*"))


def test_a_given_vocabulary_is_part_of_the_key(babi_dir: Path, cache: Path) -> None:
    trained = _task(babi_dir)
    smaller = {"vocabulary": trained.vocab.words[:5]}
    rebuilt = _task(babi_dir, state=smaller)
    assert rebuilt.vocab.words == smaller["vocabulary"]
    assert rebuilt.splits["test"].unknown_words > trained.splits["test"].unknown_words


def test_an_unreadable_entry_is_made_again(babi_dir: Path, cache: Path) -> None:
    first = _task(babi_dir)
    (entry,) = (cache / "babi").glob("*.pt")
    entry.write_bytes(b"not a torch file")
    _same(_task(babi_dir), first)
    assert torch.load(entry, weights_only=True)["vocabulary"] == first.vocab.words  # written again


def test_off_and_unwritable_caches_only_cost_time(
    babi_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMTOOL_CACHE_DIR", "off")
    reference = _task(babi_dir)
    blocker = tmp_path / "a-file"  # a cache directory under a file cannot be made, even by root
    blocker.write_text("")
    monkeypatch.setenv("MEMTOOL_CACHE_DIR", str(blocker / "memtool"))
    _same(_task(babi_dir), reference)


def test_each_kind_keeps_its_most_recently_used_entries(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from memtool import cache as disk

    monkeypatch.setattr(disk, "KEEP", 3)
    for key in range(3):
        disk.cached("demo", key, lambda key=key: {"key": key})
    first = next(p for p in (cache / "demo").glob("*.pt") if torch.load(p, weights_only=True)["key"] == 0)
    os.utime(first, ns=(1, 1))  # long unused ...
    disk.cached("demo", 0, lambda: {"key": -1})  # ... until read again: now the most recent
    for key in range(3, 5):
        disk.cached("demo", key, lambda key=key: {"key": key})
    kept = sorted(torch.load(p, weights_only=True)["key"] for p in (cache / "demo").glob("*.pt"))
    assert kept == [0, 3, 4]


def test_generated_videos_are_drawn_once_per_setting(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from memtool.build import build_task
    from memtool.config import build_config
    from memtool.tasks.video import shapes_task

    raw = yaml.safe_load((Path(__file__).parent / "smoke" / "captioner-shapes_captions.yaml").read_text())
    first = build_task(build_config(raw)).splits
    monkeypatch.setattr(shapes_task, "generate_shapes", lambda *_, **__: pytest.fail("drew the videos again"))
    again = build_task(build_config(raw)).splits
    for name in ("train", "valid", "test"):
        assert torch.equal(first[name].frames, again[name].frames)
        assert first[name].references == again[name].references
    raw["data"]["test_pairs"] = "seen"  # another setting: drawn, not read
    monkeypatch.undo()
    monkeypatch.setenv("MEMTOOL_CACHE_DIR", str(cache))
    seen = build_task(build_config(raw)).splits
    assert not torch.equal(seen["test"].frames, first["test"].frames)
    assert torch.equal(seen["train"].frames, first["train"].frames)


def test_the_cache_command_lists_and_clears(
    babi_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from memtool.cli import app

    _task(babi_dir)
    listed = CliRunner().invoke(app, ["cache"])
    assert listed.exit_code == 0 and str(cache) in listed.stdout and "babi" in listed.stdout
    cleared = CliRunner().invoke(app, ["cache", "--clear"])
    assert cleared.exit_code == 0 and "cleared" in cleared.stdout
    assert not list((cache / "babi").glob("*.pt"))
    assert "(empty)" in CliRunner().invoke(app, ["cache"]).stdout
    monkeypatch.setenv("MEMTOOL_CACHE_DIR", "off")
    assert "off" in CliRunner().invoke(app, ["cache"]).stdout


def test_files_memtool_did_not_write_survive_pruning_and_clearing(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from memtool import cache as disk
    from memtool.cli import app

    monkeypatch.setattr(disk, "KEEP", 1)
    (cache / "demo").mkdir(parents=True)
    theirs = [cache / "demo" / "model.pt", cache / "demo" / ".notes.tmp"]
    for path in theirs:  # a cache directory pointed at a folder of the user's
        path.write_text("the user's")
    for key in range(3):
        disk.cached("demo", key, lambda key=key: {"key": key})
    assert len(list((cache / "demo").glob(disk.ENTRY))) == 1
    assert CliRunner().invoke(app, ["cache", "--clear"]).exit_code == 0
    assert not list((cache / "demo").glob(disk.ENTRY))
    assert all(path.read_text() == "the user's" for path in theirs)
