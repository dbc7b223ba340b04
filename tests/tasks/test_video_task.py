"""The captioning task end to end on tiny generated videos: the regularizer is logged on its own and
off at λ = 0, `eval --json` has the promised keys, and the test split holds the held-out pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from memtool.cli import app
from memtool.config import build_config
from memtool.engine import train

pytest.importorskip("pycocoevalcap")
SMOKE = Path(__file__).resolve().parent.parent / "smoke" / "captioner-shapes_captions.yaml"


def test_the_regularizer_is_logged_beside_the_caption_loss_and_off_at_lambda_zero(tmp_path: Path) -> None:
    raw = yaml.safe_load(SMOKE.read_text())
    train(build_config(raw), tmp_path / "reg")
    raw["model"]["reg_lambda"] = 0.0
    train(build_config(raw), tmp_path / "noreg")
    with_reg = [json.loads(line) for line in (tmp_path / "reg" / "metrics.jsonl").read_text().splitlines()]
    without = [json.loads(line) for line in (tmp_path / "noreg" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train_attention_reg"] >= 0 for r in with_reg) and "train_word_accuracy" in with_reg[0]
    assert all("train_attention_reg" not in r for r in without)
    assert {"valid_cider", "valid_bleu4", "valid_repeat_rate"} <= set(with_reg[0])

    result = CliRunner().invoke(app, ["eval", str(tmp_path / "reg"), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert {"bleu4", "cider", "rouge_l", "repeat_rate", "coverage_error"} <= set(metrics)
    assert 0 <= metrics["repeat_rate"] <= 100 and metrics["coverage_error"] >= 0

    result = CliRunner().invoke(app, ["inspect-memory", str(tmp_path / "reg"), "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    frames = raw["task"]["frames"]
    (strip,) = view["strips"]  # the video's frames above the attention grid, one picture per column
    assert len(strip["images"]) == frames == len(view["panels"][0]["columns"])
    size = raw["task"]["size"]
    assert [len(strip["images"][0]), len(strip["images"][0][0]), len(strip["images"][0][0][0])] == [
        size,
        size,
        3,
    ]
    assert set(view["facts"]) >= {"caption", "references", "tau", "regularizer", "coverage_error"}
    attention = view["panels"][0]["values"]
    assert all(abs(sum(row) - 1) < 1e-4 for row in attention)  # every word's attention sums to 1


def test_the_test_split_shows_the_held_out_pairs_and_training_never_does() -> None:
    from memtool.build import build_task

    raw = yaml.safe_load(SMOKE.read_text())
    task = build_task(build_config(raw))
    held_out = [" ".join(pair) for pair in build_config(raw).task.params.held_out]
    train_text = " ".join(c for refs in task.splits["train"].references for c in refs)
    assert not any(pair in train_text for pair in held_out)
    assert all(any(pair in " ".join(refs) for pair in held_out) for refs in task.splits["test"].references)


def test_a_seen_pairs_test_split_draws_fresh_videos_without_the_held_out_pairs() -> None:
    from memtool.build import build_task

    raw = yaml.safe_load(SMOKE.read_text())
    raw.setdefault("data", {})["test_pairs"] = "seen"
    task = build_task(build_config(raw))
    held_out = [" ".join(pair) for pair in build_config(raw).task.params.held_out]
    test = [" ".join(refs) for refs in task.splits["test"].references]
    assert not any(pair in text for pair in held_out for text in test)
    assert test != [" ".join(refs) for refs in task.splits["valid"].references]  # not the valid split again
