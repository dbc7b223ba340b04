"""Does a priority-sort NTM write each input where its priority says? The paper's Fig. 17 strategy.

    python scripts/priority_sort_probe.py runs/ps-adam-s1 runs/ps-adam-s2 [--split valid] [--sequences 64]
        [--png FIGURE.png]

Graves et al. (2014, Sec. 4.5) found their NTM writes each input vector to a memory location set by its
priority (roughly linearly), then reads the locations in order. For each run's ``best.pt`` and each
write head, over the split's first ``--sequences`` sequences, while the inputs arrive:

- how peaked the head's weighting is (the mean of its largest weight) and how many rows it peaks on;
- the correlation, per sequence and then averaged over the sequences where the head peaks on more
  than one row, between an input's priority and the row the head peaks on. Memory is a ring (a shift
  past the last row lands on row 0), so the rows are first unrolled at the widest stretch of rows the
  head never peaks on (a head that peaks on every row is left as it is): a head that walks rows
  120..127, 0, 1 as the priority rises scores near +1, not near 0. One that ignores the priority
  scores near 0;
- η², the share of the priorities' variance that lies between the rows the head peaks on: 1 when each
  row gets one narrow band of priorities, in whatever order the rows are (a learned memory start can
  put them in any). Beside it, in brackets, η² with the priorities shuffled across all the inputs:
  what it is by chance with that many rows.

One row per run and head, in Markdown. ``--png`` draws the paper's Fig. 17 from the data: for each run,
the priority of every input against the row its most priority-driven write head (the largest η² above
its shuffled η²) peaks on, rows unrolled as above.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from memtool.build import restore
from memtool.checkpoint import load_checkpoint
from memtool.errors import UserError
from memtool.figures import require_matplotlib, save_png


class Head(NamedTuple):
    """One write head's figures over the probed inputs, and (priority, unrolled peak row) of each."""

    number: int
    peak_weight: float
    rows: int
    correlation: float
    eta_squared: float
    eta_squared_shuffled: float
    priority: Tensor
    unrolled_rows: Tensor


def unrolled(peaks: Tensor, rows: int) -> Tensor:
    """Row indices renumbered from just after the widest run of rows that ``peaks`` never holds, so
    that rows next to each other on the ring are next to each other in number."""
    unused = torch.bincount(peaks.flatten(), minlength=rows) == 0
    if not unused.any():
        return peaks
    twice = torch.cat([unused, unused]).tolist()
    widest, end, run = 0, 0, 0
    for index, free in enumerate(twice):  # the longest run of unused rows, around the ring
        run = run + 1 if free else 0
        if run > widest:
            widest, end = run, index
    return (peaks - (end + 1)) % rows


def correlation(a: Tensor, b: Tensor) -> Tensor:
    """Pearson's r of each row of a against the same row of b (NaN where either is constant)."""
    a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
    spread = a.norm(dim=-1) * b.norm(dim=-1)
    return torch.where(spread > 0, (a * b).sum(-1) / spread.clamp_min(1e-12), torch.nan)


def correlation_ratio(values: Tensor, groups: Tensor) -> float:
    """η²: the share of the variance of ``values`` that lies between the means of their ``groups``."""
    centred = values - values.mean()
    _, group = groups.unique(return_inverse=True)
    sums = centred.new_zeros(int(group.max()) + 1).index_add_(0, group, centred)
    counts = torch.zeros_like(sums).index_add_(0, group, torch.ones_like(centred))
    return ((sums**2 / counts).sum() / (centred**2).sum().clamp_min(1e-12)).item()


@torch.no_grad()
def probe(run: Path, split: str, sequences: int) -> list[Head]:
    """Each write head's figures."""
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
    shuffled = priority.flatten()[
        torch.randperm(priority.numel(), generator=torch.Generator().manual_seed(0))
    ]
    heads = []
    for head in range(weights.shape[2]):
        w = weights[:, :, head]
        peaks = w.argmax(-1)  # (B, inputs)
        rows = unrolled(peaks, w.shape[-1])
        heads.append(
            Head(
                number=head + 1,
                peak_weight=w.max(-1).values.mean().item(),
                rows=peaks.unique().numel(),
                correlation=correlation(priority, rows.to(priority.dtype)).nanmean().item(),
                eta_squared=correlation_ratio(priority.flatten(), peaks.flatten()),
                eta_squared_shuffled=correlation_ratio(shuffled, peaks.flatten()),
                priority=priority.flatten(),
                unrolled_rows=rows.flatten(),
            )
        )
    return heads


def draw(panels: list[tuple[str, Head]], path: Path) -> Path:
    """One scatter per run: priority against the unrolled row of its most priority-driven write head."""
    plt = require_matplotlib()
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False)
    for ax, (name, head) in zip(axes[0], panels, strict=True):
        ax.scatter(head.priority.numpy(), head.unrolled_rows.numpy(), s=4, alpha=0.4)
        ax.set_title(f"{name}: write head {head.number} (η² {head.eta_squared:.2f})", fontsize=9)
        ax.set_xlabel("priority")
        ax.set_ylabel("row it writes to (unrolled)")
    figure.tight_layout()
    return save_png(figure, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--split", default="valid")
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--png", type=Path, help="draw priority against row for each run's best head")
    args = parser.parse_args()
    if args.png:
        if args.png.suffix.lower() != ".png":
            raise SystemExit(f"error: --png {args.png}: the figure is a PNG; give a path ending in .png")
        try:
            require_matplotlib()
        except UserError as error:
            raise SystemExit(f"error: {error}") from None
    torch.set_num_threads(1)
    print(
        "| run | write head | mean peak weight | rows it peaks on | correlation of priority and row "
        "| η² of priority by row (shuffled) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    panels = []
    for run in args.runs:
        heads = probe(run, args.split, args.sequences)
        for h in heads:
            print(
                f"| {run.name} | {h.number} | {h.peak_weight:.2f} | {h.rows} | {h.correlation:+.2f} "
                f"| {h.eta_squared:.2f} ({h.eta_squared_shuffled:.2f}) |"
            )
        panels.append((run.name, max(heads, key=lambda h: h.eta_squared - h.eta_squared_shuffled)))
    if args.png:
        print(f"figure: {draw(panels, args.png)}")


if __name__ == "__main__":
    main()
