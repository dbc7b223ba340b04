"""Repeat copy, associative recall and priority sort: each generator's shapes and targets, the default
scored sizes, the curriculum, and that every task's epoch is a pure function of its seed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from memtool.config import build_config
from memtool.engine import train
from memtool.tasks.algorithmic.copy import CopyParams, CopyTask
from memtool.tasks.algorithmic.priority_sort import (
    PrioritySortEval,
    PrioritySortParams,
    PrioritySortTask,
    priority_sort_sequences,
)
from memtool.tasks.algorithmic.recall import RecallParams, RecallTask, recall_sequences
from memtool.tasks.algorithmic.repeat_copy import RepeatCopyParams, RepeatCopyTask, repeat_copy_sequences
from memtool.tasks.algorithmic.sequence import Curriculum, SequenceData
from memtool.tasks.base import Target

SMOKE = Path(__file__).resolve().parent.parent / "smoke"


def test_repeat_copy_is_the_pattern_repeated_then_an_end_marker() -> None:
    inputs, targets = repeat_copy_sequences(4, 3, 5, 6, (5.5, 2.87), torch.Generator().manual_seed(0))
    assert inputs.shape == (4, 3 + 2 + 15 + 1, 8) and targets.shape == (4, 16, 7)
    pattern = inputs[:, :3, :6]
    for repeat in range(5):
        torch.testing.assert_close(targets[:, 3 * repeat : 3 * repeat + 3, :6], pattern)
    assert targets[:, :-1, 6].eq(0).all() and targets[:, -1].tolist() == [[0.0] * 6 + [1.0]] * 4
    assert inputs[:, 3, 6].eq(1).all() and inputs[:, 3, :6].eq(0).all()  # the delimiter
    torch.testing.assert_close(inputs[:, 4, 7], torch.full((4,), (5 - 5.5) / 2.87))  # the repeat count
    assert inputs[:, 5:].eq(0).all()


def test_repeat_counts_are_normalised_to_mean_0_variance_1_over_the_training_range() -> None:
    task = RepeatCopyTask(RepeatCopyParams(), SequenceData(), seed=0)
    mean, std = task.repeats_scale
    counts = torch.arange(1, 11).double()
    assert mean == pytest.approx(counts.mean().item())
    assert std == pytest.approx(counts.std(unbiased=False).item())
    assert task.test_sizes == [(10, 10), (10, 20), (20, 10)]  # the paper's Fig. 8
    assert {n for n, _ in task.valid_sizes} == {1, 5, 10} and {r for _, r in task.valid_sizes} == {1, 5, 10}


def test_associative_recall_answers_with_the_item_after_the_query() -> None:
    items, length, bits = 5, 3, 6
    inputs, targets = recall_sequences(64, items, length, bits, torch.Generator().manual_seed(1))
    block, listed = length + 1, items * (length + 1)
    assert inputs.shape == (64, listed + 2 * length + 2, bits + 2) and targets.shape == (64, length, bits)
    stored = inputs[:, :listed].view(64, items, block, bits + 2)
    assert stored[:, :, 0, bits].eq(1).all() and stored[:, :, 1:, bits:].eq(0).all()
    query = inputs[:, listed + 1 : listed + 1 + length, :bits]
    assert inputs[:, listed, bits + 1].eq(1).all() and inputs[:, listed + 1 + length, bits + 1].eq(1).all()
    positions = set()
    for row in range(64):
        matches = [i for i in range(items) if torch.equal(stored[row, i, 1:, :bits], query[row])]
        first = matches[0]
        positions.add(first)
        assert first < items - 1
        torch.testing.assert_close(targets[row], stored[row, first + 1, 1:, :bits])
    assert positions == set(range(items - 1))  # every item but the last is queried
    assert inputs[:, -length:].eq(0).all()


def test_priority_sort_writes_the_highest_priorities_first() -> None:
    inputs, targets = priority_sort_sequences(8, 20, 16, 8, torch.Generator().manual_seed(2))
    assert inputs.shape == (8, 20 + 1 + 16, 10) and targets.shape == (8, 16, 8)
    priority = inputs[:, :20, 8]
    assert priority.min() >= -1 and priority.max() <= 1
    for row in range(8):
        ranked = sorted(range(20), key=lambda i: -priority[row, i].item())[:16]
        torch.testing.assert_close(targets[row], inputs[row, ranked, :8])
    assert inputs[:, 20, 9].eq(1).all() and inputs[:, 21:].eq(0).all()


def test_priority_sort_keeps_the_trained_ratio_on_longer_lists() -> None:
    task = PrioritySortTask(PrioritySortParams(), SequenceData(), seed=0)
    assert task.test_sizes == [(20,), (30,), (40,)]
    assert [task.outputs_for(n) for n in (20, 30, 40)] == [16, 24, 32]
    chosen = PrioritySortTask(
        PrioritySortParams(), SequenceData(), seed=0, evaluation=PrioritySortEval(inputs=[25])
    )
    assert chosen.test_sizes == [(25,)]


@pytest.mark.parametrize(
    "task",
    [
        CopyTask(CopyParams(max_length=6), SequenceData(sequences_per_epoch=160), seed=0),
        RepeatCopyTask(RepeatCopyParams(max_length=4), SequenceData(sequences_per_epoch=160), seed=0),
        RecallTask(RecallParams(), SequenceData(sequences_per_epoch=160), seed=0),
        PrioritySortTask(PrioritySortParams(min_inputs=5), SequenceData(sequences_per_epoch=160), seed=0),
    ],
    ids=lambda task: task.name,
)
def test_every_task_epoch_is_a_pure_function_of_its_seed_and_resumes_mid_epoch(task) -> None:
    first = list(task.epoch_batches(16, seed=5))
    again = list(task.epoch_batches(16, seed=5, start=4))
    assert len(first) == 10 and len(again) == 6
    for a, b in zip(first[4:], again, strict=True):
        assert torch.equal(a.inputs["inputs"], b.inputs["inputs"]) and torch.equal(a.targets, b.targets)
    assert len({b.inputs["inputs"].shape[1] for b in first}) > 1  # sizes vary from batch to batch
    inputs, outputs = task.channels()
    assert all(b.inputs["inputs"].shape[2] == inputs and b.targets.shape[2] == outputs for b in first)
    a, _ = task._fixed_set("valid", task.valid_sizes[-1])
    b, _ = task._fixed_set("valid", task.valid_sizes[-1])
    assert torch.equal(a, b)


def test_a_curriculum_starts_short_and_opens_the_whole_range() -> None:
    params = CopyParams(min_length=1, max_length=20, curriculum=Curriculum(sequences=3200, start=0.1))
    task = CopyTask(params, SequenceData(sequences_per_epoch=1600), seed=0)
    early = [b.targets.shape[1] for b in task.epoch_batches(16, seed=1, epoch=0)][:20]
    late = [b.targets.shape[1] for b in task.epoch_batches(16, seed=2, epoch=2)]
    assert max(early) <= 1 + round(19 * (0.1 + 0.9 * 19 * 16 / 3200))
    assert max(late) == 20 and min(late) == 1
    plain = CopyTask(CopyParams(), SequenceData(sequences_per_epoch=1600), seed=0)
    assert max(b.targets.shape[1] for b in list(plain.epoch_batches(16, seed=1))[:20]) > 10


def test_the_summary_says_when_each_restart_reached_the_target_and_can_stop_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = yaml.safe_load((SMOKE / "ntm-copy.yaml").read_text())
    raw["train"].update(epochs=5, restarts=2, eval_every_steps=2)
    never = train(build_config(raw), tmp_path / "never")
    assert never.target is not None and never.target["kept"] is None  # 5 epochs do not learn copy
    assert never.steps == 20 and set(never.target["by_restart"]) == {"0", "1"}

    reachable = replace(CopyTask.scoring, target=Target("cost_bits", 1e9, label="anything"))
    monkeypatch.setattr(CopyTask, "scoring", reachable)
    raw["train"]["stop_at_target"] = True
    summary = train(build_config(raw), tmp_path / "stops")
    assert summary.steps == 2  # the first validation reached it; the restart ended there
    for reached in summary.target["by_restart"].values():
        assert reached["examples"] == 16 and reached["step"] == 2 and reached["seconds"] > 0
    records = [json.loads(line) for line in (tmp_path / "stops" / "metrics.jsonl").read_text().splitlines()]
    assert [r["examples_seen"] for r in records if r["restart"] == 1] == [16, 16]  # mid-epoch, then end
    saved = json.loads((tmp_path / "stops" / "summary.json").read_text())
    assert saved["target"]["kept"]["examples"] == 16


def test_a_curriculum_without_a_range_of_sizes_is_refused() -> None:
    with pytest.raises(ValueError, match="curriculum needs a range"):
        PrioritySortParams(curriculum=Curriculum(sequences=100))
    with pytest.raises(ValueError, match="curriculum needs a range"):
        CopyParams(min_length=5, max_length=5, curriculum=Curriculum(sequences=100))
    PrioritySortParams(min_inputs=10, curriculum=Curriculum(sequences=100))  # a range: fine


def test_headline_metrics_average_the_sizes_inside_the_training_range_only() -> None:
    task = PrioritySortTask(
        PrioritySortParams(min_inputs=15),
        SequenceData(),
        seed=0,
        evaluation=PrioritySortEval(inputs=[10, 17, 30]),
    )
    assert [task.trained(size) for size in task.test_sizes] == [False, True, False]


def test_inspection_shows_a_sequence_of_the_chosen_split_and_refuses_bad_positions(tmp_path: Path) -> None:
    from memtool.build import build_task, create_model, model_arguments
    from memtool.errors import UserError
    from memtool.views import InspectRequest

    config = build_config(yaml.safe_load((SMOKE / "ntm-copy.yaml").read_text()))
    task = build_task(config)
    model = create_model(config.model.name, model_arguments(config, task))
    options = task.InspectOptions(length=3, step=7)
    test = task.inspect(model, InspectRequest("test", 1, options))
    valid = task.inspect(model, InspectRequest("valid", 1, options))
    expected, _ = task._fixed_set("test", (3,))
    assert test.panels[0].values == expected[1].T.tolist()  # the very sequence eval scores
    assert test.panels[0].values != valid.panels[0].values
    assert "write head 1 at step 7" in " ".join(p.title for p in test.panels)  # counted from 1
    with pytest.raises(UserError, match="--step: 8 is out of range; this sequence has steps 1–7"):
        task.inspect(model, InspectRequest("test", 0, task.InspectOptions(length=3, step=8)))
    with pytest.raises(UserError, match="--example: the test set has 4 sequences"):
        task.inspect(model, InspectRequest("test", 4, options))

    # the memory panel keeps the rows a write head weighted ≥ 0.05 in the input phase, as the weighting
    # panels do, and says how many it left out; a signed scale, 0 in its middle
    (memory,) = [p for p in test.panels if p.title.startswith("memory after the input phase")]
    output = model(inputs=task._fixed_set("test", (3,))[0][1:2], trace_memory=True)
    written = output.trace["write_weights"][0, :4].amax((0, 1))  # 3 inputs and the delimiter
    assert memory.rows == [f"row {r}" for r in range(8) if written[r] >= 0.05]
    assert memory.value_range is not None and memory.value_range[0] == -memory.value_range[1]
    if len(memory.rows) < 8:
        assert any(note.startswith(f"memory: {8 - len(memory.rows)} row") for note in test.notes)

    # a model without write heads has no erase and add: --step is refused, not ignored
    lstm = build_config(yaml.safe_load((SMOKE / "lstm-copy.yaml").read_text()))
    baseline = create_model(lstm.model.name, model_arguments(lstm, build_task(lstm)))
    with pytest.raises(UserError, match="--step: this model has no write heads"):
        build_task(lstm).inspect(baseline, InspectRequest("test", 0, options))
    build_task(lstm).inspect(baseline, InspectRequest("test", 0, task.InspectOptions(length=3)))  # no --step


def test_a_repeat_copy_size_that_is_not_a_pair_is_named_with_its_position() -> None:
    from memtool.errors import UserError

    raw = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "smoke" / "ntm-repeat_copy.yaml").read_text()
    )
    raw["eval"] = {"sizes": [[10]]}
    with pytest.raises(UserError, match=r"eval.sizes: each size is a pair \[length, repeats\]"):
        build_config(raw, source="config.yaml")
    raw["eval"] = {"sizes": [[10, 10], [10, 0]]}
    with pytest.raises(UserError, match=r"eval.sizes\[1\]\[1\]: Input should be greater than 0"):
        build_config(raw, source="config.yaml")
