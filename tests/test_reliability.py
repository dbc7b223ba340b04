"""No lost work, no traceback: each fault of docs/RELIABILITY.md as a regression test."""

from __future__ import annotations

import errno
import json
import os
import select
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
from tests.helpers import memtool_process, one_line_error, tiny_config

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(tiny_config(**sections)))
    return path


def memtool(*args: object) -> subprocess.Popen:
    return memtool_process(*args)


# -- run directories ------------------------------------------------------------------------------------


def test_a_folder_of_the_users_is_never_written_into(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "c.yaml")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("my own notes\n")
    (mine / "metrics.jsonl").write_text("mine\n")
    one_line_error(invoke("train", config, "--out", mine), "not empty and not a memtool run")
    assert (mine / "config.yaml").read_text() == "my own notes\n"
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "metrics.jsonl"]
    monkeypatch.chdir(mine)
    one_line_error(invoke("train", config, "--out", ""), "not empty and not a memtool run")
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml", "metrics.jsonl"]


def test_an_empty_folder_or_a_run_that_died_before_its_first_checkpoint_is_fine(tmp_path: Path) -> None:
    config = build_config(tiny_config(train={"max_steps": 2}))
    (tmp_path / "empty").mkdir()
    train(config, tmp_path / "empty")
    died = tmp_path / "died"
    died.mkdir()
    (died / ".memtool-run").touch()
    (died / "metrics.jsonl").write_text('{"restart": 0, "step": 99, "epoch": 9}\n')  # a stale record
    train(config, died)
    assert [json.loads(x)["step"] for x in (died / "metrics.jsonl").read_text().splitlines()] == [2]


def test_two_trainings_on_one_folder_one_runs_the_other_exits_2(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        data={"source": "generated", "generator": {"tasks": [1], "train_stories": 300, "test_stories": 10}},
        train={"epochs": 6},
    )
    run = tmp_path / "run"
    both = [
        memtool("train", config, "--out", run),
        memtool("train", config, "--out", run, "--set", "train.lr=0.5"),
    ]
    results = [(process, *process.communicate(timeout=300)) for process in both]
    assert sorted(process.returncode for process, _, _ in results) == [0, 2], [e for _, _, e in results]
    survivor = next(process for process, _, _ in results if process.returncode == 0)
    refused = next(error for process, _, error in results if process.returncode == 2)
    assert (
        refused.startswith("error:") and "another memtool train" in refused and str(survivor.pid) in refused
    )
    assert "Traceback" not in refused and len(refused.strip().splitlines()) == 1
    lr = 0.005 if survivor is both[0] else 0.5
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["lr"] == lr  # the survivor's config, not the refused one's
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "summary.json").read_text())["steps"] == records[-1]["step"]
    # the lock went with its process: the run resumes (and is already finished)
    assert invoke("train", run / "config.yaml", "--out", run, "--resume").exit_code == 0


def test_a_finished_run_trains_on_when_its_limits_are_raised_and_is_left_alone_otherwise(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 4, "epochs": 10})
    run = tmp_path / "run"
    assert invoke("train", config, "--out", run).exit_code == 0
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    result = invoke("train", config, "--out", run, "--resume", "--set", "train.max_steps=4")
    assert result.exit_code == 0 and "already finished" in result.output
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files  # not a byte changed
    result = invoke("train", config, "--out", run, "--resume", "--set", "train.max_steps=7")
    assert result.exit_code == 0, result.output
    assert "training on" in result.output
    assert json.loads((run / "summary.json").read_text())["steps"] == 7
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["max_steps"] == 7


def test_a_torn_or_foreign_line_in_the_log_never_stops_a_resume(tmp_path: Path) -> None:
    from tests.test_contract import CrashAt

    config = build_config(tiny_config(train={"epochs": 3, "checkpoint_every_steps": 1}))
    whole = train(config, tmp_path / "whole")
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        train(config, run, observer=CrashAt(step=whole.steps - 2))
    with (run / "metrics.jsonl").open("a") as log:
        log.write('["not", "ours"]\n{"restart": 0, "epoch": 3, "pha')  # a foreign line, then a torn one
    messages: list[str] = []

    class Listen(CrashAt):
        def message(self, text: str) -> None:
            messages.append(text)

    train(config, run, resume=True, observer=Listen(step=-1))
    assert any("dropped 2 unreadable line(s)" in m for m in messages)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(run / "last.pt")
    assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"])


def test_eval_says_which_checkpoint_it_scored(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 2})
    run = tmp_path / "run"
    assert invoke("train", config, "--out", run).exit_code == 0
    (run / "best.pt").unlink()
    result = invoke("eval", run, "--json")
    assert result.exit_code == 0, result.output
    assert "no best.pt; using" in result.stderr and "last.pt" in result.stderr
    assert json.loads(result.stdout)["checkpoint"].endswith("last.pt")


# -- one line instead of a traceback ---------------------------------------------------------------------


def test_empty_data_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "qa1_x_train.txt").write_text("")
    (empty / "qa1_x_test.txt").write_text("")
    config = write_config(tmp_path / "c.yaml", data={"source": "files", "path": str(empty)})
    one_line_error(invoke("train", config, "--out", tmp_path / "a"), "no training examples")
    assert not (tmp_path / "a").exists()  # a refused run leaves no folder behind
    one_line_error(invoke("train", config, "--set", "task.tasks=[]"), "task.tasks", "non-empty list")
    one_line_error(invoke("train", config, "--set", "task.tasks=[0]"), "task.tasks", "bAbI task numbers")
    good = write_config(tmp_path / "g.yaml", train={"max_steps": 2})
    assert invoke("train", good, "--out", tmp_path / "run").exit_code == 0
    one_line_error(invoke("eval", tmp_path / "run", "--data", empty), "--split test", "no examples")


def test_impossible_sizes_are_refused_before_allocating(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    started = time.monotonic()
    line = one_line_error(
        invoke("train", config, "--set", "model.embedding_dim=100000000", "--out", tmp_path / "a"),
        "would need about",
        "with --set model.embedding_dim=100000000: model: 'memn2n' would need about",
    )
    assert "GiB" in line and time.monotonic() - started < 30
    one_line_error(invoke("train", config, "--set", "task.memory_size=100000000"), "task.memory_size")
    one_line_error(
        invoke("train", config, "--set", "data.generator.train_stories=100000000"),
        "data.generator.train_stories",
        "100000",
    )
    assert not (tmp_path / "a").exists()


def test_yaml_bombs_duplicates_and_huge_values_give_a_short_line(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 14)]
    bomb.write_text("\n".join(levels) + "\nmodel: {name: memn2n}\ntask: {name: babi}\n")
    started = time.monotonic()
    one_line_error(invoke("train", bomb), "bomb.yaml", "aliases")
    assert time.monotonic() - started < 10
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text("model: {name: memn2n}\ntask: {name: babi}\nmodel: {name: other}\n")
    one_line_error(invoke("train", duplicate), "dup.yaml", "line 3", "duplicate key 'model'")
    config = write_config(tmp_path / "c.yaml")
    line = one_line_error(invoke("train", config, "--set", f"train.lrx=[{','.join(['1'] * 200_000)}]"))
    assert "train.lrx" in line and len(line) < 300


def test_misplaced_and_malformed_inputs_name_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    one_line_error(invoke("train", config, "--set", "model.memory_size=5"), "did you mean task.memory_size?")
    one_line_error(invoke("train", config, "--set", "train.warmup={epochs: 2}"), "train.start_phase")
    babi = tmp_path / "babi"
    babi.mkdir()
    (babi / "qa1_x_train.txt").write_text("1 Mary went home.\n2 Where is Mary? home 1\n")
    config = write_config(tmp_path / "f.yaml", data={"source": "files", "path": str(babi)})
    one_line_error(invoke("train", config), "qa1_x_train.txt:2", "answer after a TAB")


def test_a_full_disk_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 2})

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    one_line_error(invoke("train", config, "--out", tmp_path / "run"), "config.yaml", "No space left")


def test_data_generate_never_writes_over_files_it_did_not_generate(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "qa1_single-supporting-fact_train.txt").write_text("1 the real thing.\n")
    result = invoke("data", "generate", "babi", "--to", real, "--train-stories", "2", "--test-stories", "1")
    one_line_error(result, "--to", "did not generate")
    assert (real / "qa1_single-supporting-fact_train.txt").read_text() == "1 the real thing.\n"
    generated = tmp_path / "generated"
    for _ in range(2):  # its own folder it may write again
        result = invoke(
            "data", "generate", "babi", "--to", generated, "--train-stories", "2", "--test-stories", "1"
        )
        assert result.exit_code == 0, result.output


def test_a_failed_download_names_its_source_and_leaves_no_folder(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere.tgz").as_uri()
    line = one_line_error(
        invoke("data", "download", "babi", "--to", tmp_path / "d", "--url", missing), "download failed"
    )
    assert "--url" not in line and missing in line
    assert not (tmp_path / "d").exists()


# -- first contact ---------------------------------------------------------------------------------------


def test_help_and_usage_errors_do_not_import_torch() -> None:
    code = "import sys, memtool.cli; print('torch' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "False"


def test_ctrl_c_while_starting_exits_130_without_a_traceback(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    for delay in (
        0.3,
        0.6,
        1.0,
        1.5,
    ):  # while the CLI imports, then torch (after the interpreter's own start)
        process = memtool("train", config, "--out", tmp_path / f"run{delay}")
        time.sleep(delay)
        process.send_signal(2)
        output, error = process.communicate(timeout=60)
        # -2: stopped by the signal itself while Python was still starting (a shell shows 130 for both);
        # 0: it had already finished
        assert process.returncode in (130, -2, 0), (delay, error)
        assert "Traceback" not in output + error, (delay, error)


def test_the_readmes_commands_run_as_typed() -> None:
    """After the README's set-up, ``memtool`` is in .venv/bin, not on PATH: its commands say so."""
    text = (ROOT / "README.md").read_text()
    blocks = text.split("```")[1::2]
    commands = [line.removeprefix("$ ") for block in blocks for line in block.splitlines()]
    bare = [line for line in commands if line.startswith("memtool ")]
    assert not bare, bare


def test_a_user_error_in_a_plugin_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def broken(:\n")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**tiny_config(), "imports": ["broken.py"]}))
    one_line_error(invoke("train", config), "imports: 'broken.py' failed to load", "SyntaxError")
    with pytest.raises(UserError):
        build_config({**tiny_config(), "imports": ["broken.py"]}, source=str(config))


# -- found by a new user's review --------------------------------------------------------------------------


def test_review_findings_are_one_line_each(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml")
    one_line_error(invoke("train", config, "--set", "model.name=[memn2n]"), "model.name")
    one_line_error(invoke("train", config, "--set", "task.name=[1]"), "task.name")
    line = one_line_error(invoke("train", config, "--set", "train.optimizer={name: adam, capturable: true}"))
    assert "capturable" in line
    one_line_error(invoke("train", config, "--set", "train.optimizer={name: sgd, lr: 0.1}"), "train.lr")
    (tmp_path / "notes.yaml").write_text("x: 1\n")
    one_line_error(invoke("train", config, "--set", "imports=[notes.yaml]"), "must name a .py file")
    (tmp_path / "raising_module_for_test.py").write_text("raise RuntimeError('boom')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        one_line_error(
            invoke("train", config, "--set", "imports=[raising_module_for_test]"), "RuntimeError: boom"
        )
    finally:
        sys.path.remove(str(tmp_path))


def test_exponent_numbers_in_a_yaml_file_are_numbers(tmp_path: Path) -> None:
    raw = tiny_config()
    text = yaml.safe_dump(raw) + ""
    text = text.replace("  lr: 0.005", "  lr: 5e-3\n  optimizer: {name: adam, eps: 1e-8, weight_decay: 1e-4}")
    (tmp_path / "c.yaml").write_text(text)
    from memtool.config import load_config

    config = load_config(tmp_path / "c.yaml")
    assert config.train.lr == 0.005 and config.train.optimizer.arguments == {
        "eps": 1e-8,
        "weight_decay": 1e-4,
    }


def test_png_must_be_a_png_and_errors_name_the_users_path(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", train={"max_steps": 2})
    run = tmp_path / "run"
    assert invoke("train", config, "--out", run).exit_code == 0
    story = tmp_path / "story.txt"
    story.write_text("Mary went home.\n")
    one_line_error(invoke("plot", run, "--png", story), "must end in .png")
    assert story.read_text() == "Mary went home.\n"
    one_line_error(invoke("plot", run, "--png", run / "config.yaml"), "must end in .png")
    (tmp_path / "a-file").write_text("")
    line = one_line_error(invoke("inspect-memory", run, "--png", tmp_path / "a-file" / "x.png"))
    assert "a-file/x.png" in line and ".tmp" not in line


def test_a_task_whose_evaluate_forgets_its_selection_metric_is_told_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memtool.tasks.babi.task import BabiTask

    original = BabiTask.merge_evaluation  # where the engine's scores of a split come from

    def forgetful(self, split, parts):
        result = original(self, split, parts)
        result.metrics.pop("error")
        return result

    monkeypatch.setattr(BabiTask, "merge_evaluation", forgetful)
    with pytest.raises(UserError, match=r"evaluate\(\) returned no 'error'"):
        train(build_config(tiny_config(train={"max_steps": 2})), tmp_path / "run")


def test_a_run_whose_plugin_moved_resumes_with_its_new_path(tmp_path: Path) -> None:
    plugin = tmp_path / "first" / "parity.py"
    plugin.parent.mkdir()
    plugin.write_text((ROOT / "examples" / "parity" / "parity.py").read_text())
    raw = yaml.safe_load((ROOT / "examples" / "parity" / "config.yaml").read_text())
    raw["train"] |= {"max_steps": 3, "restarts": 1, "checkpoint_every_steps": 1}
    raw["data"] |= {"train_examples": 64, "test_examples": 16}
    (plugin.parent / "config.yaml").write_text(yaml.safe_dump(raw))
    # new processes, as a user's would be: this one may hold examples/parity's own registrations
    run = tmp_path / "run"
    trained = memtool("train", plugin.parent / "config.yaml", "--out", run)
    assert trained.wait(timeout=300) == 0, trained.stderr.read()
    moved = tmp_path / "moved"
    plugin.parent.rename(moved)
    lost = memtool("eval", run)
    _, error = lost.communicate(timeout=120)
    assert lost.returncode == 2 and "no such file" in error and "--set 'imports=" in error, error
    new_place = f"imports=[{moved / 'parity.py'}]"
    evaluated = memtool("eval", run, "--set", new_place)
    assert evaluated.wait(timeout=120) == 0, evaluated.stderr.read()
    resumed = memtool(
        "train",
        run / "config.yaml",
        "--out",
        run,
        "--resume",
        "--set",
        new_place,
        "--set",
        "train.max_steps=5",
    )
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert json.loads((run / "summary.json").read_text())["steps"] == 5


def test_closing_the_pipe_training_prints_into_does_not_kill_the_run(tmp_path: Path) -> None:
    """``memtool train ... | head -1``: the reader goes away after one line; the run goes on to the end."""
    smoke = Path(__file__).resolve().parent / "smoke" / "ntm-copy.yaml"
    process = memtool_process("train", smoke, "--set", "train.epochs=3", "--out", tmp_path / "run")
    assert process.stdout is not None and process.stdout.readline()
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "stdout was closed; carrying on" in stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 12


@pytest.mark.parametrize("command", [["--help"], ["train", "--help"]])
def test_help_cut_short_by_its_reader_is_no_failure(command: list[str]) -> None:
    """``memtool --help | head -1``: the reader got what it wanted; the exit code says no error."""
    process = memtool_process(*command)
    assert process.stdout is not None and process.stdout.readline()
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_training_in_a_terminal_prints_its_lines_and_ends(tmp_path: Path) -> None:
    """In a terminal the progress bar replaces sys.stdout with rich's proxy; the lines memtool prints
    must reach the terminal through it, not loop back into it (that hung every interactive run)."""
    smoke = Path(__file__).resolve().parent / "smoke" / "memn2n-babi.yaml"
    leader, follower = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "memtool", "train", str(smoke), "--out", str(tmp_path / "run")],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the terminal's side: keep reading, or the run blocks
        if not select.select([leader], [], [], 1.0)[0]:
            continue  # nothing printed this second (a hung run prints nothing more: the deadline ends it)
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the run ended and closed its side
            break
        if not chunk:
            break
        shown += chunk
    try:
        assert process.wait(timeout=max(deadline - time.monotonic(), 1)) == 0, shown.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    assert b"results in" in shown and (tmp_path / "run" / "summary.json").is_file()
