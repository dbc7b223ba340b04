"""Restarts trained together: R MemN2N replicas stepped as one, vmapped (torch.func: stacked parameters,
each replica its own batch) and by hand (``MemN2N.forward_replicas``, what ``train.stack_restarts`` runs),
against R models stepped one after another; forward and backward only.

    python bench/memn2n_restarts.py [--data ../shared/data/babi/en] [--replicas 10] [--steps 20]
        [--threads 2] [--buckets 0] [--config configs/memn2n_babi_1k_joint.yaml] [--quick]

``embedding_bag`` has no vmap batching rule (torch falls back to a Python loop over the replicas), so the
script gives it one: a custom op whose vmap rule stacks the replicas' tables and offsets the word ids, one
native call for all. Each replica's batch is padded to the largest of the R (stories and sentences);
the padded cells are reported beside the times, since they are the price of stacking. Random noise is off
(vmap would draw other noise than a single run). Run it with no other torch process on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from batch_scaling import require_babi  # bench/ is on the path when run as a script
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from memtool.build import build_task, create_model, model_arguments
from memtool.config import load_config
from memtool.errors import run_as_script
from memtool.models.base import stack_replicas
from memtool.tasks.base import Batch

ROOT = Path(__file__).resolve().parent.parent


@torch.library.custom_op("memtool_bench::bag_sum", mutates_args=())
def bag_sum(ids: Tensor, table: Tensor, weights: Tensor) -> Tensor:
    """Σ_j weights[n, j] · table[ids[n, j]] for each row n; id 0 (nil) adds nothing."""
    return nn.functional.embedding_bag(ids, table, mode="sum", per_sample_weights=weights, padding_idx=0)


@bag_sum.register_fake
def _(ids: Tensor, table: Tensor, weights: Tensor) -> Tensor:
    return table.new_empty(ids.shape[0], table.shape[1])


def _setup(ctx, inputs, output) -> None:  # type: ignore[no-untyped-def]
    ctx.save_for_backward(*inputs)


def _backward(ctx, grad: Tensor):  # type: ignore[no-untyped-def]
    ids, table, weights = ctx.saved_tensors
    with torch.enable_grad():  # the native backward, through a recomputed forward
        table, weights = table.detach().requires_grad_(), weights.detach().requires_grad_()
        out = nn.functional.embedding_bag(ids, table, mode="sum", per_sample_weights=weights, padding_idx=0)
        return (None, *torch.autograd.grad(out, (table, weights), grad))


bag_sum.register_autograd(_backward, setup_context=_setup)


def _batched(info, in_dims, ids: Tensor, table: Tensor, weights: Tensor):  # type: ignore[no-untyped-def]
    """R replicas in one call: tables stacked into one, each replica's ids offset to its own rows."""
    count = info.batch_size
    ids_dim, table_dim, weights_dim = in_dims
    ids = ids.movedim(ids_dim, 0) if ids_dim is not None else ids.expand(count, *ids.shape)
    weights = (
        weights.movedim(weights_dim, 0) if weights_dim is not None else weights.expand(count, *weights.shape)
    )
    table = table.movedim(table_dim, 0) if table_dim is not None else table.expand(count, *table.shape)
    rows = table.shape[1]
    offsets = (torch.arange(count, device=ids.device) * rows).view(count, *[1] * (ids.dim() - 1))
    shifted = torch.where(ids != 0, ids + offsets, 0)
    flat = bag_sum(shifted.flatten(0, 1), table.reshape(count * rows, -1), weights.flatten(0, 1))
    return flat.view(count, ids.shape[1], -1), 0


bag_sum.register_vmap(_batched)


def stack(batches: list[Batch]) -> tuple[dict[str, Tensor], Tensor]:
    """The replicas' batches padded to the largest story, sentence and question among them."""
    slots = max(b.inputs["story"].shape[1] for b in batches)
    words = max(b.inputs["story"].shape[2] for b in batches)
    question_words = max(b.inputs["question"].shape[1] for b in batches)
    size = batches[0].size
    story = torch.zeros(len(batches), size, slots, words, dtype=torch.long)
    question = torch.zeros(len(batches), size, question_words, dtype=torch.long)
    for index, batch in enumerate(batches):
        own, asked = batch.inputs["story"], batch.inputs["question"]
        story[index, :, : own.shape[1], : own.shape[2]] = own
        question[index, :, : asked.shape[1]] = asked
    counts = torch.stack([b.inputs["memory_count"] for b in batches])
    return {"story": story, "memory_count": counts, "question": question}, torch.stack(
        [b.targets for b in batches]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    local = ROOT / "data" / "babi" / "en"
    default = local if local.is_dir() else ROOT.parent / "shared" / "data" / "babi" / "en"
    parser.add_argument(
        "--data", default=str(default), help="bAbI en/ directory (memtool data download babi)"
    )
    parser.add_argument(
        "--config",
        default=str(ROOT / "configs" / "memn2n_babi_1k_joint.yaml"),
        help="the MemN2N config every replica trains",
    )
    parser.add_argument("--replicas", type=int, default=10, help="restarts stacked into one model")
    parser.add_argument("--steps", type=int, default=20, help="steps of every replica")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--buckets", type=int, default=0, help="data.length_buckets of every replica")
    parser.add_argument("--quick", action="store_true", help="at most 5 steps: a rough figure in seconds")
    parser.add_argument(
        "--aligned",
        action="store_true",
        help="pair the replicas' batches by size rank (the best case of a shared length schedule)",
    )
    args = parser.parse_args()
    require_babi(args.data)
    torch.set_num_threads(args.threads)
    steps = min(args.steps, 5) if args.quick else args.steps
    overrides = [f"data.path={args.data}", "model.random_noise=0", f"data.length_buckets={args.buckets}"]
    config = load_config(Path(args.config), overrides)
    task = build_task(config)
    arguments = model_arguments(config, task)
    count = args.replicas
    models = []
    for replica in range(count):
        torch.manual_seed(replica)
        models.append(create_model("memn2n", arguments))
    # each replica its own epoch order, as restart r of a run would have
    orders = [list(task.epoch_batches(32, seed=replica))[:steps] for replica in range(count)]
    if args.aligned:  # step s takes each replica's s-th smallest batch: shapes alike across replicas
        orders = [sorted(order, key=lambda b: b.inputs["story"].numel()) for order in orders]
    stacked = [stack([orders[r][s] for r in range(count)]) for s in range(steps)]
    own_cells = sum(b.inputs["story"].numel() for order in orders for b in order)
    stacked_cells = sum(inputs["story"].numel() for inputs, _ in stacked)

    template = create_model("memn2n", arguments).to("meta")
    replicas = stack_replicas(models)  # memtool's own: MemN2N.forward_replicas, as train.stack_restarts
    generators = [torch.Generator() for _ in range(count)]

    def bags(ids: Tensor, table: Tensor, weights: Tensor | None) -> Tensor:  # unweighted: weights 1
        return bag_sum(ids, table, torch.ones_like(ids, dtype=table.dtype) if weights is None else weights)

    template._bags = bags  # type: ignore[method-assign]
    params, buffers = stack_module_state(models)
    params = {name: value.detach().clone().requires_grad_() for name, value in params.items()}

    def replica_loss(
        p: dict[str, Tensor], b: dict[str, Tensor], inputs: dict[str, Tensor], targets: Tensor
    ) -> Tensor:
        output = functional_call(template, (p, b), (), inputs)
        return nn.functional.cross_entropy(output.prediction, targets, reduction="sum")

    together = vmap(replica_loss)

    def run_stacked() -> float:
        start = time.perf_counter()
        for inputs, targets in stacked:
            torch.autograd.grad(together(params, buffers, inputs, targets).sum(), list(params.values()))
        return time.perf_counter() - start

    def by_hand_loss(step: int) -> Tensor:
        batches = [orders[replica][step] for replica in range(count)]
        output = replicas.forward_replicas([batch.inputs for batch in batches], generators)
        return sum(
            nn.functional.cross_entropy(
                output.prediction[replica, : batch.size], batch.targets, reduction="sum"
            )
            for replica, batch in enumerate(batches)
        )

    def run_by_hand() -> float:
        start = time.perf_counter()
        for step in range(steps):
            torch.autograd.grad(by_hand_loss(step), list(replicas.parameters()))
        return time.perf_counter() - start

    def run_sequential() -> float:
        start = time.perf_counter()
        for step in range(steps):
            for replica, model in enumerate(models):
                batch = orders[replica][step]
                loss = nn.functional.cross_entropy(
                    model(**batch.inputs).prediction, batch.targets, reduction="sum"
                )
                torch.autograd.grad(loss, list(model.parameters()))
        return time.perf_counter() - start

    # the same losses both ways, on the first step
    inputs, targets = stacked[0]
    torch.testing.assert_close(
        by_hand_loss(0),
        together(params, buffers, inputs, targets).sum(),
        rtol=1e-5,
        atol=1e-3,
    )
    run_stacked(), run_sequential(), run_by_hand()  # warm up
    sequential, together_seconds, by_hand = run_sequential(), run_stacked(), run_by_hand()
    print(
        f"torch {torch.__version__} · {torch.get_num_threads()} threads · {count} replicas × {steps} steps "
        f"of batch 32 · {Path(args.config).stem} · length buckets {args.buckets}"
        + (" · aligned" if args.aligned else "")
    )
    print(f"{'':34s}{'seconds':>9s}{'ms/replica-step':>17s}{'story cells':>13s}")
    for name, seconds, cells in (
        ("one after another (baseline)", sequential, own_cells),
        ("stacked, vmap", together_seconds, stacked_cells),
        ("stacked by hand (forward_replicas)", by_hand, stacked_cells),
    ):
        print(f"{name:34s}{seconds:9.2f}{1000 * seconds / (count * steps):17.2f}{cells:13,d}")
    vmap_gain, hand_gain = sequential / together_seconds, sequential / by_hand
    print(
        f"speed-up of stacking: vmap {vmap_gain:.2f}x, by hand {hand_gain:.2f}x "
        f"(padded cells {stacked_cells / own_cells:.2f}x)"
    )
    figures = {
        "threads": torch.get_num_threads(),
        "replicas": count,
        "steps": steps,
        "buckets": args.buckets,
        "aligned": args.aligned,
        "sequential_s": sequential,
        "stacked_s": together_seconds,
        "speedup": sequential / together_seconds,
        "by_hand_s": by_hand,
        "speedup_by_hand": sequential / by_hand,
        "padding_ratio": stacked_cells / own_cells,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    run_as_script(main)
