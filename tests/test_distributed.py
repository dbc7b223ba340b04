"""Data-parallel training: `memtool train --nproc 2` runs two real CPU processes under torchrun (gloo),
takes the steps one process takes (within float noise), writes the run directory once, resumes, and
reports bad input as one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from memtool.checkpoint import load_checkpoint
from memtool.config import build_config
from memtool.engine import train
from tests.helpers import memtool_process

ROOT = Path(__file__).resolve().parent.parent
NTM_COPY = ROOT / "tests" / "smoke" / "ntm-copy.yaml"
FEATURES = ROOT / "tests" / "smoke" / "captioner-video_features.yaml"


def _two_processes(*args: object) -> tuple[int, str, str]:
    process = memtool_process("train", *args, "--nproc", 2)
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def _same_weights(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a)["model_state"], load_checkpoint(b)["model_state"]
    for key in first:
        assert torch.allclose(first[key], second[key], atol=1e-5), key


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("one") / "run"
    train(build_config(yaml.safe_load(NTM_COPY.read_text())), run)
    return run


def test_two_processes_take_the_steps_of_one_and_write_the_run_once(
    one_process: Path, tmp_path: Path
) -> None:
    code, stdout, stderr = _two_processes(NTM_COPY, "--out", tmp_path / "run")
    assert code == 0, stderr
    assert stdout.count("results in") == 1 and "Traceback" not in stderr  # one process prints
    assert "data-parallel over 2 processes (torchrun, gloo)" in stdout
    _same_weights(one_process / "last.pt", tmp_path / "run" / "last.pt")
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    alone = [json.loads(line) for line in (one_process / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == len(alone)  # each validation logged once, not once per process
    for got, want in zip(map(json.loads, records), alone, strict=True):
        assert got["examples_seen"] == want["examples_seen"]  # the whole batch counted, not a part
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-5)  # summed over processes
        assert got["valid_cost_bits"] == pytest.approx(want["valid_cost_bits"], rel=1e-5)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    one = json.loads((one_process / "summary.json").read_text())
    assert summary["steps"] == one["steps"]
    assert (summary["ddp_processes"], one["ddp_processes"]) == (2, 1)


@pytest.mark.parametrize(
    ("smoke", "quiet"),
    [("memn2n-babi.yaml", "model.random_noise=0"), ("captioner-shapes_captions.yaml", "model.dropout=0")],
)
def test_two_processes_validate_as_one_on_the_families_that_gather_tensors_and_captions(
    tmp_path: Path, smoke: str, quiet: str
) -> None:
    """Each process scores its part of the validation and test splits and the parts are gathered:
    bAbI's per-question tensors, the captioner's generated captions and attention; the merged scores
    are one process's (noise and dropout off, so the two runs train alike)."""
    config = ROOT / "tests" / "smoke" / smoke
    raw = yaml.safe_load(config.read_text())
    section, _, setting = quiet.partition(".")
    name, _, value = setting.partition("=")
    raw[section][name] = float(value)
    alone = train(build_config(raw), tmp_path / "one")
    code, _, stderr = _two_processes(config, "--out", tmp_path / "two", "--set", quiet)
    assert code == 0, stderr
    together = json.loads((tmp_path / "two" / "summary.json").read_text())
    for split, scores in (("valid", alone.valid.metrics), ("test", alone.test.metrics)):
        for metric, value in scores.items():
            got = together[split]["metrics"][metric]
            if value != value:  # NaN (nothing to count), which summary.json stores as null
                assert got is None, (split, metric)
                continue
            assert got == pytest.approx(value, rel=1e-4, abs=1e-6), (split, metric)


def test_a_two_process_run_resumes_as_one_process_does(tmp_path: Path) -> None:
    raw = yaml.safe_load(NTM_COPY.read_text())
    alone = tmp_path / "alone"
    train(build_config({**raw, "train": {**raw["train"], "max_steps": 5}}), alone)
    train(build_config(raw), alone, resume=True)
    run = tmp_path / "run"
    code, _, stderr = _two_processes(NTM_COPY, "--out", run, "--set", "train.max_steps=5")
    assert code == 0, stderr
    assert load_checkpoint(run / "last.pt")["training"]["progress"]["step"] == 5
    code, _, stderr = _two_processes(
        run / "config.yaml", "--out", run, "--resume", "--set", "train.max_steps=null"
    )
    assert code == 0, stderr
    _same_weights(alone / "last.pt", run / "last.pt")
    code, _, stderr = _two_processes(NTM_COPY, "--out", run)  # a refusal of the main process alone
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "already holds a run" in lines[0], stderr


def test_restarts_in_turn_under_two_processes_say_so_once(tmp_path: Path) -> None:
    settings = ["--set", "train.restarts=2", "--set", "train.stack_restarts=false"]
    code, stdout, stderr = _two_processes(NTM_COPY, "--out", tmp_path / "run", *settings)
    assert code == 0, stderr
    assert stdout.count("data-parallel over 2 processes") == 1
    assert stdout.count("restart 2 of 2") == 1
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [entry["seed"] for entry in summary["restarts"]] == [0, 1] and summary["ddp_processes"] == 2


def test_bad_data_under_two_processes_is_one_error_line(tmp_path: Path) -> None:
    code, _, stderr = _two_processes(
        FEATURES, "--out", tmp_path / "run", "--set", f"data.features={tmp_path / 'nowhere'}"
    )
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "data.features" in lines[0] and "not found" in lines[0]


@pytest.mark.parametrize("saved", [False, True])
def test_ctrl_c_under_nproc_is_reported_once_by_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], saved: bool
) -> None:
    """torchrun raises SignalException in the launcher on Ctrl-C and stops the processes, which save if
    they were training and say nothing (MEMTOOL_LAUNCHED): the launcher reports it, with the command
    that resumes the run when there is a saved state, whichever save it was."""
    import signal

    import torch.distributed.run
    from torch.distributed.elastic.multiprocessing.api import SignalException

    from memtool.console import LAUNCHED_VARIABLE
    from memtool.launch import launch

    run = tmp_path / "run"
    told: dict[str, str | None] = {}

    def interrupted(arguments: object) -> None:
        told["launched"] = os.environ.get(LAUNCHED_VARIABLE)  # what the processes would inherit
        if saved:
            run.mkdir()
            (run / "last.pt").write_bytes(b"saved by the first process as it stopped")
        raise SignalException("Process got signal: 2", signal.SIGINT)

    monkeypatch.setattr(torch.distributed.run, "run", interrupted)
    for variable in ("OMP_NUM_THREADS", "LOGLEVEL", LAUNCHED_VARIABLE):  # launch sets them: not here
        monkeypatch.setenv(variable, "")
    hint = f"memtool train {run / 'config.yaml'} --out {run} --resume --nproc 2"
    assert launch([str(NTM_COPY), "--out", str(run)], 2, "cpu", run, hint) == 130
    assert told["launched"] == "1"
    said = capsys.readouterr().err
    if saved:
        assert said == f"interrupted: the last saved state is {run / 'last.pt'} · continue with: {hint}\n"
    else:
        assert said == "interrupted before anything was saved\n"
