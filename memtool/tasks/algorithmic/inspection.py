"""One generated sequence through a trained model, as the NTM paper draws it (Fig. 6): inputs and
outputs over time, each head's weighting over memory rows and time, the memory after the input phase,
and a write head's erase and add vectors at one step."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memtool.errors import UserError
from memtool.views import Heatmap, HeatmapView

USED = 0.05  # rows whose weight never reaches this are left out of the tables (noted below them)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _matrix(values: Tensor) -> list[list[float]]:
    return values.float().cpu().tolist()


def inspect_sequence(
    model: nn.Module, inputs: Tensor, targets: Tensor, title: str, step: int | None
) -> HeatmapView:
    """inputs (1, T, channels), targets (1, L, bits): the answer is the last L steps, the input phase
    (delimiters included) the steps before it."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        output = model(inputs=inputs.to(device), trace_memory=True)
    steps, answer = inputs.shape[1], targets.shape[1]
    input_steps = steps - answer
    times = [str(t + 1) for t in range(steps)]
    answer_times = times[-answer:]
    probability = output.prediction[0, -answer:].sigmoid().cpu()  # (L, bits)
    wrong = (probability > 0.5).float() != targets[0]
    bits = [f"bit {b + 1}" for b in range(targets.shape[2])]
    # control channels may hold values outside [0, 1] (a normalised repeat count, a priority in [-1, 1])
    low, high = min(0.0, float(inputs.min())), max(1.0, float(inputs.max()))
    panels = [
        Heatmap(
            "input" if (low, high) == (0.0, 1.0) else f"input (shaded from {low:.2f} to {high:.2f})",
            [f"ch {c + 1}" for c in range(inputs.shape[2])],
            times,
            _matrix(inputs[0].T),
            None,
            (low, high),
        ),
        Heatmap("target", bits, answer_times, _matrix(targets[0].T), None, (0, 1)),
        Heatmap(
            "output (✗: wrong bit)", bits, answer_times, _matrix(probability.T), wrong.T.tolist(), (0, 1)
        ),
    ]
    notes = [f"{plural(int(wrong.sum()), 'wrong bit')} of {wrong.numel()}"]
    trace = output.trace
    # --json's scripts get every row's weight, the rows the panels leave out included: (time, head, row)
    facts = {
        name: trace[name][0].float().cpu().tolist()
        for name in ("write_weights", "read_weights")
        if name in trace
    }
    for kind in ("write", "read"):
        weights = trace.get(f"{kind}_weights")
        if weights is None:
            continue
        for head in range(weights.shape[2]):
            w = weights[0, :, head].T.cpu()  # (rows, time)
            used = torch.nonzero(w.max(1).values >= USED).squeeze(1)
            rows = used.tolist() or [0]
            panels.append(
                Heatmap(
                    f"{kind} weighting, head {head + 1} (memory rows × time)",
                    [f"row {r}" for r in rows],
                    times,
                    _matrix(w[rows]),
                    None,
                    (0, 1),
                )
            )
            if len(rows) < w.shape[0]:
                unused = plural(w.shape[0] - len(rows), "row")
                notes.append(f"{kind} head {head + 1}: {unused} never weighted ≥ {USED}, left out")
    if "memory" in trace:
        memory = trace["memory"][0, input_steps - 1].cpu()  # after the input phase (and the delimiter)
        if "write_weights" in trace:  # the rows written with weight ≥ USED, as the weighting panels keep
            written = trace["write_weights"][0, :input_steps].amax((0, 1)).cpu()
            used = torch.nonzero(written >= USED).squeeze(1).tolist() or [0]
        else:
            used = torch.nonzero(memory.abs().max(1).values > 1e-3).squeeze(1).tolist() or [0]
        reach = float(memory[used].abs().max()) or 1.0
        panels.append(
            Heatmap(
                f"memory after the input phase (step {input_steps}; rows written)",
                [f"row {r}" for r in used],
                [str(c + 1) for c in range(memory.shape[1])],
                _matrix(memory[used]),
                None,
                (-reach, reach),  # signed: 0 in the middle of the scale
            )
        )
        if len(used) < memory.shape[0]:
            unused = plural(memory.shape[0] - len(used), "row")
            notes.append(f"memory: {unused} not written with weight ≥ {USED} in the input phase, left out")
    if "write_weights" not in trace:
        notes.append("this model has no external memory: no weightings, memory or erase and add to show")
    if step is not None and "erase" not in trace:
        raise UserError(f"--step: this model has no write heads, so no erase and add at step {step} to show")
    if "erase" in trace:
        at = input_steps // 2 if step is None else step - 1  # --step counts from 1, as the columns do
        if not 0 <= at < steps:
            raise UserError(f"--step: {step} is out of range; this sequence has steps 1–{steps}")
        for head in range(trace["erase"].shape[2]):
            vectors = torch.stack([trace["erase"][0, at, head], trace["add"][0, at, head]]).cpu()
            panels.append(
                Heatmap(
                    f"write head {head + 1} at step {at + 1}: erase and add",
                    ["erase", "add"],
                    [str(c + 1) for c in range(vectors.shape[1])],
                    _matrix(vectors),
                    None,
                    (-1, 1),
                )
            )
    return HeatmapView(title=title, panels=panels, notes=notes, facts=facts)
