"""Does a priority-sort NTM write each input where its priority says? The paper's Fig. 17 strategy.

    python scripts/priority_sort_probe.py runs/ps-adam-s1 runs/ps-adam-s2 [--split valid] [--sequences 64]

Graves et al. (2014, Sec. 4.5) found their NTM writes each input vector to a memory location set by its
priority (roughly linearly), then reads the locations in order. For each run's ``best.pt`` and each
write head, over the split's first ``--sequences`` sequences: how peaked the head's weighting is while
the inputs arrive (mean of its largest weight), how many distinct rows it peaks on, and the Spearman
rank correlation, per sequence and then averaged, between an input's priority and the row its write
weighting centres on (Σ_i i · w_i). A head that sorts by location scores near ±1; one that ignores the
priority near 0. One row per run and head, in Markdown.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from memtool.build import restore
from memtool.checkpoint import load_checkpoint


def ranks(values: torch.Tensor) -> torch.Tensor:
    return values.argsort(-1).argsort(-1).float()


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman's ρ of each row of a against the same row of b (no ties: priorities are continuous)."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(-1, keepdim=True), rb - rb.mean(-1, keepdim=True)
    return (ra * rb).sum(-1) / (ra.norm(dim=-1) * rb.norm(dim=-1)).clamp_min(1e-12)


@torch.no_grad()
def probe(run: Path, split: str, sequences: int) -> list[tuple[int, float, int, float]]:
    config, task, model = restore(load_checkpoint(run / "best.pt" if run.is_dir() else run))
    if config.task.name != "priority_sort" or config.model.name != "ntm":
        raise SystemExit(
            f"{run}: an NTM on priority_sort is needed, this is {config.model.name} on {config.task.name}"
        )
    inputs = config.task.params.inputs
    batch = next(iter(task.batches(split, sequences)))
    x = batch.inputs["inputs"]
    weights = model(x).trace["write_weights"][:, :inputs]  # (B, inputs, heads, N): while inputs arrive
    priority = x[:, :inputs, config.task.params.bits]  # the channel after the bits
    rows = torch.arange(weights.shape[-1], dtype=weights.dtype)
    found = []
    for head in range(weights.shape[2]):
        w = weights[:, :, head]
        centre = (w * rows).sum(-1)
        found.append(
            (
                head + 1,
                w.max(-1).values.mean().item(),
                w.argmax(-1).unique().numel(),
                rank_correlation(priority, centre).mean().item(),
            )
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--sequences", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| run | write head | mean peak weight | rows it peaks on | rank correlation of priority and row |")
    print("|---|---:|---:|---:|---:|")
    for run in args.runs:
        for head, peak, rows, rho in probe(run, args.split, args.sequences):
            print(f"| {run.name} | {head} | {peak:.2f} | {rows} | {rho:+.2f} |")


if __name__ == "__main__":
    main()
