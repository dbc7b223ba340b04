"""How each family's training step grows with the sizes that drive its cost: time per step and memory.

    python bench/scaling.py [--family memn2n|ntm|captioner|all] [--threads 2] [--quick]

MemN2N: memory size (sentences per story) and vocabulary; NTM: memory rows and sequence length;
captioner: frames and caption length. Each step is forward, backward and an optimizer update on a random
batch of the paper's sizes otherwise (MemN2N d = 50, 3 hops, batch 32; NTM LSTM 100, 128 × 20 memory,
batch 16; captioner hidden 256, 64-dim frame features, batch 32). Memory is what autograd keeps for the
backward pass (activations, by a saved-tensors hook: exact on any device) plus the parameters, their
gradients and the optimizer's state; on CUDA the allocator's peak too. The baseline of each sweep is its
smallest size, measured in the same run: the table's last column is the time relative to it, and the
growth exponent fitted between the first and last size says the scaling law. Run it with no other
torch process on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from memtool.build import create_model
from memtool.errors import run_as_script

Step = Callable[[], None]


def _saved_bytes(run: Callable[[], Tensor]) -> tuple[Tensor, int]:
    """The loss of ``run`` and the bytes autograd saves for its backward pass."""
    total = 0

    def pack(tensor: Tensor) -> Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = run()
    return loss, total


def _state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    state = sum(
        value.numel() * value.element_size()
        for slot in optimizer.state.values()
        for value in slot.values()
        if isinstance(value, Tensor)
    )
    return 2 * parameters + state  # the parameters and their gradients, and the optimizer's state


def measure(model: nn.Module, loss_of: Callable[[], Tensor], steps: int) -> dict[str, float]:
    """Seconds per step (after two warm-up steps) and memory in MB."""
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)

    def step() -> int:
        loss, saved = _saved_bytes(loss_of)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return saved

    for _ in range(2):
        step()
    cuda = next(model.parameters()).is_cuda
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    saved = 0
    for _ in range(steps):
        saved = step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    figures = {"ms_per_step": 1000 * seconds, "memory_mb": (saved + _state_bytes(model, optimizer)) / 2**20}
    if cuda:
        figures["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return figures


def memn2n_case(memory: int, vocab: int, device: torch.device) -> tuple[nn.Module, Callable[[], Tensor]]:
    batch, words = 32, 8
    model = create_model(
        "memn2n",
        {"vocab_size": vocab, "memory_size": memory, "sentence_size": words, "embedding_dim": 50, "hops": 3},
    ).to(device)
    story = torch.randint(1, vocab, (batch, memory, words), device=device)
    question = torch.randint(1, vocab, (batch, words), device=device)
    count = torch.full((batch,), memory, device=device)
    answers = torch.randint(1, vocab, (batch,), device=device)

    def loss() -> Tensor:
        logits = model(story=story, memory_count=count, question=question).prediction
        return nn.functional.cross_entropy(logits, answers)

    return model, loss


def ntm_case(rows: int, length: int, device: torch.device) -> tuple[nn.Module, Callable[[], Tensor]]:
    batch, bits = 16, 8
    model = create_model("ntm", {"input_size": bits + 1, "output_size": bits, "memory_rows": rows}).to(device)
    inputs = torch.rand(batch, 2 * length + 1, bits + 1, device=device).round()
    targets = torch.rand(batch, 2 * length + 1, bits, device=device).round()

    def loss() -> Tensor:
        logits = model(inputs).prediction
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)

    return model, loss


def captioner_case(frames: int, words: int, device: torch.device) -> tuple[nn.Module, Callable[[], Tensor]]:
    videos, vocab, dim = 32, 1000, 64
    model = create_model("captioner", {"vocab_size": vocab, "frame_shape": [dim], "hidden_size": 256}).to(
        device
    )
    features = torch.randn(videos, frames, dim, device=device)
    frame_mask = torch.ones(videos, frames, dtype=torch.bool, device=device)
    caption = torch.randint(4, vocab, (videos, words + 1), device=device)
    word_mask = torch.ones(videos, words, dtype=torch.bool, device=device)

    def loss() -> Tensor:
        output = model(features, frame_mask, caption[:, :-1], word_mask)
        logits = output.prediction
        total = nn.functional.cross_entropy(logits.transpose(1, 2), caption[:, 1:])
        return total + sum(output.aux_losses.values())

    return model, loss


SWEEPS: dict[str, list[tuple[str, Callable[..., Any], list[tuple[int, int]]]]] = {
    "memn2n": [
        ("memory size (vocab 200)", memn2n_case, [(m, 200) for m in (10, 25, 50, 100, 200)]),
        ("vocabulary (memory 50)", memn2n_case, [(50, v) for v in (100, 1_000, 10_000, 50_000)]),
    ],
    "ntm": [
        ("memory rows (length 20)", ntm_case, [(n, 20) for n in (32, 128, 512, 2048)]),
        ("sequence length (128 rows)", ntm_case, [(128, t) for t in (10, 20, 40, 80)]),
    ],
    "captioner": [
        ("frames (12 words)", captioner_case, [(k, 12) for k in (4, 8, 16, 32, 64)]),
        ("caption length (8 frames)", captioner_case, [(8, t) for t in (6, 12, 24, 48)]),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=[*SWEEPS, "all"], default="all", help="the family to sweep")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps per size")
    parser.add_argument("--quick", action="store_true", help="3 steps per size: a rough figure")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps = 3 if args.quick else args.steps
    families = list(SWEEPS) if args.family == "all" else [args.family]
    print(
        f"torch {torch.__version__} · {torch.get_num_threads()} threads · {device} · {steps} steps per size"
    )
    results: dict[str, Any] = {}
    for family in families:
        for label, case, sizes in SWEEPS[family]:
            print(f"\n{family}: {label}")
            print(f"{'size':>14s}{'ms/step':>10s}{'memory MB':>11s}{'× smallest':>12s}")
            rows = []
            for size in sizes:
                torch.manual_seed(0)
                model, loss_of = case(*size, device)
                figures = measure(model, loss_of, steps)
                rows.append({"size": list(size), **figures})
                relative = figures["ms_per_step"] / rows[0]["ms_per_step"]
                shown = "×".join(str(s) for s in size)
                print(
                    f"{shown:>14s}{figures['ms_per_step']:10.2f}{figures['memory_mb']:11.1f}{relative:12.2f}"
                )
            varied = 0 if rows[0]["size"][0] != rows[-1]["size"][0] else 1
            grown = rows[-1]["size"][varied] / rows[0]["size"][varied]
            exponent = math.log(rows[-1]["ms_per_step"] / rows[0]["ms_per_step"]) / math.log(grown)
            print(f"time grows as size^{exponent:.2f} over this range")
            results[f"{family}: {label}"] = {"rows": rows, "time_exponent": exponent}
    print(json.dumps({"threads": torch.get_num_threads(), "device": str(device), "sweeps": results}))


if __name__ == "__main__":
    run_as_script(main)
