"""Markdown table of captioning runs: test scores per run and mean ± std per setting.

    python scripts/caption_table.py [--rescore] [--set KEY=VALUE ...] runs/captioner_shapes-s0 ...

Runs are grouped by their model's attention, λ and τ (from ``config.yaml``); every number comes from the
runs' ``summary.json`` (the test split of ``best.pt``), so docs/RESULTS.md is not typed by hand.
``--rescore`` scores each run's ``best.pt`` on its test split again with today's metrics (what
``memtool eval RUN`` prints; greedy decoding is deterministic, so only a changed metric changes).
``--set`` rescores on a changed test split, as ``memtool eval RUN --set`` does: ``--set
data.test_pairs=seen`` scores fresh videos of the training distribution instead of the held-out pairs.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from statistics import mean, stdev

import yaml

from memtool.errors import exit_for_user

METRICS = (
    ("bleu1", "BLEU-1", 3),
    ("bleu4", "BLEU-4", 3),
    ("rouge_l", "ROUGE-L", 3),
    ("cider", "CIDEr-D", 3),
    ("repeat_rate", "repeating a word (%)", 1),
    ("coverage_error", "coverage error", 3),
    ("repeat_same_frame", "repeats at the same frame (%)", 1),
    ("mention_same_frame", "re-mentions at the same frame (%)", 1),
)


def present(value: float | None) -> bool:
    """False where a run's summary predates the metric or it had no case to count (NaN, which
    summary.json stores as null)."""
    return value is not None and not math.isnan(value)


def cell(value: float | None, digits: int) -> str:
    return f"{value:.{digits}f}" if present(value) else "–"


def setting(run: Path) -> str:
    model = yaml.safe_load((run / "config.yaml").read_text())["model"]
    if model.get("attention") == "mean":
        return "mean pooling (no attention)"
    return f"soft attention, λ = {model.get('reg_lambda')}, τ = {model.get('reg_tau')}"


def rescore(run: Path, overrides: list[str]) -> dict[str, float]:
    from memtool.build import restore
    from memtool.checkpoint import load_checkpoint

    config, task, model = restore(load_checkpoint(run / "best.pt"), overrides)
    return task.evaluate(model, "test", config.train.eval_batch_size).metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="run directories")
    parser.add_argument("--rescore", action="store_true", help="score best.pt on test again")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE; rescores")
    args = parser.parse_args()
    groups: dict[str, list[dict]] = {}
    print("| run | seed | " + " | ".join(label for _, label, _ in METRICS) + " | train s |")
    print("|---|---:|" + "---:|" * (len(METRICS) + 1))
    for run in args.runs:
        if not (run / "summary.json").is_file():
            exit_for_user(f"{run}: no summary.json (not a run directory, or the run has not finished)")
        summary = json.loads((run / "summary.json").read_text())
        fresh = args.rescore or args.overrides
        metrics = rescore(run, args.overrides) if fresh else summary["test"]["metrics"]
        groups.setdefault(setting(run), []).append(metrics)
        cells = " | ".join(cell(metrics.get(name), digits) for name, _, digits in METRICS)
        print(f"| {run.name} | {summary['seed']} | {cells} | {summary['train_seconds']:.0f} |")
    print()
    print("| setting | runs | " + " | ".join(label for _, label, _ in METRICS) + " |")
    print("|---|---:|" + "---:|" * len(METRICS))
    for name, runs in groups.items():
        cells = []
        for metric, _, digits in METRICS:
            values = [r[metric] for r in runs if present(r.get(metric))]
            spread = f" ± {stdev(values):.{digits}f}" if len(values) > 1 else ""
            cells.append(f"{mean(values):.{digits}f}{spread}" if values else "–")
        print(f"| {name} | {len(runs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
