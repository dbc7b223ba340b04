from pathlib import Path

import pytest
import torch

from memtool.errors import UserError
from memtool.tasks.babi.task import BabiData, BabiParams, BabiTask
from memtool.tasks.babi.tensors import Vocabulary, batch_from_split, padding_sizes, tensorise
from memtool.tasks.babi.text import parse_lines

LINES = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Mary went to the office.
4 Where is Mary? \toffice\t3
5 Sandra went to the garden.
6 Where is John? \thallway\t2
1 Daniel moved to the kitchen.
2 Where is Daniel? \tkitchen\t1
""".splitlines()


def _split(memory_size: int = 50):
    stories = parse_lines(LINES, task=1)
    vocab = Vocabulary.build(stories)
    return tensorise(stories, vocab, memory_size), vocab


def test_vocabulary_puts_nil_first_and_maps_unknown_words_to_it() -> None:
    _, vocab = _split()
    assert vocab.words[0] == "<nil>"
    assert vocab.encode(["mary", "zebra"]) == [vocab.index["mary"], 0]
    assert vocab.unknown(["mary", "zebra"]) == ["zebra"]


def test_memory_window_is_capped_to_the_most_recent_sentences() -> None:
    split, _ = _split(memory_size=2)
    assert split.memory_count.tolist() == [2, 2, 1]
    # question 2 (about John, fact = sentence 2) falls outside a 2-sentence window of sentences 3-4
    assert split.supporting[:, 0].tolist() == [1, -1, 0]
    full, _ = _split(memory_size=50)
    assert full.memory_count.tolist() == [3, 4, 1]
    assert full.supporting[:, 0].tolist() == [2, 1, 0]


def test_batches_are_trimmed_to_their_own_longest_story_and_sentence() -> None:
    split, vocab = _split()
    batch = batch_from_split(split, torch.tensor([2]))
    assert batch.inputs["story"].shape == (1, 1, 5)  # "daniel moved to the kitchen": 5 words
    batch = batch_from_split(split, torch.tensor([0, 2]))
    assert batch.inputs["story"].shape[:2] == (2, 3)
    story = batch.inputs["story"]
    assert story[1, 1:].abs().sum() == 0  # padding slots are blank
    words = [vocab.words[i] for i in story[0, 2].tolist() if i]
    assert words == ["mary", "went", "to", "the", "office"]
    assert batch.targets.tolist() == [vocab.index["office"], vocab.index["kitchen"]]


def test_batches_trimmed_from_host_sizes_equal_batches_trimmed_on_the_device() -> None:
    generated = {"source": "generated", "generator": {"tasks": [1, 2, 6, 7], "train_stories": 40}}
    task = BabiTask(BabiParams(tasks=[1, 2, 6, 7]), BabiData(**generated, length_buckets=4), seed=0)
    data = task.splits["train"]
    sizes = padding_sizes(data)
    assert sizes.shape == (len(data), 3) and sizes.device.type == "cpu"
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        rows = torch.randperm(len(data), generator=generator)[:7]
        trimmed = batch_from_split(data, rows, sizes[rows].amax(0).tolist())
        reference = batch_from_split(data, rows)  # sizes read from the split itself
        for name in ("story", "memory_count", "question"):
            assert torch.equal(trimmed.inputs[name], reference.inputs[name]), name
    evaluated = list(task.batches("valid", 16))
    assert sum(b.size for b in evaluated) == task.split_size("valid")


def test_validation_split_holds_out_each_task_and_depends_on_seed(babi_dir: Path) -> None:
    data = BabiData(path=str(babi_dir), validation_fraction=0.2)
    a = BabiTask(BabiParams(), data, seed=0)
    b = BabiTask(BabiParams(), data, seed=1)
    tasks = a.splits["valid"].tasks.unique().tolist()
    assert tasks == [1, 2, 6, 7, 8]
    total = a.split_size("train") + a.split_size("valid")
    assert a.split_size("valid") == pytest.approx(0.2 * total, abs=5)
    assert not torch.equal(a.splits["valid"].questions, b.splits["valid"].questions)
    tail = BabiTask(BabiParams(), data.model_copy(update={"validation_split": "tail"}), seed=0)
    assert torch.equal(
        tail.splits["valid"].memory_end, BabiTask(BabiParams(), tail.data, seed=5).splits["valid"].memory_end
    )


def test_missing_directory_and_missing_task_are_user_errors(tmp_path: Path, babi_dir: Path) -> None:
    with pytest.raises(UserError, match=r"data\.path: bAbI directory .* not found"):
        BabiTask(BabiParams(), BabiData(path=str(tmp_path / "nope")), seed=0)
    with pytest.raises(UserError, match=r"no data for bAbI task\(s\) \[3\]"):
        BabiTask(BabiParams(tasks=[3]), BabiData(path=str(babi_dir)), seed=0)


def _cells(batches: list) -> int:
    return sum(b.inputs["story"].numel() for b in batches)


def test_length_buckets_cover_the_epoch_once_with_far_less_padding() -> None:
    generated = {"source": "generated", "generator": {"tasks": [1, 2, 6, 7], "train_stories": 60}}
    plain = BabiTask(BabiParams(tasks=[1, 2, 6, 7]), BabiData(**generated), seed=0)
    bucketed = BabiTask(BabiParams(tasks=[1, 2, 6, 7]), BabiData(**generated, length_buckets=8), seed=0)
    epoch = list(bucketed.epoch_batches(8, seed=3))
    assert len(epoch) == bucketed.batches_per_epoch(8) == len(list(plain.epoch_batches(8, seed=3)))
    answers = sorted(torch.cat([b.targets for b in epoch]).tolist())
    assert answers == sorted(bucketed.splits["train"].answers.tolist())  # every question once
    assert _cells(epoch) < 0.7 * _cells(list(plain.epoch_batches(8, seed=3)))
    resumed = list(bucketed.epoch_batches(8, seed=3, start=5))  # a resumed epoch: the same batches on
    assert all(torch.equal(a.targets, b.targets) for a, b in zip(resumed, epoch[5:], strict=True))
    with pytest.raises(ValueError, match="length_buckets"):
        BabiData(**generated, length_buckets=True)  # a bool is no pool size
    other = list(bucketed.epoch_batches(8, seed=4))
    assert not all(torch.equal(a.targets, b.targets) for a, b in zip(other, epoch, strict=False))
