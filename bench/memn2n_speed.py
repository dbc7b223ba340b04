"""Training-step speed of MemN2N on the joint bAbI 1k data, against a naive batched baseline.

    python bench/memn2n_speed.py [--data ../shared/data/babi/en] [--steps 300] [--threads 2] [--quick]

memtool's step: batches gathered from tensors made once, padding trimmed to each batch's longest story and
sentence, position encoding as two reductions; then the same on batches from length buckets
(``data.length_buckets``: pools of batches sorted by story length, so a batch's stories are alike).
The baseline, measured in the same run on the same batches
and the same weights: every batch padded to the full memory (50 sentences × the longest sentence of the
data) and PE applied as the explicit (batch, memories, words, d) product of the paper's formula. Run it
with no other torch process on the machine: on 2 cores a second one slows the first several times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from memtool.build import build_task, create_model, model_arguments
from memtool.config import load_config
from memtool.models.memn2n import MemN2N
from memtool.optim import clip_gradients
from memtool.tasks.base import Batch

ROOT = Path(__file__).resolve().parent.parent


class ExplicitPE(MemN2N):
    """PE computed literally: the (..., words, d) weight tensor l_j times every looked-up row, then summed."""

    def _encode(self, table, words, position):  # type: ignore[override]
        embedded = table(words)  # (..., words, d)
        if position is None:
            return embedded.sum(-2)
        weights = self.pe_a - position.expand_as(words).unsqueeze(-1) * self.pe_b  # (..., words, d)
        return (weights * embedded).sum(-2)


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    local = ROOT / "data" / "babi" / "en"
    default = local if local.is_dir() else ROOT.parent / "shared" / "data" / "babi" / "en"
    parser.add_argument(
        "--data", default=str(default), help="bAbI en/ directory (memtool data download babi)"
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--buckets", type=int, default=50, help="batches per length-sorted pool")
    parser.add_argument("--quick", action="store_true", help="100 steps: a rough figure in seconds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps = min(args.steps, 100)

    config = load_config(ROOT / "configs" / "memn2n_babi_1k_joint.yaml", [f"data.path={args.data}"])
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
    time_steps(model, batches[:20], task), time_steps(baseline, naive[:20], task)  # warm up allocator

    ours = time_steps(model, batches, task)
    theirs = time_steps(baseline, naive, task)
    torch.manual_seed(0)
    buckets = time_steps(create_model("memn2n", arguments), bucketed, task)
    n = len(batches)
    print(
        f"torch {torch.__version__} · {torch.get_num_threads()} threads · "
        f"{n} steps of batch 32 · joint bAbI 1k"
    )
    print(f"data: tokenised and tensorised once in {load_seconds:.2f} s ({len(train)} training questions)")
    print(f"{'':32s}{'ms/step':>10s}{'examples/s':>12s}{'s/epoch':>9s}{'90 epochs':>11s}")
    rows = (
        ("baseline (padded, literal PE)", theirs),
        ("memtool (trimmed, fast PE)", ours),
        (f"memtool + length buckets ({args.buckets})", buckets),
    )
    for name, seconds in rows:
        per_step = seconds / n
        print(
            f"{name:32s}{1000 * per_step:10.2f}{32 / per_step:12.0f}{per_step * steps_per_epoch:9.1f}"
            f"{per_step * steps_per_epoch * 90 / 60:9.1f} min"
        )
    print(f"speed-up over the baseline: trimmed {theirs / ours:.2f}x, length buckets {theirs / buckets:.2f}x")
    figures = {
        "threads": torch.get_num_threads(),
        "steps": n,
        "ms_per_step": {
            "baseline": 1000 * theirs / n,
            "trimmed": 1000 * ours / n,
            "buckets": 1000 * buckets / n,
        },
        "speedup_trimmed": theirs / ours,
        "speedup_buckets": theirs / buckets,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
