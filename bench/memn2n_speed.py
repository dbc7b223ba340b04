"""Training-step speed of MemN2N on the joint bAbI 1k data, against a naive batched baseline.

    python bench/memn2n_speed.py [--data ../shared/data/babi/en] [--steps 300] [--threads 2] [--rounds 3]
        [--quick]

memtool's step: batches gathered from tensors made once, padding trimmed to each batch's longest story and
sentence, position encoding as two weighted sums of every embedding table side by side in one
``embedding_bag``; then the same on batches from length buckets (``data.length_buckets``: pools of
batches sorted by story length, so a batch's stories are alike). Measured in the same run on the same
batches and the same weights: the baseline, every batch padded to the full memory (50 sentences × the
longest sentence of the data) and PE applied as the explicit (batch, memories, words, d) product of the
paper's formula; and memtool's encoder before 2026-11-29, one bag per embedding table. The variants are
timed in interleaved rounds and each variant's median round is reported, so that the machine's drift hits them
alike. Run it with no other torch process on the machine: on 2 cores a second one slows the first
several times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from batch_scaling import require_babi  # bench/ is on the path when run as a script
from torch import nn

from memtool.build import build_task, create_model, model_arguments
from memtool.config import load_config
from memtool.errors import run_as_script
from memtool.models.memn2n import MemN2N, word_weights
from memtool.optim import clip_gradients
from memtool.tasks.base import Batch

ROOT = Path(__file__).resolve().parent.parent


class ExplicitPE(MemN2N):
    """PE computed literally: the (..., words, d) weight tensor l_j times every looked-up row, then summed."""

    def _encode(self, words, tables):  # type: ignore[override]
        d = self.pe_a.shape[0]
        embedded = nn.functional.embedding(words, tables).unflatten(-1, (-1, d))  # (..., words, tables, d)
        if self.sentence_encoding == "bow":
            return embedded.sum(-3)
        position = word_weights(words, self.sentence_encoding, d, self.sentence_size).expand_as(words)
        weights = self.pe_a - position.unsqueeze(-1) * self.pe_b  # (..., words, d)
        return (weights.unsqueeze(-2) * embedded).sum(-3)


class BagPerTable(MemN2N):
    """memtool's encoder before 2026-11-29: one bag (lookup and weighted sum) per embedding table."""

    def _encode(self, words, tables):  # type: ignore[override]
        one = super()._encode
        return torch.cat([one(words, table) for table in tables.split(self.pe_a.shape[0], 1)], -2)


def padded(batch: Batch, memories: int, words: int, question_words: int) -> Batch:
    story = batch.inputs["story"]
    full = torch.zeros(story.shape[0], memories, words, dtype=story.dtype)
    full[:, : story.shape[1], : story.shape[2]] = story
    question = torch.zeros(story.shape[0], question_words, dtype=story.dtype)
    question[:, : batch.inputs["question"].shape[1]] = batch.inputs["question"]
    inputs = {"story": full, "memory_count": batch.inputs["memory_count"], "question": question}
    return Batch(inputs, batch.targets)


def time_steps(model: MemN2N, batches: list[Batch], task, repeats: int = 1) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005)
    parameters = list(model.parameters())
    model.train()
    start = time.perf_counter()
    for _ in range(repeats):
        for batch in batches:
            loss, _ = task.loss(model(**batch.inputs), batch)
            (loss * batch.size).backward()
            clip_gradients(parameters, 40.0, "per_matrix")
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    local = ROOT / "data" / "babi" / "en"
    default = local if local.is_dir() else ROOT.parent / "shared" / "data" / "babi" / "en"
    parser.add_argument(
        "--data", default=str(default), help="bAbI en/ directory (memtool data download babi)"
    )
    parser.add_argument("--steps", type=int, default=300, help="timed training steps per variant and round")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--buckets", type=int, default=50, help="batches per length-sorted pool")
    parser.add_argument(
        "--rounds", type=int, default=3, help="each variant timed this many times, interleaved"
    )
    parser.add_argument("--quick", action="store_true", help="100 steps, 1 round: a rough figure in seconds")
    args = parser.parse_args()
    require_babi(args.data)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.rounds = min(args.steps, 100), 1

    overrides = [f"data.path={args.data}", "data.length_buckets=0"]
    config = load_config(ROOT / "configs" / "memn2n_babi_1k_joint.yaml", overrides)
    started = time.perf_counter()
    task = build_task(config)
    load_seconds = time.perf_counter() - started
    arguments = model_arguments(config, task)
    train = task.splits["train"]
    batches = list(task.epoch_batches(32, seed=0))[: args.steps]
    task.data = task.data.model_copy(update={"length_buckets": args.buckets})
    bucketed = list(task.epoch_batches(32, seed=0))[: args.steps]  # a random sample of a bucketed epoch
    longest = int(train.sentence_lengths.max())
    question_words = int(train.question_lengths.max())
    naive = [padded(b, config.task.params.memory_size, longest, question_words) for b in batches]
    steps_per_epoch = -(-len(train) // 32)

    torch.manual_seed(0)
    model = create_model("memn2n", arguments)
    baseline = ExplicitPE(**arguments)
    baseline.load_state_dict(model.state_dict())
    # same answers from both: the baseline differs in speed only
    with torch.no_grad():
        model.eval(), baseline.eval()
        a = model(**batches[0].inputs).prediction
        b = baseline(**naive[0].inputs).prediction
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    torch.manual_seed(0)
    per_table = BagPerTable(**arguments)
    per_table.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    bucketed_model = create_model("memn2n", arguments)
    variants = {  # name: (model, batches); each is timed in every round, so drift hits them alike
        "baseline (padded, literal PE)": (baseline, naive),
        "one bag per table (before)": (per_table, batches),
        "memtool (trimmed, one bag)": (model, batches),
        f"memtool + length buckets ({args.buckets})": (bucketed_model, bucketed),
    }
    for variant, variant_batches in variants.values():
        time_steps(variant, variant_batches[:20], task)  # warm up the allocator
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (variant, variant_batches) in variants.items():
            rounds[name].append(time_steps(variant, variant_batches, task))
    n = len(batches)
    seconds = {name: sorted(times)[len(times) // 2] for name, times in rounds.items()}  # median round
    print(
        f"torch {torch.__version__} · {torch.get_num_threads()} threads · "
        f"{n} steps of batch 32 · joint bAbI 1k · median of {args.rounds} rounds"
    )
    source = "from the data cache after the first run"
    print(f"data: ready in {load_seconds:.2f} s ({len(train)} training questions; {source})")
    print(
        f"{'':40s}{'ms/step':>10s}{'examples/s':>12s}{'s/epoch':>9s}{'90 epochs':>11s}{'vs. baseline':>14s}"
    )
    theirs = seconds["baseline (padded, literal PE)"]
    for name, spent in seconds.items():
        per_step = spent / n
        print(
            f"{name:40s}{1000 * per_step:10.2f}{32 / per_step:12.0f}{per_step * steps_per_epoch:9.1f}"
            f"{per_step * steps_per_epoch * 90 / 60:9.1f} min{theirs / spent:13.2f}x"
        )
    keys = ("baseline", "per_table", "trimmed", "buckets")
    figures = {
        "threads": torch.get_num_threads(),
        "steps": n,
        "rounds": args.rounds,
        "ms_per_step": {key: 1000 * spent / n for key, spent in zip(keys, seconds.values(), strict=True)},
        "speedup": {key: theirs / spent for key, spent in zip(keys, seconds.values(), strict=True)},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    run_as_script(main)
