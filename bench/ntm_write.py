"""Training speed of the NTM's write, ``M + w (a - e ⊙ M)`` in three ops (memtool's), against the paper's
form ``M ⊙ (1 - w e) + w a`` in five (the baseline), measured in the same run on the same batches.

    python bench/ntm_write.py [--threads 1] [--seconds 10] [--rounds 3] [--quick]

Each write head writes once per time step, so the write's share of a step grows with the heads: copy has
one write head, priority sort (the paper's model) eight. For each shipped config, both forms train the
same model from the same weights on the same generated batches (Adam, eager), in interleaved rounds so
that the machine's drift hits them alike; the median round of each is printed with their ratio. Run with
no other torch process on the machine. The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import memtool.models.ntm as ntm
from memtool.build import build_task, create_model, model_arguments
from memtool.config import load_config
from memtool.errors import run_as_script

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"copy": "ntm_copy.yaml", "priority_sort": "ntm_priority_sort.yaml"}
BATCH_SIZE = 32
THREE_OPS = ntm.write


def five_ops(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """The baseline: Eq. 3-4 as written, M ⊙ (1 - w e^T) + w a^T."""
    w = weights.unsqueeze(-1)
    return memory * (1 - w * erase.unsqueeze(1)) + w * add.unsqueeze(1)


def setup(config_name: str) -> tuple[nn.Module, list[tuple[Tensor, Tensor]]]:
    config = load_config(ROOT / "configs" / config_name, [f"data.sequences_per_epoch={BATCH_SIZE * 16}"])
    task = build_task(config)
    torch.manual_seed(0)
    model = create_model(config.model.name, model_arguments(config, task))
    batches = [(b.inputs["inputs"], b.targets) for b in task.epoch_batches(BATCH_SIZE, seed=0)]
    return model, batches


def speed(model: nn.Module, batches: list[tuple[Tensor, Tensor]], seconds: float) -> float:
    """Sequences per second of training (forward, backward, Adam step) after one warm-up step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(inputs: Tensor, targets: Tensor) -> None:
        logits = model(inputs).prediction[:, -targets.shape[1] :]
        nn.functional.binary_cross_entropy_with_logits(logits, targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(*batches[0])
    done, steps, start = 0, 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        inputs, targets = batches[steps % len(batches)]
        step(inputs, targets)
        done, steps = done + inputs.shape[0], steps + 1
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per round and form")
    parser.add_argument("--rounds", type=int, default=3, help="each form timed this many times, interleaved")
    parser.add_argument("--quick", action="store_true", help="one round of 2 s per form: under a minute")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = 2.0, 1
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {BATCH_SIZE}, eager")
    figures: dict[str, Any] = {"threads": args.threads, "batch_size": BATCH_SIZE}
    print(f"{'task':<14} {'write heads':>11} {'five ops seq/s':>14} {'three ops seq/s':>15} {'ratio':>6}")
    for task, config_name in CONFIGS.items():
        model, batches = setup(config_name)
        runs: dict[str, list[float]] = {"five_ops": [], "three_ops": []}
        for _ in range(args.rounds):
            for form, function in (("five_ops", five_ops), ("three_ops", THREE_OPS)):
                ntm.write = function  # NTM.step looks the write up at call time
                runs[form].append(speed(copy.deepcopy(model), batches, args.seconds))
        ntm.write = THREE_OPS
        five, three = statistics.median(runs["five_ops"]), statistics.median(runs["three_ops"])
        figures[task] = {"five_ops": five, "three_ops": three, "ratio": three / five, "rounds": runs}
        print(f"{task:<14} {model.write_heads:>11} {five:>14.1f} {three:>15.1f} {three / five:>5.2f}×")
    print(json.dumps(figures))


if __name__ == "__main__":
    run_as_script(main)
