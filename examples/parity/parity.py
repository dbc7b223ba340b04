"""A model family as a plugin, outside the package: an attention model on a parity toy.

Each example is a random bit string with ``marked`` positions flagged; the answer is the parity of the
marked bits. Attention that finds the marks reads how many of them are 1 and a small MLP turns that into
the parity, so a 2k-parameter model learns it to 100% in seconds, and ``inspect-memory`` shows where it
looked. A config loads this file with ``imports: [parity.py]``; nothing in memtool names it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from memtool.errors import UserError
from memtool.models.base import ModelOutput
from memtool.registry import register_model, register_task
from memtool.schema import Seed, Strict
from memtool.tasks.base import Batch, EvalResult, FailRule, Metric, Scoring, TaskDefaults, shuffled_rows
from memtool.views import Heatmap, HeatmapView, InspectRequest

SYMBOLS = 5  # token ids: 0 pads; a position is 1 + bit + 2·marked (3: marked 0, 4: marked 1)


@register_model("parity_attention")
class ParityAttention(nn.Module):
    """Token embedding, a few heads of learned-query attention over the positions, an MLP answer."""

    data_dims = ("symbols",)  # the task's token alphabet fixes the embedding's size
    start_modes = ()  # no start phase: train.start_phase is refused at config load

    def __init__(self, symbols: int, dim: PositiveInt = 16, heads: PositiveInt = 2, hidden: PositiveInt = 32):
        super().__init__()
        self.embed = nn.Embedding(symbols, dim)
        self.query = nn.Parameter(torch.randn(heads, dim) / math.sqrt(dim))  # one learned query per head
        self.key = nn.Linear(dim, dim, bias=False)
        self.value = nn.Linear(dim, dim, bias=False)
        self.answer = nn.Sequential(nn.Linear(heads * dim, hidden), nn.ReLU(), nn.Linear(hidden, 2))

    def set_mode(self, mode: str | None) -> None:
        """No modes; the engine only calls this with None (``model_from_checkpoint`` always does)."""
        if mode is not None:
            raise ValueError(f"parity_attention has no mode {mode!r}")

    def forward(self, tokens: Tensor, lengths: Tensor) -> ModelOutput:
        """tokens (batch, positions), lengths (batch,) → logits (batch, 2) and
        ``trace["attention"]`` (batch, heads, positions), exactly 0 on padding."""
        x = self.embed(tokens)  # (batch, positions, dim)
        scores = torch.einsum("bpd,hd->bhp", self.key(x), self.query) / math.sqrt(x.shape[-1])
        mask = torch.arange(tokens.shape[1], device=tokens.device) < lengths.unsqueeze(1)  # (batch, pos)
        scores = scores.masked_fill(~mask.unsqueeze(1), torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1) * mask.unsqueeze(1)
        read = weights @ self.value(x)  # (batch, heads, dim)
        return ModelOutput(prediction=self.answer(read.flatten(1)), trace={"attention": weights})


class ParityParams(Strict):
    """The ``task`` section: what the task is, so fixed once a model is trained on it."""

    marked: PositiveInt = 3  # positions whose bits the answer is the parity of


class ParityData(Strict):
    """The ``data`` section: how much data and how long; all of it may change at eval time."""

    min_length: PositiveInt = 4
    max_length: PositiveInt = 16
    train_examples: PositiveInt = 4000
    valid_examples: PositiveInt = 500
    test_examples: PositiveInt = 1000
    seed: Seed | None = None  # None: the run's seed


class ParityInspectOptions(Strict):
    """``memtool inspect-memory RUN --length 9 --example 2``."""

    length: PositiveInt | None = Field(None, description="only examples of this many bits")


ACCURACY = Metric("accuracy", "accuracy (%)", "acc %", higher_is_better=True)
SCORING = Scoring(
    select=ACCURACY,  # best.pt is the highest validation accuracy
    progress=(ACCURACY,),
    group_key="per_length",
    group_label="length",
    group_metrics=(ACCURACY, Metric("loss", "loss"), Metric("examples", "examples", higher_is_better=True)),
    failed=FailRule("accuracy", 95.0, higher_is_better=True, label="accuracy < 95%"),
)
SPLITS = ("train", "valid", "test")


def generate(count: int, data: ParityData, marked: int, seed: int) -> dict[str, Tensor]:
    """``count`` seeded examples as padded tensors: tokens, lengths, marks, bits, targets."""
    generator = torch.Generator().manual_seed(seed)
    width = data.max_length
    lengths = torch.randint(data.min_length, width + 1, (count,), generator=generator)
    inside = torch.arange(width) < lengths.unsqueeze(1)
    bits = torch.randint(0, 2, (count, width), generator=generator) * inside
    keys = torch.rand(count, width, generator=generator).masked_fill(~inside, 2.0)  # padding sorts last
    marks = torch.zeros(count, width, dtype=torch.long).scatter_(1, keys.argsort(1)[:, :marked], 1)
    tokens = (1 + bits + 2 * marks) * inside
    targets = (bits * marks).sum(1) % 2
    return {"tokens": tokens, "lengths": lengths, "marks": marks, "bits": bits, "targets": targets}


@register_task("parity")
class ParityTask(TaskDefaults):
    """Parity of the bits at marked positions of a random bit string; accuracy (%) per length.

    From ``TaskDefaults``: no ``eval`` section, no eval options (``--set data.max_length=24`` already
    scores longer strings), ``data.*`` changeable at eval (``task.marked`` is not), no data commands (the
    data is generated on the fly) and no state to carry to eval (the token alphabet is fixed)."""

    Params = ParityParams
    Data = ParityData
    InspectOptions = ParityInspectOptions
    scoring = SCORING

    def __init__(
        self,
        params: ParityParams,
        data: ParityData,
        seed: int,
        state: dict[str, Any] | None = None,
        evaluation: Any = None,
    ) -> None:
        if data.min_length > data.max_length:
            raise UserError(f"data.min_length {data.min_length} is above data.max_length {data.max_length}")
        if params.marked > data.min_length:
            raise UserError(f"task.marked {params.marked} needs data.min_length ≥ {params.marked}")
        self.data = data
        data_seed = seed if data.seed is None else data.seed
        counts = (data.train_examples, data.valid_examples, data.test_examples)
        # one seed per split: the test set stays the same whatever the training set's size
        self.splits = {
            name: generate(count, data, params.marked, data_seed * 3 + index)
            for index, (name, count) in enumerate(zip(SPLITS, counts, strict=True))
        }

    def model_dims(self) -> dict[str, Any]:
        return {"symbols": SYMBOLS, "max_length": self.data.max_length}

    def to(self, device: torch.device) -> None:
        self.splits = {n: {k: v.to(device) for k, v in s.items()} for n, s in self.splits.items()}

    def split_size(self, split: str) -> int:
        return len(self.splits[split]["targets"])

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.split_size("train") / batch_size)

    def _batch(self, split: dict[str, Tensor], rows: Tensor) -> Batch:
        width = int(split["lengths"][rows].max())  # trimmed to the batch's longest string
        return Batch(
            {"tokens": split["tokens"][rows, :width], "lengths": split["lengths"][rows]},
            split["targets"][rows],
        )

    def epoch_batches(self, batch_size: int, seed: int, start: int = 0, epoch: int = 0) -> Iterator[Batch]:
        split = self.splits["train"]
        for rows in shuffled_rows(self.split_size("train"), batch_size, seed, start):
            yield self._batch(split, rows.to(split["targets"].device))

    def batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        data = self.splits[split]
        order = torch.arange(self.split_size(split), device=data["targets"].device)
        for first in range(0, len(order), batch_size):
            yield self._batch(data, order[first : first + batch_size])

    def loss(self, output: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        loss = nn.functional.cross_entropy(output.prediction, batch.targets)
        return loss, {"wrong": (output.prediction.argmax(-1) != batch.targets).sum()}

    def train_metrics(self, sums: dict[str, float], examples: int) -> dict[str, float]:
        return {"accuracy": 100 * (1 - sums.get("wrong", 0.0) / max(examples, 1))}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batch_size: int) -> EvalResult:
        was_training, device = model.training, next(model.parameters()).device
        model.eval()
        losses, right = [], []
        for batch in self.batches(split, batch_size):
            batch = batch.to(device)
            logits = model(**batch.inputs).prediction
            losses.append(nn.functional.cross_entropy(logits, batch.targets, reduction="none"))
            right.append(logits.argmax(-1) == batch.targets)
        model.train(was_training)
        loss, correct = torch.cat(losses).double().cpu(), torch.cat(right).double().cpu()
        lengths = self.splits[split]["lengths"].cpu()

        def scores(rows: Tensor) -> dict[str, float]:
            accuracy = 100 * correct[rows].mean().item()
            return {"accuracy": accuracy, "loss": loss[rows].mean().item(), "examples": int(rows.sum())}

        groups = {str(n): scores(lengths == n) for n in sorted(set(lengths.tolist()))}
        return EvalResult(scores(lengths > 0), groups, SCORING.group_key)

    def inspect(self, model: nn.Module, request: InspectRequest) -> HeatmapView:
        """One string through the model: its bits and marks, each head's attention, the answer."""
        options = request.options or ParityInspectOptions()
        if request.split not in self.splits:
            raise UserError(f"--split: unknown split {request.split!r}; choose from {', '.join(SPLITS)}")
        split = self.splits[request.split]
        lengths = split["lengths"].cpu()
        rows = torch.arange(len(lengths))
        if options.length is not None:
            rows = torch.nonzero(lengths == options.length).squeeze(1)
            if len(rows) == 0:
                raise UserError(f"--length: no string of {options.length} bits in the {request.split} split")
        if not 0 <= request.example < len(rows):
            raise UserError(f"--example: {request.example} is out of range: 0–{len(rows) - 1} here")
        row = int(rows[request.example])
        batch = self._batch(split, torch.tensor([row], device=split["targets"].device))
        batch = batch.to(next(model.parameters()).device)
        with torch.no_grad():
            model.eval()
            output = model(**batch.inputs)
        length = int(lengths[row])
        bits, marks = split["bits"][row, :length].tolist(), split["marks"][row, :length].tolist()
        attention = output.trace["attention"][0, :, :length].float().cpu()
        probability = output.prediction[0].float().softmax(-1)
        predicted, answer = int(probability.argmax()), int(split["targets"][row])
        positions = [str(i + 1) for i in range(length)]
        heads = [f"head {h + 1}" for h in range(len(attention))]
        on_marks = attention[:, torch.tensor(marks, dtype=torch.bool)].sum(1).tolist()
        return HeatmapView(
            title=f"parity · {request.split} example {request.example} · {length} bits",
            panels=[
                Heatmap("input", ["bit", "marked"], positions, [bits, marks], value_range=(0.0, 1.0)),
                Heatmap("attention", heads, positions, attention.tolist(), value_range=(0.0, 1.0)),
            ],
            notes=[
                f"marked positions: {', '.join(p for p, m in zip(positions, marks, strict=True) if m)}",
                f"predicted {predicted} (p = {probability[predicted]:.2f}) · answer {answer} "
                + ("✓" if predicted == answer else "✗"),
                "attention on the marked positions: " + ", ".join(f"{w:.2f}" for w in on_marks),
            ],
        )
