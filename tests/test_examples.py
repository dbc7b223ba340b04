"""examples/parity end to end through the CLI: a model family that lives outside the package, loaded by a
config's ``imports:``, trains to the accuracy its config promises, keeps best.pt by the HIGHEST validation
accuracy, and is scored and inspected with its own options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memtool.checkpoint import load_checkpoint
from memtool.cli import app

pytestmark = pytest.mark.slow  # real training runs end to end

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "parity" / "config.yaml"
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped config as it is (two restarts, a few seconds on a CPU), trained once for every test."""
    out = tmp_path_factory.mktemp("parity") / "run"
    result = invoke("train", CONFIG, "--out", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "test accuracy (%)" in result.output and "per length" in result.output
    return out


def test_the_config_names_its_command_and_loads_the_plugin_by_path() -> None:
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# memtool train examples/parity/config.yaml"
    assert "imports: [parity.py]" in lines


def test_training_reaches_the_promised_accuracy(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_valid_accuracy"] >= 99.0
    assert summary["test"]["metrics"]["accuracy"] >= 99.0
    assert summary["test"]["metrics"]["examples"] == 1000
    assert set(summary["test"]["groups"]) == {str(n) for n in range(4, 17)}
    assert summary["test"]["group_label"] == "per_length"


def test_best_checkpoint_has_the_highest_validation_accuracy(run: Path) -> None:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    accuracies = [r["valid_accuracy"] for r in records]
    assert {r["restart"] for r in records} == {0, 1}
    assert min(accuracies) < max(accuracies)  # "lower is better" would have kept another checkpoint
    best = load_checkpoint(run / "best.pt")
    assert best["valid"]["accuracy"] == max(accuracies)
    # ties go to the lower validation loss, over every validation of every restart
    tied = [r for r in records if r["valid_accuracy"] == max(accuracies)]
    chosen = min(tied, key=lambda r: r["valid_loss"])
    assert best["valid"]["loss"] == chosen["valid_loss"]
    assert best["restart"] == chosen["restart"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best_valid_accuracy"] == max(accuracies)
    assert summary["best_restart"] == chosen["restart"]


def test_eval_json_and_longer_strings_than_training(run: Path) -> None:
    result = invoke("eval", run, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metrics"]["accuracy"] >= 99.0
    assert set(payload["per_length"]) == {str(n) for n in range(4, 17)}
    # data.* may change at eval time: the attention reads the marks, so longer strings work as well
    longer = invoke("eval", run, "--json", "--set", "data.min_length=17", "--set", "data.max_length=24")
    assert longer.exit_code == 0, longer.output
    assert set(json.loads(longer.stdout)["per_length"]) == {str(n) for n in range(17, 25)}
    # what the task is (task.marked) is fixed by training
    refused = invoke("eval", run, "--set", "task.marked=2")
    assert refused.exit_code == 2 and "fixed by the trained checkpoint" in refused.output


def test_inspect_memory_with_the_tasks_own_option(run: Path, tmp_path: Path) -> None:
    result = invoke("inspect-memory", run, "--length", "9", "--example", "1")
    assert result.exit_code == 0, result.output
    for text in ("parity · test example 1 · 9 bits", "input", "attention", "head 1", "marked positions"):
        assert text in result.output

    view = json.loads(invoke("inspect-memory", run, "--length", "9", "--json").stdout)
    input_panel, attention = view["panels"]
    assert input_panel["rows"] == ["bit", "marked"] and len(input_panel["columns"]) == 9
    assert sum(input_panel["values"][1]) == 3  # task.marked
    for weights in attention["values"]:
        assert len(weights) == 9 and sum(weights) == pytest.approx(1.0, abs=1e-5)

    png = tmp_path / "view.png"
    result = invoke("inspect-memory", run, "--length", "9", "--png", png)
    assert result.exit_code == 0, result.output
    import matplotlib.image

    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > 100 and height > 100

    missing = invoke("inspect-memory", run, "--length", "40")
    assert missing.exit_code == 2 and "no string of 40 bits in the test split" in missing.output
    unknown = invoke("inspect-memory", run, "--task", "1")
    assert unknown.exit_code == 2 and "--length" in unknown.output
