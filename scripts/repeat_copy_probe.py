"""Where a repeat-copy model goes wrong beyond its training sizes: per repeat, and when it stops.

    python scripts/repeat_copy_probe.py runs/rc-fwd-s1 [--sizes 10x10 10x14 10x20 20x10] [--sequences 64]

For each run's ``best.pt`` and each size (length x repeats), on ``--sequences`` generated sequences
(seeded, the same for every run): the wrong bits per sequence in all, then in each repeat of the pattern
(of length x bits), and where the end marker first fires (its probability above 0.5) against where it
should (the step after the last repeat). A model that counts repeats fires it after the asked-for
number; one that counts time steps fires it after about as many steps as it trained on. The repeat
count arrives as a number normalised over the training range, so 20 repeats after training on 1-10 is
an input the controller never saw; the first column says how far outside it lies.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from memtool.build import restore
from memtool.checkpoint import load_checkpoint
from memtool.errors import exit_for_user, run_as_script
from memtool.tasks.algorithmic.repeat_copy import repeat_copy_sequences


def size(text: str) -> tuple[int, int]:
    length, _, repeats = text.partition("x")
    if not (length.isdigit() and repeats.isdigit()) or min(int(length), int(repeats)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a size is LENGTHxREPEATS, e.g. 10x20")
    return int(length), int(repeats)


class Probed(NamedTuple):
    wrong: float  # wrong bits per sequence, all answer steps
    per_repeat: list[float]  # of them, in each repeat of the pattern
    fires_at: float | None  # the mean first answer step whose end marker fires; None: never
    fired: float  # the share of sequences where it fires at all
    should: int  # the answer step of the end marker


@torch.no_grad()
def measure(model: Callable[[Tensor], Any], inputs: Tensor, targets: Tensor, repeats: int) -> Probed:
    """``model``'s answers to generated ``inputs`` against ``targets`` (as ``repeat_copy_sequences``)."""
    count, answer, channels = targets.shape
    logits = model(inputs).prediction[:, -answer:]
    wrong = ((logits > 0).to(targets.dtype) != targets).to(torch.float64)
    per_repeat = wrong[:, :-1].reshape(count, repeats, -1).sum(2).mean(0)
    fires = logits[:, :, channels - 1] > 0  # the end marker's channel
    fired = fires.any(1)
    first = fires.to(torch.int64).argmax(1)[fired].to(torch.float64)
    return Probed(
        wrong=wrong.sum((1, 2)).mean().item(),
        per_repeat=per_repeat.tolist(),
        fires_at=first.mean().item() if fired.any() else None,
        fired=fired.to(torch.float64).mean().item(),
        should=answer - 1,
    )


def probe(run: Path, sizes: list[tuple[int, int]], sequences: int) -> list[str]:
    config, task, model = restore(load_checkpoint(run / "best.pt" if run.is_dir() else run))
    if config.task.name != "repeat_copy":
        exit_for_user(f"{run}: a repeat_copy run is needed, this is {config.task.name}")
    bits, (mean, std) = config.task.params.bits, task.repeats_scale
    trained = (config.task.params.max_repeats - mean) / std
    lines = []
    for length, repeats in sizes:
        generator = torch.Generator().manual_seed(length * 1_000 + repeats)
        inputs, targets = repeat_copy_sequences(sequences, length, repeats, bits, (mean, std), generator)
        found = measure(model, inputs, targets, repeats)
        stop = "never" if found.fires_at is None else f"step {found.fires_at:.0f} (in {found.fired:.0%})"
        lines.append(
            f"| {run.name} | {length}x{repeats} | {(repeats - mean) / std:+.2f} (trained: ≤ {trained:+.2f}) "
            f"| {found.wrong:.1f} | {' '.join(f'{v:.0f}' for v in found.per_repeat)} "
            f"| {stop} | step {found.should} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="repeat-copy run directories or checkpoints")
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=size,
        default=[(10, 10), (10, 14), (10, 20), (20, 10)],
        metavar="LENGTHxREPEATS",
        help="sequence length and repeats to score (default 10x10 10x14 10x20 20x10)",
    )
    parser.add_argument("--sequences", type=int, default=64, help="generated sequences per size")
    args = parser.parse_args()
    if args.sequences < 1:
        exit_for_user("--sequences takes a whole number of at least 1")
    torch.set_num_threads(1)
    rows = [line for run in args.runs for line in probe(run, args.sizes, args.sequences)]
    print(
        "| run | size | repeat-count input (σ) | wrong bits | wrong bits per repeat | end marker | should |"
    )
    print("|---|---|---|---:|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    run_as_script(main)
