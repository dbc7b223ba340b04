"""Runs written by memtool 0.1 (checkpoint format 1) still score, inspect and resume, and a resumed one ends
where 0.1 itself ended: bit-identical through the contract refactor, and within float noise since the
MemN2N step sums its embedding gradients in one call (2026-11-29), in another order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from memtool.build import restore
from memtool.checkpoint import load_checkpoint
from memtool.config import build_config
from memtool.engine import train
from memtool.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "v1"


def test_a_format_1_checkpoint_loads_with_its_config_translated() -> None:
    payload = load_checkpoint(FIXTURES / "whole_best.pt")
    assert payload["format_version"] == 2
    assert payload["config"]["train"]["start_phase"] == {
        "mode": "linear_start",
        "epochs": 1,
        "lr": None,
        "until_plateau": False,
        "patience": 1,
    }
    assert payload["config"]["train"]["optimizer"] == {"name": "sgd", "momentum": 0.5}
    _, task, model = restore(payload)
    result = task.evaluate(model, "test", 64)
    recorded = json.loads((FIXTURES / "whole_summary.json").read_text())
    assert result.metrics["error"] == pytest.approx(recorded["test"]["metrics"]["error"])
    assert result.metrics["loss"] == pytest.approx(recorded["test"]["metrics"]["loss"], rel=1e-5)


def test_a_format_1_run_killed_midway_resumes_to_what_0_1_computed(tmp_path: Path) -> None:
    run = tmp_path / "crashed"
    run.mkdir()
    shutil.copy(FIXTURES / "crashed_last.pt", run / "last.pt")
    saved = load_checkpoint(run / "last.pt")
    assert saved["training"]["progress"]["step"] == 4 and saved["training"]["progress"]["phase"] == "main"
    train(build_config(saved["config"]), run, resume=True)
    ours = load_checkpoint(run / "last.pt")["model_state"]
    theirs = load_checkpoint(FIXTURES / "whole_last.pt")["model_state"]
    for key in theirs:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6)
    old = [json.loads(line) for line in (FIXTURES / "whole_metrics.jsonl").read_text().splitlines()]
    new = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    expected = [r["valid_loss"] for r in old if r["step"] > 4]
    assert [r["valid_loss"] for r in new] == pytest.approx(expected, rel=1e-6)


def test_a_format_1_config_file_names_the_new_keys() -> None:
    raw = {
        "model": {"name": "memn2n"},
        "task": {"name": "babi"},
        "train": {"warmup": {"epochs": 3}, "momentum": 0.9},
    }
    with pytest.raises(UserError, match=r"train\.warmup: renamed .*train\.start_phase") as caught:
        build_config(raw)
    assert "train.momentum: moved to train.optimizer" in str(caught.value)
