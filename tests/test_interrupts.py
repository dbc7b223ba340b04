"""Ctrl-C and SIGKILL against a real ``memtool train`` process, then ``--resume``: the run must end exactly
where an uninterrupted one ends."""

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from memtool.checkpoint import load_checkpoint
from tests.helpers import memtool_process, tiny_config

pytestmark = pytest.mark.slow  # real training runs end to end

CONFIG = tiny_config(
    data={"source": "generated", "generator": {"tasks": [1], "train_stories": 300, "test_stories": 10}},
    train={"epochs": 25, "checkpoint_every_steps": 5, "start_phase": {"mode": "linear_start", "epochs": 2}},
)


def _memtool(*args: object) -> subprocess.Popen:
    return memtool_process(*args, merge_output=True)


def _wait_for_checkpoint(run: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (run / "last.pt").exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("signals")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    reference = _memtool("train", config, "--out", root / "reference")
    output, _ = reference.communicate(timeout=300)
    assert reference.returncode == 0, output
    return config, root / "reference"


def _assert_same_weights(run: Path, reference: Path) -> None:
    for name in ("best.pt", "last.pt"):
        a, b = load_checkpoint(run / name)["model_state"], load_checkpoint(reference / name)["model_state"]
        assert all(torch.equal(a[key], b[key]) for key in a), name


@pytest.mark.parametrize("how", ["sigkill", "ctrl-c", "sigterm"])
def test_interrupted_run_resumes_to_the_uninterrupted_result(setup: tuple[Path, Path], how: str) -> None:
    config, reference = setup
    run = config.parent / how
    process = _memtool("train", config, "--out", run)
    _wait_for_checkpoint(run, process)
    if how == "sigkill":
        process.kill()
        process.wait(timeout=30)
    else:  # Ctrl-C, or SIGTERM from a scheduler or torchrun: save between two steps and stop
        process.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 130, output
        assert "interrupted" in output and "--resume" in output
    progress = load_checkpoint(run / "last.pt")["training"]["progress"]
    assert not progress["finished"] and progress["main_epochs"] < 25  # it really stopped midway

    resumed = _memtool("train", config, "--out", run, "--resume")
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert "resuming" in output and re.search(r"resuming from last\.pt: \d+ epochs done.*, step \d+", output)
    _assert_same_weights(run, reference)
