"""The captioner's speed: training videos per second at batch 64, and decoding videos per second greedy
and with a beam of 5, each against its baseline measured in the same run.

    python bench/captioner_speed.py [--run RUN] [--threads 2] [--quick]

Training: forward, backward and the config's optimizer step of ``configs/captioner_shapes.yaml``
(λ = 1) on its own batches of 64 captions (a batch holds whole videos with all their references, 3
each: about 21 videos, each encoded once), in captions and videos per second, against the same model
with λ = 0 (what the regularizer costs) and the mean-pooling baseline (what attention costs).
Decoding: the validation videos captioned in batches of the config's ``eval_batch_size`` (200), greedy
and beam 5, against greedy one video at a time (what batching buys). Decoding stops when every caption
in a batch has ended, so its speed depends on how long the captions are: ``--run`` decodes with a
trained run's ``best.pt`` (captions as long as the references); without it an untrained model writes
to ``eval.max_words`` (25), the slowest case. Run it with no other torch process on the machine. The
last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from batch_scaling import best_seconds, training_steps  # bench/ is on the path when run as a script
from torch import nn

from memtool.build import build_task, create_model, model_arguments, restore
from memtool.checkpoint import load_checkpoint
from memtool.config import load_config
from memtool.errors import run_as_script
from memtool.optim import build_optimizer
from memtool.tasks.base import Task

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "captioner_shapes.yaml"
TRAINING = {  # row name → overrides of the shipped config
    "soft attention, λ = 1 (shipped)": [],
    "soft attention, λ = 0": ["model.reg_lambda=0"],
    "mean pooling (no attention)": ["model.attention=mean"],
}


def training_rate(overrides: list[str], batch_size: int, steps: int, rounds: int) -> tuple[float, float]:
    """Captions and videos per second of training steps at ``batch_size`` captions: the best round's."""
    config = load_config(CONFIG, [*overrides, f"train.batch_size={batch_size}"])
    task = build_task(config)
    torch.manual_seed(0)
    model = create_model(config.model.name, model_arguments(config, task)).train()
    optimizer = build_optimizer(config.train, list(model.parameters()))
    batches = list(task.epoch_batches(batch_size, seed=0))[:steps]

    seconds = best_seconds(training_steps(model, task, optimizer, batches), rounds)
    captions = sum(len(batch.targets) for batch in batches)
    videos = sum(len(batch.inputs["frames"]) for batch in batches)
    return captions / seconds, videos / seconds


@torch.no_grad()
def decoding_rate(
    task: Task, model: nn.Module, videos: int, batch_size: int, beam: int, rounds: int
) -> float:
    """Videos per second captioned from the validation split's first ``videos``."""
    data = task.splits["valid"]
    model.eval()

    def run() -> None:
        for first in range(0, videos, batch_size):
            chosen = torch.arange(first, min(first + batch_size, videos))
            model.generate(
                data.float_frames(chosen), data.frame_mask[chosen], task.evaluation.max_words, beam
            )

    return videos / best_seconds(run, rounds)


def decoding_model(run: str | None) -> tuple[Task, nn.Module, int]:
    """The task and model to decode with, and the eval batch size: a trained run's, or an untrained one."""
    if run is not None:
        path = Path(run)
        config, task, model = restore(load_checkpoint(path / "best.pt" if path.is_dir() else path))
        return task, model, config.train.eval_batch_size
    config = load_config(CONFIG)
    task = build_task(config)
    torch.manual_seed(0)
    return task, create_model(config.model.name, model_arguments(config, task)), config.train.eval_batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a trained captioner run (or checkpoint) to decode with")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="fewer steps, videos and rounds: about a minute")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    # first: a bad --run is refused before minutes of timing
    task, model, eval_batch = decoding_model(args.run)
    steps, videos, rounds = (2, 32, 1) if args.quick else (6, 200, 3)
    batch_size = 64
    print(f"{args.threads} threads, best of {rounds} round(s)")
    print(f"training at batch {batch_size} (forward, backward, optimizer step; {steps} steps a round)")
    training = {
        name: training_rate(overrides, batch_size, steps, rounds) for name, overrides in TRAINING.items()
    }
    baseline = training["soft attention, λ = 0"][1]
    for name, (captions_rate, videos_rate) in training.items():
        print(
            f"  {name:<34} {captions_rate:8.1f} captions/s {videos_rate:7.1f} videos/s"
            f"   {videos_rate / baseline:5.2f}× λ = 0's"
        )

    videos = min(videos, len(task.splits["valid"]))
    which = (
        f"trained {args.run}" if args.run else "untrained model: captions run to max_words, the slowest case"
    )
    print(f"decoding {videos} validation videos ({which})")
    decoding = {
        f"greedy, batches of {eval_batch}": decoding_rate(task, model, videos, eval_batch, 1, rounds),
        f"beam 5, batches of {eval_batch}": decoding_rate(task, model, videos, eval_batch, 5, rounds),
        "greedy, one video at a time": decoding_rate(task, model, min(videos, 64), 1, 1, rounds),
    }
    single = decoding["greedy, one video at a time"]
    for name, rate in decoding.items():
        print(f"  {name:<34} {rate:8.1f} videos/s   {rate / single:5.2f}× one at a time")
    figures = {
        "threads": args.threads,
        "trained_run": args.run,
        "training_captions_per_second": {name: round(rate[0], 2) for name, rate in training.items()},
        "training_videos_per_second": {name: round(rate[1], 2) for name, rate in training.items()},
        "decoding_videos_per_second": {name: round(rate, 2) for name, rate in decoding.items()},
    }
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    run_as_script(main)
