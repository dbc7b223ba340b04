"""Markdown table of algorithmic-task runs: sequences and wall time to converge, wrong bits per size.

    python scripts/ntm_table.py runs/ntm_copy runs/ntm_copy-1 runs/lstm_copy

One row per run directory, read from its ``summary.json`` (the test split of ``best.pt``, and when
validation first reached cost < 0.1 bits per sequence), ``config.yaml`` and ``metrics.jsonl`` (the
training speed), so every number in docs/RESULTS.md comes from a run, not from hand copying.
One table per task; a cell reads "wrong bits per sequence (cost in bits per sequence)".

    python scripts/ntm_table.py runs/ps-adam-s1 runs/lstm-ps-adam-s1 --after 32000 83200 192000

adds a table of the validation wrong bits per sequence after that many training sequences (the first
validation at or past each, of the restart the run kept), to compare runs of different lengths at the
same budget.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import median

from memtool.errors import run_as_script
from memtool.run_files import distinct, finished_run, require_task

THRESHOLD = 0.1  # bits per sequence: the algorithmic tasks' target
ALGORITHMIC_TASKS = ("copy", "repeat_copy", "associative_recall", "priority_sort")


def describe(run: Path) -> dict:
    summary, config = finished_run(run)
    require_task(run, config, ALGORITHMIC_TASKS, "an NTM or LSTM run on an algorithmic task")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    speeds = [r["examples_per_second"] for r in records if r.get("examples_per_second")]
    batch = config["train"]["batch_size"]
    if "target" in summary:
        kept = summary["target"]["kept"]
    else:  # a run from before summaries recorded it: the first validation under the threshold
        first = next((r for r in records if r.get("valid_cost_bits", 1e9) < THRESHOLD), None)
        kept = first and {"examples": first["step"] * batch, "seconds": first["elapsed"]}
    last = records[-1] if records else {}
    kept_restart = summary.get("best_restart", 0)  # examples_seen counts per restart
    validations = [
        (r["examples_seen"], r["valid_bit_errors"])
        for r in records
        if r.get("valid_bit_errors") is not None
        and "examples_seen" in r
        and r.get("restart", 0) == kept_restart
    ]
    return {
        "name": run.name,
        "model": config["model"]["name"],
        "task": config["task"]["name"],
        "seed": summary["seed"],
        "converged": f"{kept['examples']:,} ({kept['seconds']:.0f} s)" if kept else "not reached",
        "whole": f"{last.get('step', 0) * batch:,} sequences, {summary['train_seconds']:.0f} s",
        "speed": f"{median(speeds):.0f}" if speeds else "–",
        "groups": summary["test"]["groups"],
        "threads": config["train"].get("threads"),
        "compiled": config["train"].get("compile", False),
        "validations": validations,
    }


def table(rows: list[dict]) -> None:
    sizes: list[str] = []
    for row in rows:
        sizes += [size for size in row["groups"] if size not in sizes]
    print(
        "| run | model | seed | valid cost < 0.1 after (sequences) | whole run | seq/s | "
        + " | ".join(sizes)
        + " |"
    )
    print("|---|---|---:|---|---|---:|" + "---|" * len(sizes))
    for row in rows:
        cells = []
        for size in sizes:
            group = row["groups"].get(size)
            cells.append(f"{group['bit_errors']:.2f} ({group['cost_bits']:.3g})" if group else "–")
        speed = row["speed"] + ("ᶜ" if row["compiled"] else "")
        print(
            f"| {row['name']} | {row['model']} | {row['seed']} | {row['converged']} | {row['whole']} | "
            f"{speed} | " + " | ".join(cells) + " |"
        )


def budget_table(rows: list[dict], budgets: list[int]) -> None:
    print("| run | " + " | ".join(f"after {n:,}" for n in budgets) + " |")
    print("|---|" + "---:|" * len(budgets))
    for row in rows:
        cells = []
        for budget in budgets:
            reached = next((errors for seen, errors in row["validations"] if seen >= budget), None)
            cells.append(f"{reached:.2f}" if reached is not None else "–")
        print(f"| {row['name']} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run directories")
    parser.add_argument(
        "--after", type=int, nargs="+", default=[], metavar="SEQUENCES", help="validation at these budgets"
    )
    args = parser.parse_args()
    by_task: dict[str, list[dict]] = {}
    for run in distinct(args.runs):
        row = describe(run)
        by_task.setdefault(row["task"], []).append(row)
    for task, rows in by_task.items():
        print(f"{task} · a cell is wrong bits per sequence (cost in bits per sequence) at that size")
        print()
        table(rows)
        print()
        if args.after:
            print(f"{task} · validation wrong bits per sequence after that many training sequences")
            print()
            budget_table(rows, args.after)
            print()
    print("seq/s: the median of the training speed logged at each validation; ᶜ: train.compile")


if __name__ == "__main__":
    run_as_script(main)
