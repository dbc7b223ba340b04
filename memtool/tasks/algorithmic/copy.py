"""The copy task (Graves et al. 2014, Sec. 4.1): read a sequence of random bit vectors, then a delimiter,
then write the sequence back. Scored in bits per sequence at the training lengths and at longer ones.

Sequences are generated on the fly from seeded generators: an "epoch" is a fixed number of generated
batches, each a pure function of (epoch seed, batch index), so a resumed run replays them exactly. Every
batch has one length (drawn per batch), so nothing is padded or masked.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn

from memtool.errors import UserError
from memtool.models.base import ModelOutput
from memtool.registry import register_task
from memtool.schema import Strict
from memtool.tasks.base import Batch, EvalResult, FailRule, Metric, Scoring, TaskDefaults
from memtool.views import HeatmapView, InspectRequest

LONGEST = 1000  # a sequence length the generator refuses above: 2001 time steps per sequence


class CopyParams(Strict):
    bits: PositiveInt = 8  # width of each random vector
    min_length: int = Field(1, ge=1, le=LONGEST)
    max_length: int = Field(20, ge=1, le=LONGEST)

    @model_validator(mode="after")
    def _ordered(self) -> CopyParams:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} is above max_length {self.max_length}")
        return self


class CopyData(Strict):
    sequences_per_epoch: int = Field(3200, ge=1, le=10_000_000)  # generated sequences between epoch ends
    valid_sequences: int = Field(64, ge=1, le=100_000)  # per validation length, a fixed seeded set
    test_sequences: int = Field(128, ge=1, le=100_000)  # per scored length
    seed: int | None = None  # None: the run's seed


class CopyEval(Strict):
    # scored lengths; None: the longest training length and 30, 50, 120 beyond it (the paper's Fig. 4)
    lengths: list[int] | None = Field(None, min_length=1)


class CopyInspectOptions(Strict):
    length: PositiveInt | None = Field(
        None, description="sequence length to show (default: the longest trained)"
    )
    step: int | None = Field(None, ge=0, description="time step whose erase and add vectors are shown")


BIT_ERRORS = Metric("bit_errors", "wrong bits per sequence", "bits✗", decimals=2)
COST = Metric("cost_bits", "cost (bits per sequence)", "cost", decimals=2)
SCORING = Scoring(
    select=COST,
    progress=(COST, BIT_ERRORS),
    group_key="per_length",
    group_label="length",
    group_metrics=(COST, BIT_ERRORS, Metric("examples", "sequences", higher_is_better=True)),
    failed=FailRule("bit_errors", 1.0, label="more than 1 wrong bit per sequence"),
)


def copy_sequences(count: int, length: int, bits: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` sequences of ``length`` random ``bits``-vectors: inputs (count, 2·length + 1, bits + 1)
    with the delimiter on the extra channel, targets (count, length, bits): the answer steps' bits."""
    pattern = torch.randint(0, 2, (count, length, bits), generator=generator).float()
    inputs = torch.zeros(count, 2 * length + 1, bits + 1)
    inputs[:, :length, :bits] = pattern
    inputs[:, length, bits] = 1.0  # the delimiter
    return inputs, pattern


@register_task("copy")
class CopyTask(TaskDefaults):
    """Copy (NTM paper, Sec. 4.1): bit vectors, a delimiter, the vectors back; scored in bits per sequence."""

    Params = CopyParams
    Data = CopyData
    Eval = CopyEval
    InspectOptions = CopyInspectOptions
    scoring = SCORING
    eval_changeable = ("data.", "eval.")

    def __init__(
        self,
        params: CopyParams,
        data: CopyData,
        seed: int,
        state: dict[str, Any] | None = None,
        evaluation: CopyEval | None = None,
    ) -> None:
        self.params, self.data = params, data
        self.seed = seed if data.seed is None else data.seed
        lengths = evaluation.lengths if evaluation is not None and evaluation.lengths else None
        longest = params.max_length
        self.test_lengths = sorted(set(lengths or [longest, *(n for n in (30, 50, 120) if n > longest)]))
        if max(self.test_lengths) > LONGEST:
            raise UserError(f"eval.lengths: at most {LONGEST} (got {max(self.test_lengths)})")
        span = params.max_length - params.min_length
        self.valid_lengths = sorted({params.min_length + round(span * k / 3) for k in range(4)})
        self.device = torch.device("cpu")

    # -- data -------------------------------------------------------------------------------------------
    def _fixed_set(self, split: str, length: int) -> tuple[Tensor, Tensor]:
        """A split's sequences of one length: the same every time (seeded by split and length)."""
        count = self.data.valid_sequences if split == "valid" else self.data.test_sequences
        offset = {"valid": 1, "test": 2, "train": 3}[split]
        generator = torch.Generator().manual_seed((self.seed * 7 + offset) * 1_000_003 + length)
        return copy_sequences(count, length, self.params.bits, generator)

    def _lengths(self, split: str) -> list[int]:
        return self.valid_lengths if split in ("valid", "train") else self.test_lengths

    def model_dims(self) -> dict[str, Any]:
        return {"input_size": self.params.bits + 1, "output_size": self.params.bits}

    def to(self, device: torch.device) -> None:
        self.device = device

    def split_size(self, split: str) -> int:
        if split == "train":
            return self.data.sequences_per_epoch
        count = self.data.valid_sequences if split == "valid" else self.data.test_sequences
        return count * len(self._lengths(split))

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.data.sequences_per_epoch / batch_size)

    def epoch_batches(self, batch_size: int, seed: int, start: int = 0) -> Iterator[Batch]:
        for index in range(start, self.batches_per_epoch(batch_size)):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
            length = int(
                torch.randint(self.params.min_length, self.params.max_length + 1, (1,), generator=generator)
            )
            inputs, targets = copy_sequences(batch_size, length, self.params.bits, generator)
            yield Batch({"inputs": inputs.to(self.device)}, targets.to(self.device))

    def batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        for length in self._lengths(split):
            inputs, targets = self._fixed_set(split, length)
            for first in range(0, len(inputs), batch_size):
                rows = slice(first, first + batch_size)
                yield Batch({"inputs": inputs[rows].to(self.device)}, targets[rows].to(self.device))

    # -- metrics ----------------------------------------------------------------------------------------
    @staticmethod
    def _answer(output: ModelOutput, batch: Batch) -> Tensor:
        return output.prediction[:, -batch.targets.shape[1] :]  # the answer steps' logits

    def loss(self, output: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean binary cross-entropy per bit; counts: wrong bits and the cost in nats, summed."""
        logits = self._answer(output, batch)
        elementwise = nn.functional.binary_cross_entropy_with_logits(logits, batch.targets, reduction="none")
        wrong = ((logits > 0).float() != batch.targets).sum()
        return elementwise.mean(), {"wrong_bits": wrong, "cost_nats": elementwise.detach().sum()}

    def train_metrics(self, sums: dict[str, float], examples: int) -> dict[str, float]:
        seen = max(examples, 1)
        return {
            "cost_bits": sums.get("cost_nats", 0.0) / math.log(2) / seen,
            "bit_errors": sums.get("wrong_bits", 0.0) / seen,
        }

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batch_size: int) -> EvalResult:
        model.eval()
        device = next(model.parameters()).device
        groups: dict[str, dict[str, float]] = {}
        for length in self._lengths(split):
            cost, wrong, count, losses = 0.0, 0.0, 0, []
            inputs, targets = self._fixed_set(split, length)
            for first in range(0, len(inputs), batch_size):
                batch = Batch(
                    {"inputs": inputs[first : first + batch_size]}, targets[first : first + batch_size]
                )
                batch = batch.to(device)
                logits = self._answer(model(**batch.inputs), batch)
                elementwise = nn.functional.binary_cross_entropy_with_logits(
                    logits, batch.targets, reduction="none"
                )
                losses.append(elementwise.mean(dim=(1, 2)))
                cost += elementwise.sum().item() / math.log(2)
                wrong += ((logits > 0).float() != batch.targets).sum().item()
                count += batch.size
            groups[str(length)] = {
                "cost_bits": cost / count,
                "bit_errors": wrong / count,
                "loss": torch.cat(losses).mean().item(),
                "examples": count,
            }
        trained = [g for n, g in groups.items() if int(n) <= self.params.max_length] or list(groups.values())
        total = sum(g["examples"] for g in trained)
        metrics = {
            name: sum(g[name] * g["examples"] for g in trained) / total
            for name in ("cost_bits", "bit_errors", "loss")
        }
        metrics["examples"] = sum(g["examples"] for g in groups.values())
        return EvalResult(metrics, groups, SCORING.group_key)

    # -- inspection -------------------------------------------------------------------------------------
    def inspect(self, model: nn.Module, request: InspectRequest) -> HeatmapView:
        from memtool.tasks.algorithmic.inspection import inspect_sequence

        options = request.options or CopyInspectOptions()
        length = options.length or self.params.max_length
        if length > LONGEST:
            raise UserError(f"--length: at most {LONGEST}")
        generator = torch.Generator().manual_seed(
            (self.seed * 7 + 5) * 1_000_003 + length * 10_007 + request.example
        )
        inputs, targets = copy_sequences(1, length, self.params.bits, generator)
        title = f"copy · {length} vectors of {self.params.bits} bits · example {request.example}"
        return inspect_sequence(model, inputs, targets, title, options.step, input_steps=length + 1)
