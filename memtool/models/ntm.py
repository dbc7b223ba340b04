"""Neural Turing Machines (Graves, Wayne, Danihelka 2014, arXiv 1410.5401).

Read beside the paper's Sec. 3: a controller (LSTM or feed-forward) emits, per head, a key k, a strength β,
a gate g, a shift distribution s and a sharpening γ, and for write heads an erase vector e and an add
vector a. Addressing (Sec. 3.3, Fig. 2) runs four stages, each a function below and each switchable:
content (Eq. 5-6), interpolation (Eq. 7), circular shift (Eq. 8), sharpening (Eq. 9). Reading is Eq. 2,
writing Eq. 3-4: ``M_t = M_{t-1} ⊙ (1 - w e^T) + w a^T``; several write heads apply in head order.

The whole batch steps through time together; the only Python loop is over time steps (and over the
3-tap shift kernel), never over the batch.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, NamedTuple

import torch
from pydantic import Field
from torch import Tensor, nn

from memtool.models.base import ModelOutput, replica_linear
from memtool.registry import register_model

PositiveInt = Annotated[int, Field(ge=1)]
EPSILON = 1e-8


# -- addressing, one function per stage ---------------------------------------------------------------------
def content_weights(memory: Tensor, key: Tensor, strength: Tensor) -> Tensor:
    """Eq. 5-6: softmax over rows of β · cosine(k, M_i). memory (B, N, M), key (B, H, M), strength (B, H)
    → (B, H, N). The cosine's denominator is kept away from 0, so a zero key or an empty row is safe."""
    dot = key @ memory.transpose(1, 2)  # (B, H, N)
    norms = key.norm(dim=-1, keepdim=True) * memory.norm(dim=-1).unsqueeze(1)
    cosine = dot / norms.clamp_min(EPSILON)
    return torch.softmax(strength.unsqueeze(-1) * cosine, dim=-1)


def interpolate(content: Tensor, previous: Tensor, gate: Tensor) -> Tensor:
    """Eq. 7: w_g = g · w_c + (1 - g) · w_{t-1}; gate (B, H) in (0, 1)."""
    gate = gate.unsqueeze(-1)
    return gate * content + (1 - gate) * previous


def shift(weights: Tensor, shift_weights: Tensor) -> Tensor:
    """Eq. 8: circular convolution w̃(i) = Σ_j w(j) s(i - j), offsets -r..r; rows wrap around.
    weights (B, H, N), shift_weights (B, H, 2r+1) summing to 1."""
    radius = (shift_weights.shape[-1] - 1) // 2
    shifted = [weights.roll(offset, dims=-1) for offset in range(-radius, radius + 1)]
    return (torch.stack(shifted, -1) * shift_weights.unsqueeze(-2)).sum(-1)


def sharpen(weights: Tensor, gamma: Tensor) -> Tensor:
    """Eq. 9: w_i^γ / Σ_j w_j^γ, computed as a softmax of γ·log w: no 0^γ, no overflow for a huge γ."""
    return torch.softmax(gamma.unsqueeze(-1) * torch.log(weights + EPSILON), dim=-1)


def read(memory: Tensor, weights: Tensor) -> Tensor:
    """Eq. 2: r = Σ_i w_i M_i. weights (B, H, N) → (B, H, M)."""
    return weights @ memory


def write(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """Eq. 3-4 for one head: M ⊙ (1 - w e^T) + w a^T. weights (B, N), erase and add (B, M)."""
    # M + w (a - e ⊙ M): the same sum in three ops instead of five, and fewer saved for backward
    return torch.addcmul(memory, weights.unsqueeze(-1), add.unsqueeze(1) - erase.unsqueeze(1) * memory)


@register_model("ntm")
class NTM(nn.Module):
    """Neural Turing Machine: a controller with read and write heads on an N×M memory (Graves et al. 2014)."""

    data_dims = ("input_size", "output_size")
    start_modes = ()
    compile_parts = ("step",)  # train.compile: the step function, not the loop over time

    def __init__(
        self,
        input_size: int,
        output_size: int,
        controller: Literal["lstm", "feedforward"] = "lstm",
        controller_size: PositiveInt = 100,
        memory_rows: PositiveInt = 128,
        memory_width: PositiveInt = 20,
        read_heads: PositiveInt = 1,
        write_heads: PositiveInt = 1,
        shift_range: Annotated[int, Field(ge=0)] = 1,
        interpolation: bool = True,
        shifting: bool = True,
        sharpening: bool = True,
        memory_init: Literal["constant", "learned", "random"] = "constant",
        output_clip: Annotated[float, Field(gt=0)] = 20.0,
        forward_shift_bias: float = 0.0,
    ) -> None:
        super().__init__()
        if 2 * shift_range + 1 > memory_rows:
            raise ValueError(
                f"shift_range {shift_range} shifts by up to {2 * shift_range + 1} rows, more than the "
                f"{memory_rows} memory_rows; lower shift_range to at most {(memory_rows - 1) // 2}"
            )
        if not interpolation and memory_init != "random":
            # the constant start (and the learned one, which starts as it) has every row alike; without
            # the gate's pull to the last weighting, which starts on row 0, every weighting is uniform
            # (a shift or sharpening of a uniform one is uniform), each write adds the same to every row,
            # and every row gets the same gradient: the memory holds one vector in every row, for good
            raise ValueError(
                f"interpolation false with memory_init {memory_init}: every row starts alike, so content "
                "addressing weighs them all the same and no write or gradient can ever tell them apart "
                "(the memory would hold one vector); train it with memory_init random"
            )
        self.rows, self.width = memory_rows, memory_width
        self.read_heads, self.write_heads = read_heads, write_heads
        self.shift_size = 2 * shift_range + 1
        self.interpolation, self.shifting, self.sharpening = interpolation, shifting, sharpening
        self.output_clip = output_clip
        self.controller_kind = controller
        self.controller_size = controller_size
        controller_input = input_size + read_heads * memory_width
        if controller == "lstm":
            self.controller: nn.Module = nn.LSTMCell(controller_input, controller_size)
        else:
            self.controller = nn.Sequential(nn.Linear(controller_input, controller_size), nn.Tanh())
        # per head: key M, strength 1, gate 1, shift 2r+1 (offsets -r..r), gamma 1; write heads also
        # erase M and add M
        self.addressing_size = memory_width + 3 + self.shift_size
        self.shifts = slice(memory_width + 2, memory_width + 2 + self.shift_size)
        heads = read_heads + write_heads
        self.head_parameters = nn.Linear(
            controller_size, heads * self.addressing_size + write_heads * 2 * memory_width
        )
        if forward_shift_bias and shift_range > 0:
            # every head starts leaning one row forward, so reading and writing heads walk the same way;
            # at 0 each head's direction is chance, and a read head walking against the write head is a
            # local minimum copy can stay in
            with torch.no_grad():
                biases = self.head_parameters.bias[: heads * self.addressing_size]
                one_forward = self.shifts.start + shift_range + 1  # the shift weight of offset +1
                biases.view(heads, self.addressing_size)[:, one_forward] += forward_shift_bias
        self.output = nn.Linear(controller_size + read_heads * memory_width, output_size)
        # Collier & Beel 2018: a small constant memory converges fastest; learned and random for comparison
        initial = torch.full((memory_rows, memory_width), 1e-6)
        if memory_init == "random":
            initial = torch.empty(memory_rows, memory_width).uniform_(-1, 1) / math.sqrt(
                memory_rows + memory_width
            )
        if memory_init == "learned":
            self.memory_init: Tensor = nn.Parameter(initial)
        else:
            self.register_buffer("memory_init", initial)

    def set_mode(self, mode: str | None) -> None:
        """No start modes: the engine calls this only with None."""

    def _address(self, memory: Tensor, previous: Tensor, parameters: Tensor) -> Tensor:
        """One head group's weighting: parameters (B, H, addressing_size) → (B, H, N)."""
        m = self.width
        key = parameters[..., :m]
        strength = nn.functional.softplus(parameters[..., m])
        gate = torch.sigmoid(parameters[..., m + 1])
        shift_weights = torch.softmax(parameters[..., self.shifts], -1)
        gamma = 1 + nn.functional.softplus(parameters[..., -1])
        weights = content_weights(memory, key, strength)
        if self.interpolation:
            weights = interpolate(weights, previous, gate)
        if self.shifting:
            weights = shift(weights, shift_weights)
        if self.sharpening:
            weights = sharpen(weights, gamma)
        return weights

    def forward(self, inputs: Tensor, trace_memory: bool = False) -> ModelOutput:
        """inputs (B, T, input_size) → logits (B, T, output_size), and the trace: read and write weightings
        (B, T, heads, N), erase and add vectors (B, T, write heads, M), and with ``trace_memory`` the memory
        after every step (B, T, N, M): for inspection, too large to keep while training or scoring."""
        memory = self.memory_init.unsqueeze(0).expand(inputs.shape[0], -1, -1)
        outputs, trace = self._unroll(inputs, memory, trace_memory)
        return ModelOutput(prediction=outputs, trace=trace)

    def forward_replicas(
        self, batches: list[dict[str, Tensor]], generators: list[torch.Generator] | None
    ) -> ModelOutput:
        """R replicas stepped as one (``train.stack_restarts``; every parameter and the initial memory
        carry a leading replica dimension). Replica r's sequences are padded at the start of time to the
        longest among the R (its state is held at the initial one until its own first step, so each
        replica computes what it would alone, and the answer steps stay the last ones) and in rows to the
        largest batch; the controller and the head and output layers are per-replica products, the
        addressing and the memory ops run on all R × B sequences at once. Nothing random is drawn. A
        replica's own steps are its last ones: the trace's earlier, padded steps are not its own (the
        weightings held, erase and add computed from the held state)."""
        replicas, parts = len(batches), [inputs["inputs"] for inputs in batches]
        size, steps = max(part.shape[0] for part in parts), max(part.shape[1] for part in parts)
        inputs = parts[0].new_zeros(replicas, size, steps, parts[0].shape[-1])
        for replica, part in enumerate(parts):
            inputs[replica, : part.shape[0], steps - part.shape[1] :] = part
        first_steps = [steps - part.shape[1] for part in parts]
        starts = torch.tensor(first_steps, device=inputs.device).repeat_interleave(size)
        memory = self.memory_init.repeat_interleave(size, 0)  # (R·B, N, M)
        outputs, trace = self._unroll(inputs.flatten(0, 1), memory, False, replicas, starts, max(first_steps))
        return ModelOutput(
            prediction=outputs.unflatten(0, (replicas, size)),
            trace={name: value.unflatten(0, (replicas, size)) for name, value in trace.items()},
        )

    def _unroll(
        self,
        inputs: Tensor,
        memory: Tensor,
        trace_memory: bool,
        replicas: int = 0,
        starts: Tensor | None = None,
        latest_start: int = 0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The steps over time from ``memory``; with replicas, row b's state stays as it was until its
        first step ``starts[b]`` (the last one to start: ``latest_start``)."""
        batch, steps, _ = inputs.shape
        r, w, m = self.read_heads, self.write_heads, self.width
        start = torch.zeros(batch, r + w, self.rows, device=inputs.device, dtype=inputs.dtype)
        start[..., 0] = 1.0  # every head starts on row 0
        previous = start
        reads = inputs.new_zeros(batch, r * m)
        state = (inputs.new_zeros(batch, self.controller_size), inputs.new_zeros(batch, self.controller_size))
        hiddens, read_trace, write_trace, erase_trace, add_trace, memory_trace = [], [], [], [], [], []
        for t in range(steps):
            stepped = self.step(inputs[:, t], memory, previous, reads, state, replicas)
            if starts is not None and t < latest_start:  # rows not started yet keep their state
                started = starts <= t
                held = (memory, previous, reads, state[0], state[1])
                new = (*stepped[:3], *stepped[3])
                kept = [
                    torch.where(started.view(-1, *[1] * (a.dim() - 1)), a, b)
                    for a, b in zip(new, held, strict=True)
                ]
                stepped = (kept[0], kept[1], kept[2], (kept[3], kept[4]), stepped[4], stepped[5])
            memory, previous, reads, state, erase, add = stepped
            hiddens.append(torch.cat([state[0], reads], -1))
            read_trace.append(previous[:, :r])
            write_trace.append(previous[:, r:])
            erase_trace.append(erase)
            add_trace.append(add)
            if trace_memory:
                memory_trace.append(memory)
        # the output layer once over every step: one large product instead of one per step
        hidden = torch.stack(hiddens, 1)
        outputs = replica_linear(hidden, self.output, replicas).clamp(-self.output_clip, self.output_clip)
        trace = {
            "read_weights": torch.stack(read_trace, 1),
            "write_weights": torch.stack(write_trace, 1),
            "erase": torch.stack(erase_trace, 1),
            "add": torch.stack(add_trace, 1),
        }
        if memory_trace:
            trace["memory"] = torch.stack(memory_trace, 1)
        return outputs, trace

    def _control(self, x: Tensor, state: tuple[Tensor, Tensor], replicas: int) -> tuple[Tensor, Tensor]:
        """The controller's step; with replicas, each block of rows through its own replica's weights."""
        if self.controller_kind == "feedforward":
            layer = self.controller[0]
            return torch.tanh(replica_linear(x, layer, replicas)), state[1]
        if not replicas:
            return self.controller(x, state)
        cell = self.controller
        if x.device.type == "cuda" and torch.is_autocast_enabled("cuda"):
            # nn.LSTMCell runs in the autocast dtype on CUDA (h and c with it); on CPU it is not cast
            dtype = torch.get_autocast_dtype("cuda")
            state = (state[0].to(dtype), state[1].to(dtype))
        gates = replica_linear(x, _Weights(cell.weight_ih, cell.bias_ih), replicas) + replica_linear(
            state[0], _Weights(cell.weight_hh, cell.bias_hh), replicas
        )
        entry, forget, candidate, exit_gate = gates.chunk(4, -1)  # nn.LSTMCell's order: i, f, g, o
        cell_state = torch.sigmoid(forget) * state[1] + torch.sigmoid(entry) * torch.tanh(candidate)
        return torch.sigmoid(exit_gate) * torch.tanh(cell_state), cell_state

    def step(
        self,
        x: Tensor,
        memory: Tensor,
        previous: Tensor,
        reads: Tensor,
        state: tuple[Tensor, Tensor],
        replicas: int = 0,
    ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor], Tensor, Tensor]:
        """One time step for the whole batch: x (B, input_size), memory (B, N, M), previous weightings
        (B, R + W, N) (read heads first), reads (B, R·M), controller state (h, c; a feed-forward
        controller keeps c at zero); ``replicas`` as in ``forward_replicas``. Returns the new memory,
        weightings, reads, state, erase and add."""
        batch = x.shape[0]
        r, w, m = self.read_heads, self.write_heads, self.width
        state = self._control(torch.cat([x, reads], -1), state, replicas)
        emitted = replica_linear(state[0], self.head_parameters, replicas)
        emitted = emitted.clamp(-self.output_clip, self.output_clip)
        addressing = emitted[:, : (r + w) * self.addressing_size].view(batch, r + w, -1)
        erase_add = emitted[:, (r + w) * self.addressing_size :].view(batch, w, 2 * m)
        erase, add = torch.sigmoid(erase_add[..., :m]), torch.tanh(erase_add[..., m:])
        # writes first, then reads see this step's memory (as the paper's Fig. 1 step)
        write_weights = self._address(memory, previous[:, r:], addressing[:, r:])
        for head in range(w):  # addressed on the step's memory above; erase/add then apply in order
            memory = write(memory, write_weights[:, head], erase[:, head], add[:, head])
        read_weights = self._address(memory, previous[:, :r], addressing[:, :r])
        reads = read(memory, read_weights).flatten(1)  # (B, R·M)
        return memory, torch.cat([read_weights, write_weights], 1), reads, state, erase, add


class _Weights(NamedTuple):
    """A weight and bias pair as ``replica_linear`` reads a layer (the LSTM cell's input and hidden parts)."""

    weight: Tensor
    bias: Tensor | None
