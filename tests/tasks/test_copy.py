"""The copy task: generated sequences, their targets and order, the metrics in bits, a tiny NTM that learns
it, and its inspection as a table, JSON and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from memtool.cli import app
from memtool.config import build_config
from memtool.engine import train
from memtool.tasks.algorithmic.copy import CopyEval, CopyParams, CopyTask, copy_sequences
from memtool.tasks.algorithmic.sequence import SequenceData as CopyData

TINY = {
    "seed": 0,
    "device": "cpu",
    "model": {"name": "ntm", "controller_size": 32, "memory_rows": 8, "memory_width": 8},
    "task": {"name": "copy", "bits": 4, "min_length": 1, "max_length": 3},
    "data": {"sequences_per_epoch": 2048, "valid_sequences": 64, "test_sequences": 64},
    "eval": {"lengths": [3, 5]},
    "train": {
        "batch_size": 32, "epochs": 15, "lr": 0.01, "optimizer": "adam", "clip_norm": None, "clip_value": 10,
        "threads": 1,
    },
}  # fmt: skip


def test_a_sequence_is_the_pattern_a_delimiter_and_blank_answer_steps() -> None:
    inputs, targets = copy_sequences(5, 3, 4, torch.Generator().manual_seed(0))
    assert inputs.shape == (5, 7, 5) and targets.shape == (5, 3, 4)
    torch.testing.assert_close(inputs[:, :3, :4], targets)  # the pattern, then the same bits as targets
    assert inputs[:, 3, 4].eq(1).all() and inputs[:, 3, :4].eq(0).all()  # the delimiter, alone
    assert inputs[:, 4:].eq(0).all() and inputs[:, :3, 4].eq(0).all()  # answer steps are blank
    assert set(targets.unique().tolist()) <= {0.0, 1.0}


def test_an_epoch_is_a_pure_function_of_its_seed_and_resumes_mid_epoch() -> None:
    task = CopyTask(CopyParams(min_length=1, max_length=6), CopyData(sequences_per_epoch=160), seed=0)
    first = list(task.epoch_batches(16, seed=5))
    again = list(task.epoch_batches(16, seed=5, start=4))
    assert len(first) == 10 and len(again) == 6
    assert all(
        torch.equal(a.inputs["inputs"], b.inputs["inputs"]) for a, b in zip(first[4:], again, strict=True)
    )
    lengths = {b.targets.shape[1] for b in first}
    assert len(lengths) > 1 and lengths <= set(range(1, 7))
    other = list(task.epoch_batches(16, seed=6))
    assert not all(torch.equal(a.targets, b.targets) for a, b in zip(first, other, strict=False))


def test_scored_lengths_default_to_the_papers_and_validation_spans_training() -> None:
    task = CopyTask(CopyParams(), CopyData(), seed=0)
    assert task.test_lengths == [20, 30, 50, 120] and task.valid_lengths == [1, 7, 14, 20]
    chosen = CopyTask(CopyParams(max_length=5), CopyData(), seed=0, evaluation=CopyEval(lengths=[9, 5]))
    assert chosen.test_lengths == [5, 9]


def test_a_perfect_model_scores_zero_wrong_bits_and_a_blind_one_half_of_them() -> None:
    class Oracle(torch.nn.Module):
        def __init__(self, confidence: float) -> None:
            super().__init__()
            self.confidence = torch.nn.Parameter(torch.tensor(confidence))

        def forward(self, inputs):
            from memtool.models.base import ModelOutput

            length = (inputs.shape[1] - 1) // 2
            logits = torch.zeros(inputs.shape[0], inputs.shape[1], inputs.shape[2] - 1)
            logits[:, -length:] = (inputs[:, :length, :-1] * 2 - 1) * self.confidence
            return ModelOutput(prediction=logits)

    task = CopyTask(CopyParams(bits=4, max_length=3), CopyData(test_sequences=50), seed=0)
    perfect = task.evaluate(Oracle(20.0), "test", 16)
    assert perfect.metrics["bit_errors"] == 0 and perfect.metrics["cost_bits"] < 1e-3
    assert set(perfect.groups) == {"3", "30", "50", "120"}
    assert perfect.groups["120"]["bit_errors"] == 0 and perfect.groups["120"]["examples"] == 50
    blind = task.evaluate(Oracle(0.0), "test", 16)  # p = 0.5 everywhere: 1 bit of cost per bit
    assert blind.groups["3"]["cost_bits"] == pytest.approx(3 * 4)
    # the headline averages the trained lengths only, and says so
    assert blind.metrics["cost_bits"] == pytest.approx(blind.groups["3"]["cost_bits"])
    assert blind.note == "cost, wrong bits and loss: the mean over the sizes trained on (3); per length below"


@pytest.mark.slow
def test_a_tiny_ntm_learns_copy_of_up_to_3_vectors(tmp_path: Path) -> None:
    summary = train(build_config(TINY), tmp_path / "run")
    assert summary.test.groups["3"]["bit_errors"] < 0.05  # under one wrong bit in 20 sequences
    assert summary.test.metrics["cost_bits"] < 0.5


def test_inspection_shows_inputs_outputs_weightings_and_memory_three_ways(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY, "train": {**TINY["train"], "epochs": 1}}))
    runner = CliRunner()
    assert runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "run")]).exit_code == 0
    table = runner.invoke(app, ["inspect-memory", str(tmp_path / "run"), "--length", "3", "--step", "1"])
    assert table.exit_code == 0, table.output
    for text in (
        "input",
        "target",
        "output",
        "write weighting, head 1",
        "read weighting",
        "memory after",
        "erase",
    ):
        assert text in table.output, text
    shown = runner.invoke(app, ["inspect-memory", str(tmp_path / "run"), "--json"])
    view = json.loads(shown.stdout)
    read = next(p for p in view["panels"] if p["title"].startswith("read weighting"))
    assert len(read["columns"]) == 2 * 3 + 1  # every time step of a length-3 sequence
    for name in ("write_weights", "read_weights"):  # every row's weight for scripts: (time, head, row)
        weights = torch.tensor(view["facts"][name])
        assert weights.shape == (2 * 3 + 1, 1, TINY["model"]["memory_rows"])
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    figure = tmp_path / "ntm.png"
    result = runner.invoke(app, ["inspect-memory", str(tmp_path / "run"), "--png", str(figure)])
    assert result.exit_code == 0, result.output
    import matplotlib.image

    pixels = matplotlib.image.imread(figure)
    assert pixels.shape[0] > 300 and pixels.std() > 0.05
    bad = runner.invoke(app, ["inspect-memory", str(tmp_path / "run"), "--step", "99"])
    assert bad.exit_code == 2 and "--step" in bad.stderr
