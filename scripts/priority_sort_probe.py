"""Does a priority-sort NTM write each input where its priority says? The paper's Fig. 17 strategy.

    python scripts/priority_sort_probe.py runs/ps-adam-s1 runs/ps-adam-s2 [--split valid] [--sequences 64]
        [--png FIGURE.png] [--gaps ROWS...]
    python scripts/priority_sort_probe.py --floor 16 32 128 [--inputs 20 30 40] [--lists 20000]

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

One row per run and head, in Markdown. ``--gaps ROWS...`` adds a second table: the model's wrong bits
per output (of ``bits``) by how close that output's priority is to the nearest other priority in its
list, beside what a perfect bucket strategy with that many rows would get (``bucket_floor``). ``--png``
draws the paper's Fig. 17 from the data: for each run, the priority of every input against the row its
most priority-driven write head (the largest η² above its shuffled η²) peaks on, rows unrolled as above.

``--floor ROWS...`` needs no run: it scores the perfect bucket strategy with each number of rows on
``--lists`` generated lists (8-bit vectors, the top 4/5 of each list back, as the paper's 16 of 20) of
each of ``--inputs`` lengths: wrong bits per list, and the share of lists with none.
"""

from __future__ import annotations

import argparse
import itertools
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from memtool.build import restore
from memtool.checkpoint import load_checkpoint
from memtool.errors import exit_for_user, run_as_script
from memtool.figures import require_matplotlib, save_png
from memtool.tasks.algorithmic.priority_sort import (
    PrioritySortParams,
    answer_order,
    priority_sort_sequences,
)


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


GAP_EDGES = (0.0, 1 / 128, 1 / 64, 1 / 32, 1 / 16, 1 / 8, 2.0)  # 1/64 is a row's width at 128 rows


def band_masks(gap: Tensor) -> list[Tensor]:
    """Where ``gap`` falls in each band of GAP_EDGES."""
    return [(gap >= low) & (gap < high) for low, high in itertools.pairwise(GAP_EDGES)]


def bucket_floor(priority: Tensor, vectors: Tensor, outputs: int, rows: int) -> Tensor:
    """Expected wrong bits at each output position, (B, outputs), of a perfect bucket strategy with
    ``rows`` rows: every input is written to the row whose equal share of [-1, 1] holds its priority, and
    an output reads the row of the input it should return. Outputs that share a row cannot be told apart
    there, so the best answer for each is their bitwise mean: a bit they all agree on is right, a
    majority bit is right for the majority, a tie is right half the time. Optimistic: it knows how many
    outputs share each row, never lets an input that is not an output blur one that is, and never
    misplaces the ones that do not share."""
    row = ((priority + 1) / 2 * rows).long().clamp(0, rows - 1)  # (B, inputs)
    order = answer_order(priority, outputs)
    row, vectors = (
        row.gather(1, order),
        vectors.gather(1, order.unsqueeze(2).expand(-1, -1, vectors.shape[2])),
    )
    same = (row.unsqueeze(2) == row.unsqueeze(1)).to(vectors.dtype)  # (B, outputs, outputs)
    mean = same @ vectors / same.sum(-1, keepdim=True)  # each output's row, read back
    wrong = torch.where(mean == 0.5, 0.5, ((mean > 0.5) != (vectors > 0.5)).to(vectors.dtype))
    return wrong.sum(-1)


def nearest_gap(priority: Tensor, outputs: int) -> Tensor:
    """(B, outputs): the distance from each output's priority to the nearest other priority in its list."""
    distance = (priority.unsqueeze(2) - priority.unsqueeze(1)).abs()
    distance = distance + torch.eye(priority.shape[1], device=priority.device) * 4  # not to itself
    return distance.min(-1).values.gather(1, answer_order(priority, outputs))


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


class Answers(NamedTuple):
    """Per output position (B, outputs): the model's wrong bits, and the gap of its priority to the
    nearest other in the list; with the lists' priorities and vectors, for ``bucket_floor``."""

    wrong: Tensor
    gap: Tensor
    priority: Tensor
    vectors: Tensor


@torch.no_grad()
def probe(run: Path, split: str, sequences: int) -> tuple[list[Head], Answers]:
    """Each write head's figures, and the answers' wrong bits by priority gap."""
    config, task, model = restore(load_checkpoint(run / "best.pt" if run.is_dir() else run))
    if config.task.name != "priority_sort" or config.model.name != "ntm":
        exit_for_user(
            f"{run}: an NTM on priority_sort is needed, this is {config.model.name} on {config.task.name}"
        )
    inputs, bits = config.task.params.inputs, config.task.params.bits
    batch = next(iter(task.batches(split, sequences)))
    x = batch.inputs["inputs"]
    output = model(x)
    weights = output.trace["write_weights"][:, :inputs]  # (B, inputs, heads, N): while inputs arrive
    priority = x[:, :inputs, bits]  # the channel after the bits
    outputs = batch.targets.shape[1]
    logits = output.prediction[:, -outputs:]
    answers = Answers(
        wrong=((logits > 0).to(x.dtype) != batch.targets).sum(-1).to(x.dtype),
        gap=nearest_gap(priority, outputs),
        priority=priority,
        vectors=x[:, :inputs, :bits],
    )
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
    return heads, answers


def gap_bands(gap: Tensor, wrong: Tensor) -> list[str]:
    """Mean wrong bits per output over all outputs, then in each band of GAP_EDGES."""
    cells = [f"{wrong.mean().item():.2f}"]
    for inside in band_masks(gap):
        cells.append(f"{wrong[inside].mean().item():.2f}" if inside.any() else "–")
    return cells


def band_label(low: float, high: float) -> str:
    """A band of gaps between priorities, as fractions: "1/128-1/64" (a row is 1/64 wide at 128 rows)."""
    if high >= 2:
        return f"{Fraction(low).limit_denominator()} and more"
    return f"{Fraction(low).limit_denominator()}-{Fraction(high).limit_denominator()}"


def print_gap_table(answers: list[tuple[str, Answers]], floor_rows: list[int]) -> None:
    """Wrong bits per output by priority gap, for each run, and for the bucket strategy and the share of
    outputs in each band over all the runs' lists together."""
    bands = [band_label(low, high) for low, high in itertools.pairwise(GAP_EDGES)]
    print()
    print(f"| wrong bits per output, by gap to the nearest priority | all | {' | '.join(bands)} |")
    print("|---|" + "---:|" * (len(bands) + 1))
    gap = torch.cat([a.gap for _, a in answers])
    share = [inside.float().mean().item() for inside in band_masks(gap)]
    print(
        "| share of outputs (all runs' lists) | 100% | " + " | ".join(f"{100 * s:.0f}%" for s in share) + " |"
    )
    for name, a in answers:
        print(f"| {name} | {' | '.join(gap_bands(a.gap, a.wrong))} |")
    for rows in floor_rows:
        floor = torch.cat([bucket_floor(a.priority, a.vectors, a.gap.shape[1], rows) for _, a in answers])
        label = f"perfect bucket strategy, {rows} row{'s' * (rows != 1)} (all runs' lists)"
        print(f"| {label} | {' | '.join(gap_bands(gap, floor))} |")


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


def print_floor(rows: list[int], inputs: list[int], lists: int) -> None:
    """The perfect bucket strategy alone, on freshly generated lists."""
    print("| inputs | rows | wrong bits per list | lists with no wrong bit |")
    print("|---:|---:|---:|---:|")
    paper = PrioritySortParams()  # 8-bit vectors, 16 of 20 back
    for count in inputs:
        outputs, bits = paper.outputs_for(count), paper.bits
        sequence, _ = priority_sort_sequences(lists, count, outputs, bits, torch.Generator().manual_seed(1))
        priority, vectors = sequence[:, :count, bits], sequence[:, :count, :bits]
        for row_count in rows:
            wrong = bucket_floor(priority, vectors, outputs, row_count).sum(-1)
            perfect = (wrong == 0).float().mean().item()
            print(f"| {count} | {row_count:,} | {wrong.mean().item():.2f} | {100 * perfect:.0f}% |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="priority-sort NTM run directories or checkpoints")
    parser.add_argument("--split", default="valid", help="the split whose sequences are probed")
    parser.add_argument("--sequences", type=int, default=64, help="the split's first this many sequences")
    parser.add_argument("--png", type=Path, help="draw priority against row for each run's best head")
    parser.add_argument(
        "--gaps",
        type=int,
        nargs="*",
        metavar="ROWS",
        help="add wrong bits by priority gap, and a perfect bucket strategy's with these many rows",
    )
    parser.add_argument(
        "--floor", type=int, nargs="+", metavar="ROWS", help="score the bucket strategy alone"
    )
    parser.add_argument("--inputs", type=int, nargs="+", default=[20], help="list lengths for --floor")
    parser.add_argument("--lists", type=int, default=20000, help="generated lists per length for --floor")
    args = parser.parse_args()
    if args.floor:
        if min(args.floor) < 1 or min(args.inputs) < 1 or args.lists < 1:
            exit_for_user("--floor, --inputs and --lists take whole numbers of at least 1")
        torch.set_num_threads(1)
        print_floor(args.floor, args.inputs, args.lists)
        return
    if not args.runs:
        exit_for_user("give one or more runs to probe, or --floor ROWS... to score the bucket strategy")
    if args.gaps and min(args.gaps) < 1:
        exit_for_user(f"--gaps {min(args.gaps)}: a bucket strategy needs at least 1 row")
    if args.png:
        if args.png.suffix.lower() != ".png":
            exit_for_user(f"--png {args.png}: the figure is a PNG; give a path ending in .png")
        require_matplotlib()
    torch.set_num_threads(1)
    probed = [(run, *probe(run, args.split, args.sequences)) for run in args.runs]  # refusals come first
    print(
        "| run | write head | mean peak weight | rows it peaks on | correlation of priority and row "
        "| η² of priority by row (shuffled) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    panels, answers = [], []
    for run, heads, answered in probed:
        answers.append((run.name, answered))
        for h in heads:
            print(
                f"| {run.name} | {h.number} | {h.peak_weight:.2f} | {h.rows} | {h.correlation:+.2f} "
                f"| {h.eta_squared:.2f} ({h.eta_squared_shuffled:.2f}) |"
            )
        panels.append((run.name, max(heads, key=lambda h: h.eta_squared - h.eta_squared_shuffled)))
    if args.gaps is not None:
        print_gap_table(answers, args.gaps)
    if args.png:
        print(f"figure: {draw(panels, args.png)}")


if __name__ == "__main__":
    run_as_script(main)
