"""Training speed of the NTM on copy, in sequences per second at batch 1, 16 and 64, against the public
PyTorch NTM (loudinthecloud/pytorch-ntm) measured in the same run on the same sequences.

    python bench/ntm_speed.py [--quick] [--compile] [--threads 2] [--external bench/.external/pytorch-ntm]

Both train the copy task's paper-sized model (LSTM controller 100, one read and one write head, a 128 × 20
memory, 8-bit vectors of lengths 1-20, one length per batch) with RMSprop and gradients clamped to ±10:
forward, backward, clipping and the optimizer step, from generated batches made before the clock starts.
memtool's step runs the whole batch through each op, one Python iteration per time step. The public
implementation is driven the way its ``train.py`` drives it (one call per time step, BCE on the sigmoid
outputs); its code is not part of memtool: fetch it with

    git clone https://github.com/loudinthecloud/pytorch-ntm bench/.external/pytorch-ntm

(only its ``ntm/`` package is imported; it needs numpy). Without it, its rows are skipped with a message.
``--compile`` adds memtool with ``train.compile`` (torch.compile of the NTM's step function) and the
seconds its first steps at each batch size spend compiling.
Run with no other torch process on the machine: on 2 cores a second one slows the first several times.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from memtool.build import build_task, create_model, model_arguments
from memtool.config import load_config
from memtool.errors import run_as_script
from memtool.models.base import compile_model
from memtool.optim import clip_gradients

ROOT = Path(__file__).resolve().parent.parent
BATCH_SIZES = (1, 16, 64)


def make_batches(batch_size: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` copy batches of the shipped config's task, as memtool trains on them."""
    sizes = [f"data.sequences_per_epoch={batch_size * count}"]
    config = load_config(ROOT / "configs" / "ntm_copy.yaml", sizes)
    task = build_task(config)
    return [(b.inputs["inputs"], b.targets) for b in task.epoch_batches(batch_size, seed=batch_size)]


def memtool_model() -> nn.Module:
    config = load_config(ROOT / "configs" / "ntm_copy.yaml")
    torch.manual_seed(0)
    return create_model(config.model.name, model_arguments(config, build_task(config)))


def memtool_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    parameters = list(model.parameters())

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        logits = model(inputs=inputs).prediction[:, -targets.shape[1] :]
        nn.functional.binary_cross_entropy_with_logits(logits, targets).backward()
        clip_gradients(parameters, None, "global", 10.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def public_model(external: Path) -> nn.Module | None:
    if not (external / "ntm" / "aio.py").is_file():
        return None
    sys.path.insert(0, str(external))
    from ntm.aio import EncapsulatedNTM  # type: ignore[import-not-found]

    torch.manual_seed(0)
    return EncapsulatedNTM(9, 8, 100, 1, 1, 128, 20)


def public_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    """One step as its train.py takes it: a call per input step, a call per output step, BCE, clamp."""
    criterion = nn.BCELoss()

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        length = targets.shape[1]
        x = inputs[:, : length + 1].transpose(0, 1)  # (time, batch, channels): its layout
        y = targets.transpose(0, 1)
        model.init_sequence(x.shape[1])
        for t in range(x.shape[0]):
            model(x[t])
        outputs = torch.stack([model()[0] for _ in range(length)])
        criterion(outputs, y).backward()
        for parameter in model.parameters():
            if parameter.grad is not None:
                parameter.grad.clamp_(-10, 10)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def sequences_per_second(step: Any, batches: list, seconds: float) -> tuple[float, float]:
    """Train on ``batches`` (cycled) for about ``seconds`` after warm-up steps (one per length in the
    first batches, so that a compiled step has met them); returns the speed and the warm-up seconds."""
    warm = time.perf_counter()
    for inputs, targets in batches[:3]:
        step(inputs, targets)
    warm = time.perf_counter() - warm
    done, steps, start = 0, 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        inputs, targets = batches[steps % len(batches)]
        step(inputs, targets)
        done += inputs.shape[0]
        steps += 1
    return done / (time.perf_counter() - start), warm


def rmsprop(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(model.parameters(), lr=1e-4, momentum=0.9, alpha=0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute in all (3 s per figure)")
    parser.add_argument("--seconds", type=float, default=None, help="timed seconds per figure (default 15)")
    parser.add_argument("--compile", action="store_true", help="also time memtool with train.compile")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument(
        "--external",
        type=Path,
        default=ROOT / "bench" / ".external" / "pytorch-ntm",
        help="a checkout of loudinthecloud/pytorch-ntm to time beside memtool (skipped if absent)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds = args.seconds or (3.0 if args.quick else 15.0)

    ours = memtool_model()
    theirs = public_model(args.external)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {seconds:.0f} s per figure")
    print(f"memtool NTM: {sum(p.numel() for p in ours.parameters()):,} parameters")
    if theirs is None:
        print(f"loudinthecloud/pytorch-ntm: not found at {args.external}; its rows are skipped (see --help)")
    else:
        print(f"loudinthecloud/pytorch-ntm: {sum(p.numel() for p in theirs.parameters()):,} parameters")

    figures: dict[str, Any] = {"threads": torch.get_num_threads(), "seconds_per_figure": seconds}
    compiled = memtool_model() if args.compile else None
    if compiled is not None:
        compile_model(compiled)
    rows = []
    for batch_size in BATCH_SIZES:
        batches = make_batches(batch_size, count=64 if batch_size < 64 else 16)
        ours_speed, _ = sequences_per_second(memtool_step(ours, rmsprop(ours)), batches, seconds)
        figures[f"memtool_b{batch_size}"] = ours_speed
        theirs_speed = compiled_speed = None
        if theirs is not None:
            theirs_speed, _ = sequences_per_second(public_step(theirs, rmsprop(theirs)), batches, seconds)
            figures[f"public_b{batch_size}"] = theirs_speed
        if compiled is not None:
            step = memtool_step(compiled, rmsprop(compiled))
            compiled_speed, warm = sequences_per_second(step, batches, seconds)
            figures[f"compiled_b{batch_size}"] = compiled_speed
            figures[f"compiled_warmup_seconds_b{batch_size}"] = warm
        rows.append((batch_size, ours_speed, theirs_speed, compiled_speed))

    print()
    head = f"{'batch':>5}  {'memtool seq/s':>13}  {'public seq/s':>12}  {'memtool / public':>16}"
    print(head + (f"  {'compiled seq/s':>14}  {'compile s':>9}" if compiled is not None else ""))
    for batch_size, ours_speed, theirs_speed, compiled_speed in rows:
        public = f"{theirs_speed:12.1f}" if theirs_speed else f"{'–':>12}"
        ratio = f"{ours_speed / theirs_speed:15.1f}×" if theirs_speed else f"{'–':>16}"
        line = f"{batch_size:>5}  {ours_speed:13.1f}  {public}  {ratio}"
        if compiled_speed is not None:
            line += f"  {compiled_speed:14.1f}  {figures[f'compiled_warmup_seconds_b{batch_size}']:9.0f}"
        print(line)
    for who in ("memtool", "compiled", "public"):
        if f"{who}_b1" in figures:
            for batch_size in BATCH_SIZES[1:]:
                gain = figures[f"{who}_b{batch_size}"] / figures[f"{who}_b1"]
                figures[f"{who}_batching_gain_b{batch_size}"] = gain
            gains = ", ".join(f"{figures[f'{who}_batching_gain_b{b}']:.1f}× at {b}" for b in BATCH_SIZES[1:])
            print(f"{who}: batching speed-up over batch 1: {gains}")
    if theirs is not None:
        figures["memtool_b16_over_public_b1"] = figures["memtool_b16"] / figures["public_b1"]
        print(
            f"memtool at batch 16 (its config) over the public code at batch 1 (its default): "
            f"{figures['memtool_b16_over_public_b1']:.1f}×"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    run_as_script(main)
