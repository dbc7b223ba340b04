"""A real ``memtool train`` killed with SIGKILL at random moments, again and again (during a step, a
checkpoint write, a metrics append), resumed each time, ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from memtool.checkpoint import load_checkpoint
from tests.helpers import tiny_config

pytestmark = pytest.mark.slow  # a dozen real processes

CONFIG = tiny_config(
    model={"random_noise": 0.1},
    data={"source": "generated", "generator": {"tasks": [1], "train_stories": 200, "test_stories": 10}},
    train={
        "epochs": 8,
        "batch_size": 16,
        "checkpoint_every_steps": 1,  # a checkpoint write at every step: kills land inside them too
        "eval_every_steps": 7,  # and metrics appends between epochs
        "start_phase": {"mode": "linear_start", "epochs": 2},
        "lr_decay": {"every_epochs": 2},
        "restarts": 2,
    },
)


def _train(config: Path, run: Path, resume: bool) -> subprocess.Popen:
    arguments = [sys.executable, "-m", "memtool", "train", str(config), "--out", str(run)]
    return subprocess.Popen(
        [*arguments, "--resume"] if resume else arguments,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def untimed(path: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(x).items() if k not in ("elapsed", "examples_per_second")}
        for x in path.read_text().splitlines()
    ]


def _finished(run: Path) -> bool:
    last = run / "last.pt"
    return last.exists() and load_checkpoint(last)["training"]["progress"]["finished"]


def test_random_sigkills_then_resume_end_like_an_uninterrupted_run(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    reference = _train(config, tmp_path / "reference", resume=False)
    assert reference.wait(timeout=600) == 0, reference.stderr.read()

    run = tmp_path / "killed"
    chance = random.Random(7)
    kills = 0
    while kills < 8 and not _finished(run):
        process = _train(config, run, resume=(run / "last.pt").exists())
        # torch's import takes a second or two; then the run trains: kill it somewhere in there
        time.sleep(chance.uniform(1.5, 4.0))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
    while not _finished(run):
        finishing = _train(config, run, resume=(run / "last.pt").exists())
        assert finishing.wait(timeout=600) == 0, finishing.stderr.read()
    assert kills >= 4, "the runs ended before they could be killed: make CONFIG longer"

    for name in ("best.pt", "last.pt"):
        a = load_checkpoint(tmp_path / "reference" / name)["model_state"]
        b = load_checkpoint(run / name)["model_state"]
        assert all(torch.equal(a[key], b[key]) for key in a), name
    assert untimed(run / "metrics.jsonl") == untimed(tmp_path / "reference" / "metrics.jsonl")
    a, b = (json.loads((p / "summary.json").read_text()) for p in (tmp_path / "reference", run))
    assert a["test"] == b["test"] and a["best_restart"] == b["best_restart"]
