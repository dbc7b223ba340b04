"""``--parallel-restarts``: restarts trained as independent processes end exactly where a one-process run
of the same restarts ends (each restart, the kept one, the records), and an interrupted run resumes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from memtool.checkpoint import load_checkpoint
from memtool.cli import app
from memtool.config import build_config
from memtool.engine import train
from memtool.errors import UserError
from memtool.restarts import ParallelRestarts
from memtool.train_state import SilentObserver
from tests.helpers import one_line_error, tiny_config

pytestmark = pytest.mark.slow  # real training in spawned processes


def _untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("elapsed", "examples_per_second")} for r in records]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_restarts(run: Path, reference: Path) -> None:
    a, b = (
        json.loads((run / "summary.json").read_text()),
        json.loads((reference / "summary.json").read_text()),
    )
    assert a["best_restart"] == b["best_restart"]
    for mine, theirs in zip(a["restarts"], b["restarts"], strict=True):
        assert mine["restart"] == theirs["restart"] and mine["seed"] == theirs["seed"]
        assert mine["valid"] == theirs["valid"] and mine["test"] == theirs["test"]
    assert a["test"] == b["test"]
    kept, reference_kept = load_checkpoint(run / "best.pt"), load_checkpoint(reference / "best.pt")
    assert all(torch.equal(kept["model_state"][k], v) for k, v in reference_kept["model_state"].items())
    assert _untimed(_records(run)) == _untimed(_records(reference))


def test_restarts_in_parallel_processes_equal_restarts_in_one(tmp_path: Path) -> None:
    config = build_config(tiny_config(train={"restarts": 3, "epochs": 2}))
    one = train(config, tmp_path / "one")
    side_by_side = ParallelRestarts(config, tmp_path / "parallel", 2, SilentObserver()).run(resume=False)
    assert side_by_side.best_restart == one.best_restart
    assert side_by_side.test.metrics == one.test.metrics
    merged = json.loads((tmp_path / "parallel" / "summary.json").read_text())
    share = config.train.threads or max(1, (os.cpu_count() or 1) // 2)  # each process's share of the cores
    assert (merged["device"], merged["threads"]) == ("cpu", share)
    _assert_same_restarts(tmp_path / "parallel", tmp_path / "one")
    for restart in range(3):  # each restart is a whole run of its own, inspectable and resumable
        assert (tmp_path / "parallel" / "restarts" / str(restart) / "last.pt").is_file()
    # the name a run in one process gives a restart's best points to where the processes keep it
    with pytest.raises(UserError, match=r"best-restart-1\.pt: checkpoint not found; .*restarts/1/best\.pt"):
        load_checkpoint(tmp_path / "parallel" / "best-restart-1.pt")

    # resumed as it was: the finished run's summary, nothing trained or rewritten
    written = (tmp_path / "parallel" / "summary.json").read_text()
    again = ParallelRestarts(config, tmp_path / "parallel", 2, SilentObserver()).run(resume=True)
    assert again.test.metrics == one.test.metrics and again.best_restart == one.best_restart
    assert (tmp_path / "parallel" / "summary.json").read_text() == written
    # resumed with a changed config: refused before anything changes
    changed = build_config(tiny_config(train={"restarts": 4, "epochs": 2}))
    with pytest.raises(UserError, match=r"changed: train\.restarts"):
        ParallelRestarts(changed, tmp_path / "parallel", 2, SilentObserver()).run(resume=True)
    assert "restarts: 3" in (tmp_path / "parallel" / "config.yaml").read_text()
    assert not (tmp_path / "parallel" / "restarts" / "3").exists()


def test_refusals_are_one_line(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    runner = CliRunner()
    result = runner.invoke(
        app, ["train", str(config), "--out", str(tmp_path / "a"), "--parallel-restarts", "2"]
    )
    one_line_error(result, "--parallel-restarts 2", "train.restarts is 1")
    result = runner.invoke(
        app,
        [
            "train",
            str(config),
            "--out",
            str(tmp_path / "b"),
            "--parallel-restarts",
            "2",
            "--nproc",
            "2",
            "--set",
            "train.restarts=2",
        ],
    )
    one_line_error(result, "--parallel-restarts", "--nproc")


def test_a_run_its_workers_refuse_leaves_no_folder(tmp_path: Path) -> None:
    """Bad data is found by the workers, after the run folder was made: it goes, as in one process, so
    the corrected command needs no other --out."""
    config = tmp_path / "tiny.yaml"
    raw = tiny_config(data={"source": "files", "path": str(tmp_path / "missing")}, train={"restarts": 2})
    config.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(
        app, ["train", str(config), "--out", str(tmp_path / "run"), "--parallel-restarts", "2"]
    )
    one_line_error(result, "missing")
    assert not (tmp_path / "run").exists()


def test_ctrl_c_then_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    raw = tiny_config(
        data={"source": "generated", "generator": {"tasks": [1], "train_stories": 300, "test_stories": 10}},
        train={"epochs": 8, "restarts": 3, "checkpoint_every_steps": 20},
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    train(build_config(raw), tmp_path / "reference")
    run = tmp_path / "run"
    command = [sys.executable, "-m", "memtool", "train", str(config), "--out", str(run)]
    # its own process group, as a terminal's foreground job: Ctrl-C reaches the workers too
    process = subprocess.Popen(
        [*command, "--parallel-restarts", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    deadline = time.monotonic() + 120
    while not all((run / "restarts" / str(r) / "last.pt").exists() for r in range(2)):
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "no checkpoints appeared"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130, output
    assert "interrupted" in output and "--resume --parallel-restarts 2" in output
    progress = load_checkpoint(run / "restarts" / "1" / "last.pt")["training"]["progress"]
    assert not progress["finished"]  # it really stopped midway
    assert not (run / "restarts" / "2").exists()  # and the third restart never started

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    _assert_same_restarts(run, tmp_path / "reference")


def test_resume_without_out_finds_the_newest_run_of_either_kind(tmp_path: Path, monkeypatch) -> None:
    from memtool.run_dir import default_run_dir

    monkeypatch.chdir(tmp_path)
    alone, parallel = Path("runs/tiny"), Path("runs/tiny-2")
    (alone / "last.pt").parent.mkdir(parents=True)
    (alone / "last.pt").write_bytes(b"")
    (parallel / "restarts" / "0").mkdir(parents=True)
    (parallel / "restarts" / "0" / "last.pt").write_bytes(b"")
    os.utime(alone / "last.pt", (1_000, 1_000))  # the parallel run saved last
    assert default_run_dir(Path("configs/tiny.yaml"), resume=True) == parallel
    assert default_run_dir(parallel / "config.yaml", resume=True) == parallel
    assert default_run_dir(Path("configs/tiny.yaml"), resume=False) == Path("runs/tiny-3")


def test_a_restarts_model_check_names_the_set_that_broke_it(tmp_path: Path) -> None:
    """A restart's process rebuilds the config from the resolved dict: the overrides travel with it, so
    its errors name them as a one-process run's do."""
    from memtool.restarts import _train_one

    raw = yaml.safe_load((Path(__file__).parent / "smoke" / "ntm-copy.yaml").read_text())
    raw["model"]["shift_range"] = 9
    origin = ("ntm-copy.yaml", ("model.shift_range=9",))
    with pytest.raises(UserError) as caught:
        _train_one(raw, origin, str(tmp_path / "0"), 0, False)
    assert str(caught.value).startswith("ntm-copy.yaml with --set model.shift_range=9: model: shift_range 9")


def test_a_second_ctrl_c_stops_a_restart_as_interrupted_not_as_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parent passes each Ctrl-C on as SIGTERM; the second makes the worker's training raise
    KeyboardInterrupt at once, which must reach the parent as an interruption (exit 130, the resume
    command), not as a failed restart (a RuntimeError and a traceback)."""
    import queue

    import memtool.restarts

    def stopped_at_once(*args: object) -> dict:
        raise KeyboardInterrupt

    monkeypatch.setattr(memtool.restarts.os, "setpgrp", lambda: None)  # the test's own process group stays
    monkeypatch.setattr(memtool.restarts, "_train_one", stopped_at_once)
    answers: queue.Queue = queue.Queue()
    memtool.restarts._worker(answers, {}, ("config.yaml", []), "run/restarts/0", 0, False)
    assert answers.get_nowait() == (0, "done", {"interrupted": True})


def test_an_interruption_the_restarts_could_not_report_points_at_their_saved_states(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from memtool.interrupts import say_interrupted

    for restart in range(2):  # what the restarts' processes saved; the run's own last.pt never exists
        (tmp_path / "restarts" / str(restart)).mkdir(parents=True)
        (tmp_path / "restarts" / str(restart) / "last.pt").write_bytes(b"saved")
    say_interrupted(tmp_path, "memtool train ... --resume --parallel-restarts 2")
    said = capsys.readouterr().err
    assert said.startswith(f"interrupted: the last saved states are each restart's last.pt in {tmp_path}")
    assert said.rstrip().endswith("--resume --parallel-restarts 2")
