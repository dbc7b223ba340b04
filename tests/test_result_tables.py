"""scripts/*_table.py, which print docs/RESULTS.md's tables, read what a real run writes (tiny smoke runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memtool.cli import app

pytestmark = pytest.mark.slow  # three tiny training runs, a few seconds each

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "tests" / "smoke"


def train(config: str, out: Path) -> Path:
    result = CliRunner().invoke(app, ["train", str(SMOKE / config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def script(name: str, *args: object) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "scripts" / name), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


def table_rows(output: str) -> list[list[str]]:
    """The cells of every markdown table row that is not a header rule."""
    lines = [line for line in output.splitlines() if line.startswith("|") and not line.startswith("|--")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_ntm_table_reads_a_run(tmp_path: Path) -> None:
    run = train("ntm-copy.yaml", tmp_path / "ntm")
    shown = script("ntm_table.py", run)
    assert shown.returncode == 0, shown.stderr
    summary = json.loads((run / "summary.json").read_text())
    [header, row] = table_rows(shown.stdout)
    assert row[:3] == ["ntm", "ntm", "0"]
    for size, group in summary["test"]["groups"].items():
        assert row[header.index(size)] == f"{group['bit_errors']:.2f} ({group['cost_bits']:.3g})"
    # --after: each budget's cell is the first validation at or past it, from metrics.jsonl
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "valid_bit_errors" in r]
    budgets = [validations[0]["examples_seen"], validations[-1]["examples_seen"] + 1]
    shown = script("ntm_table.py", run, "--after", *budgets)
    assert shown.returncode == 0, shown.stderr
    [_, _, budget_header, budget_row] = table_rows(shown.stdout)
    assert budget_header[1:] == [f"after {n:,}" for n in budgets]
    assert budget_row == ["ntm", f"{validations[0]['valid_bit_errors']:.2f}", "–"]


def test_priority_sort_probe_reads_a_run(tmp_path: Path) -> None:
    run = train("ntm-priority_sort.yaml", tmp_path / "ps")
    shown = script("priority_sort_probe.py", run, "--sequences", 4, "--gaps", 1, 100000)
    assert shown.returncode == 0, shown.stderr
    [head_header, *head_rows, gap_header, shares, model, one_row, many_rows] = table_rows(shown.stdout)
    assert head_header[:2] == ["run", "write head"] and [r[1] for r in head_rows] == ["1", "2"]
    assert gap_header[1] == "all" and shares[1] == "100%"
    assert model[0] == "ps" and 0 <= float(model[1]) <= 3  # wrong bits of a 3-bit output
    assert one_row[0] == "perfect bucket strategy, 1 row (all runs' lists)" and float(one_row[1]) > 0
    assert many_rows[1] == "0.00"  # rows far narrower than any gap: nothing shared
    refused = script("priority_sort_probe.py", run, "--gaps", 0)
    assert refused.returncode == 2 and "--gaps 0: a bucket strategy needs at least 1 row" in refused.stderr


def test_ntm_table_refuses_an_unfinished_run(tmp_path: Path) -> None:
    shown = script("ntm_table.py", tmp_path)
    assert shown.returncode == 2 and "no summary.json" in shown.stderr


@pytest.mark.parametrize("name", ["priority_sort_probe.py", "repeat_copy_probe.py"])
def test_a_probe_refuses_a_corrupt_checkpoint_in_one_line(tmp_path: Path, name: str) -> None:
    """Bad input to a script is what it is to the CLI: one line naming the file, exit code 2."""
    corrupt = tmp_path / "best.pt"
    corrupt.write_bytes(b"not a checkpoint")
    shown = script(name, corrupt)
    assert shown.returncode == 2, shown.stderr
    assert shown.stderr.count("\n") == 1 and str(corrupt) in shown.stderr
    assert "Traceback" not in shown.stderr


def test_the_coverage_oracle_refuses_a_bad_setting_in_one_line() -> None:
    shown = script(
        "coverage_oracle.py", ROOT / "configs" / "captioner_shapes.yaml", "--set", "task.layout=film"
    )
    assert shown.returncode == 2 and "task.layout" in shown.stderr and "Traceback" not in shown.stderr


def test_babi_table_reads_a_run_and_an_eval_file(tmp_path: Path) -> None:
    run = train("memn2n-babi.yaml", tmp_path / "babi")
    scores = tmp_path / "scores.json"
    evaluated = CliRunner().invoke(app, ["eval", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    scores.write_text(evaluated.output)
    shown = script("babi_table.py", "--paper", "1k", run, scores)
    assert shown.returncode == 0, shown.stderr
    rows = {row[0]: row[1:] for row in table_rows(shown.stdout)}
    summary = json.loads((run / "summary.json").read_text())
    for task in ("1", "6"):  # the smoke config's tasks; the others are not in the run
        error = summary["test"]["groups"][task]["error"]
        assert rows[task][:2] == [f"{error:.1f}", f"{error:.1f}"]  # the run and its eval agree
    assert rows["2"][:2] == ["–", "–"]
    assert rows["**mean error (2 tasks)**"][2] == "**1.4**"  # the paper's tasks 1 and 6: 0.0 and 2.8
    for refused, fragment in (
        (script("ntm_table.py", run), "an NTM or LSTM run on an algorithmic task is needed"),
        (script("babi_table.py", "--paper", "1k", run, run), "given twice"),
        (script("babi_table.py", "--paper", "1k", tmp_path / "nowhere"), "no such file"),
    ):
        assert refused.returncode == 2 and fragment in refused.stderr, refused.stderr
        assert refused.stdout == "" and "Traceback" not in refused.stderr


def test_caption_table_reads_and_rescores_a_run(tmp_path: Path) -> None:
    run = train("captioner-shapes_captions.yaml", tmp_path / "caption")
    summary = json.loads((run / "summary.json").read_text())["test"]["metrics"]
    for extra in ((), ("--rescore",)):
        shown = script("caption_table.py", *extra, run)
        assert shown.returncode == 0, shown.stderr
        header, *rows = table_rows(shown.stdout)
        row = next(row for row in rows if row[0] == "caption")
        assert row[header.index("BLEU-4")] == f"{summary['bleu4']:.3f}"
        assert row[header.index("CIDEr-D")] == f"{summary['cider']:.3f}"
