"""How a training step's time grows with its batch, per shipped config: what stacking restarts could buy.

    python bench/batch_scaling.py [--data ../shared/data/babi/en] [--threads 2] [--factor 10] [--quick]

Stacking R restarts (``train.stack_restarts``) makes every weight-free op serve R times the examples and
turns each weight's product into a per-replica one. A step that costs about as much at R × the batch as
at the batch is op-bound: stacking pays there (MemN2N on one bAbI task). A step whose time grows R-fold
is arithmetic: stacking buys nothing. Each row times one model's forward, backward and optimizer step
(the config's own optimizer) on the task's own training batches at the config's batch size and at
``--factor`` times it, best of three rounds. Run it with no other torch process on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from memtool.build import build_task, create_model, model_arguments
from memtool.config import load_config
from memtool.errors import UserError, run_as_script
from memtool.optim import build_optimizer
from memtool.tasks.base import Batch, Task

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = (
    "memn2n_babi_task1.yaml",
    "memn2n_babi_1k_joint.yaml",
    "ntm_copy.yaml",
    "ntm_associative_recall.yaml",
    "captioner_shapes.yaml",
)


def step_ms(config_path: Path, overrides: list[str], batch_size: int, steps: int, rounds: int) -> float:
    """Milliseconds of one training step at ``batch_size``: the best round's mean."""
    config = load_config(config_path, overrides)
    task = build_task(config)
    torch.manual_seed(0)
    model = create_model(config.model.name, model_arguments(config, task))
    model.train()
    optimizer = build_optimizer(config.train, list(model.parameters()))
    batches = []
    for seed in range(1000):  # an epoch may hold fewer batches than asked: take the next one's
        batches += list(task.epoch_batches(batch_size, seed))[: steps - len(batches)]
        if len(batches) == steps:
            break

    return best_seconds(training_steps(model, task, optimizer, batches), rounds) / steps * 1e3


def training_steps(
    model: torch.nn.Module, task: Task, optimizer: torch.optim.Optimizer, batches: list[Batch]
) -> Callable[[], None]:
    """One round of training steps on ``batches``: forward, the task's loss plus the model's auxiliary
    losses, backward, the optimizer's step."""

    def run() -> None:
        for batch in batches:
            output = model(**batch.inputs)
            loss, _ = task.loss(output, batch)
            (loss + sum(output.aux_losses.values())).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    return run


def has_babi(data: str) -> bool:
    return Path(data, "qa1_single-supporting-fact_train.txt").is_file()


def require_babi(data: str) -> None:
    """Refuse a ``--data`` folder without the bAbI tasks, in the scripts' own terms."""
    if not has_babi(data):
        raise UserError(f"--data {data}: no bAbI tasks there (get them with `memtool data download babi`)")


def best_seconds(run: Callable[[], None], rounds: int) -> float:
    """The fastest of ``rounds`` calls of ``run``, after one to warm up (allocator, first-call costs)."""
    run()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "babi" / "en"),
        help="bAbI en/ directory (memtool data download babi)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--factor", type=int, default=10, help="the larger batch: this many times the config's"
    )
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds: about a minute")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps, rounds = (3, 1) if args.quick else (10, 3)
    rows = []
    print(f"{args.threads} threads; forward, backward and optimizer step, best of {rounds} round(s)")
    print(
        f"{'config':<30} {'batch':>6} {'ms':>9} {'batch':>6} {'ms':>9} "
        f"{'time for ' + str(args.factor) + 'x':>14}"
    )
    for name in CONFIGS:
        overrides = []
        if name.startswith("memn2n_babi"):
            if not has_babi(args.data):
                print(
                    f"{name:<30} skipped: no bAbI under {args.data} (memtool data download babi, or --data)"
                )
                continue
            overrides = [f"data.path={Path(args.data).resolve()}"]
        path = ROOT / "configs" / name
        batch = load_config(path, overrides).train.batch_size
        small = step_ms(path, overrides, batch, steps, rounds)
        large = step_ms(path, overrides, batch * args.factor, max(2, steps // 2), rounds)
        rows.append(
            {
                "config": name,
                "batch": batch,
                "ms": round(small, 2),
                "large_ms": round(large, 2),
                "ratio": round(large / small, 3),
            }
        )
        print(
            f"{name:<30} {batch:>6} {small:>9.1f} {batch * args.factor:>6} {large:>9.1f} "
            f"{large / small:>13.2f}x"
        )
    print(json.dumps({"threads": args.threads, "factor": args.factor, "rows": rows}))


if __name__ == "__main__":
    run_as_script(main)
