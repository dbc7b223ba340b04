"""Markdown table of bAbI runs' per-task test error beside the paper's figures.

    python scripts/babi_table.py --paper 1k runs/memn2n_babi_1k_joint
    memtool eval RUN --json > scores.json && python scripts/babi_table.py --paper 1k scores.json other-run

Each column reads a run directory's ``summary.json`` (written by ``memtool train``) or the output of
``memtool eval --json``, so every number in docs/RESULTS.md comes from a run, not from hand copying.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from memtool.errors import exit_for_user, run_as_script
from memtool.run_files import distinct, finished_run, require_task

# Sukhbaatar et al. 2015, Table 1 / Appendix A, "PE LS RN joint" (best of 10 runs), test error %.
PAPER = {
    "1k": [
        0.0,
        11.4,
        21.9,
        13.4,
        14.4,
        2.8,
        18.3,
        9.3,
        1.9,
        6.5,
        0.3,
        0.1,
        0.2,
        6.9,
        0.0,
        2.7,
        40.4,
        9.4,
        88.0,
        0.0,
    ],
    "10k": [
        0.0,
        1.0,
        6.8,
        0.0,
        6.1,
        0.1,
        6.6,
        2.7,
        0.0,
        0.5,
        0.0,
        0.1,
        0.0,
        0.0,
        0.2,
        0.2,
        41.8,
        8.0,
        75.7,
        0.0,
    ],
}


def per_task_errors(path: Path) -> dict[int, float]:
    if path.is_dir():
        scores, config = finished_run(path)
        require_task(path, config, ("babi",), "a bAbI run")
    elif path.is_file():
        scores = json.loads(path.read_text())
        if "per_task" not in scores:
            exit_for_user(f"{path}: not the output of `memtool eval --json` on a bAbI run (no per_task)")
    else:
        exit_for_user(
            f"{path}: no such file (give a finished run's directory or a `memtool eval --json` file)"
        )
    groups = scores["per_task"] if "per_task" in scores else scores["test"]["groups"]
    return {int(task): values["error"] for task, values in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run directories or `memtool eval --json` files")
    parser.add_argument(
        "--paper", choices=sorted(PAPER), required=True, help="the paper's column to print beside the runs"
    )
    parser.add_argument("--names", help="comma-separated column names (default: the paths' names)")
    args = parser.parse_args()
    columns = [per_task_errors(path) for path in distinct(args.runs)]
    names = args.names.split(",") if args.names else [path.stem for path in args.runs]
    paper = dict(enumerate(PAPER[args.paper], 1))
    tasks = sorted(set.intersection(*(set(column) for column in columns)))
    print("| task | " + " | ".join(names) + " | paper |")
    print("|---:|" + "---:|" * (len(names) + 1))
    for task in range(1, 21):
        cells = [f"{column[task]:.1f}" if task in column else "–" for column in columns]
        print(f"| {task} | " + " | ".join(cells) + f" | {paper[task]:.1f} |")
    label = "" if len(tasks) == 20 else f" ({len(tasks)} tasks)"
    for title, score in (
        ("mean error", lambda e: f"{sum(e) / len(e):.1f}"),
        ("failed (> 5%)", lambda e: str(sum(x > 5 for x in e))),
    ):
        cells = [score([column[t] for t in tasks]) for column in columns] + [score([paper[t] for t in tasks])]
        print(f"| **{title}{label}** | " + " | ".join(f"**{cell}**" for cell in cells) + " |")


if __name__ == "__main__":
    run_as_script(main)
