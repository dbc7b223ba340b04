"""Markdown table of a bAbI run's per-task test error beside the paper's figures.

    python bench/babi_table.py runs/memn2n_babi_1k_joint --paper 1k
    python bench/babi_table.py runs/memn2n_babi_10k_joint --paper 10k

Reads the run's ``summary.json`` (written by ``memtool train``), so every number in docs/RESULTS.md comes
from a run directory, not from hand copying.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--paper", choices=sorted(PAPER), required=True)
    args = parser.parse_args()
    summary = json.loads((args.run / "summary.json").read_text())
    ours = {int(task): values["error"] for task, values in summary["test"]["groups"].items()}
    paper = PAPER[args.paper]
    print("| task | memtool | paper |")
    print("|---:|---:|---:|")
    for task in range(1, 21):
        mine = f"{ours[task]:.1f}" if task in ours else "–"
        print(f"| {task} | {mine} | {paper[task - 1]:.1f} |")
    shared = sorted(ours)
    mean_ours = sum(ours[t] for t in shared) / len(shared)
    mean_paper = sum(paper[t - 1] for t in shared) / len(shared)
    failed_ours = sum(ours[t] > 5 for t in shared)
    failed_paper = sum(paper[t - 1] > 5 for t in shared)
    label = "" if len(shared) == 20 else f" ({len(shared)} tasks)"
    print(f"| **mean error{label}** | **{mean_ours:.1f}** | **{mean_paper:.1f}** |")
    print(f"| **failed (> 5%){label}** | **{failed_ours}** | **{failed_paper}** |")
    minutes = summary["train_seconds"] / 60
    print(
        f"\nbest restart {summary['best_restart']}, validation error {summary['best_valid_error']:.1f}%, "
        f"wall time {minutes:.1f} min"
    )


if __name__ == "__main__":
    main()
