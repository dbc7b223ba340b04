"""What the NTM paper's algorithmic tasks share: seeded generation of whole batches, one size per batch,
an optional curriculum, scoring in bits per sequence at the training sizes and at larger ones, and the
inspection of one sequence.

A task's *size* is the tuple of numbers that fixes a sequence's shape (copy: its length; repeat copy: its
length and repeats; associative recall: its items; priority sort: its inputs). Every batch has one size,
drawn per batch, so nothing is padded or masked. Sequences are generated on the fly: an "epoch" is a fixed
number of generated batches, each a pure function of (epoch seed, batch index), so a resumed run replays
them exactly. A model reads the whole input sequence and answers on its last ``targets.shape[1]`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from memtool.errors import UserError
from memtool.models.base import ModelOutput
from memtool.schema import Seed, Strict
from memtool.tasks.base import (
    Batch,
    EvalResult,
    FailRule,
    Metric,
    Scoring,
    ShardedEvaluation,
    Target,
    TaskDefaults,
    part_rows,
    seeded_generator,
)
from memtool.views import HeatmapView, InspectRequest

Size = tuple[int, ...]
CONVERGED = 0.1  # validation cost in bits per sequence that counts as learned (issue 12's criterion)
LONGEST_STEPS = 4001  # time steps per sequence that the generator refuses above (memory for inspection)

BIT_ERRORS = Metric("bit_errors", "wrong bits per sequence", "bits✗", decimals=2)
COST = Metric("cost_bits", "cost (bits per sequence)", "cost", decimals=2)
SEQUENCES = Metric("examples", "sequences", higher_is_better=True)


def sequence_scoring(group_key: str, group_label: str) -> Scoring:
    """Every algorithmic task selects on cost and reports wrong bits, per size group."""
    return Scoring(
        select=COST,
        progress=(COST, BIT_ERRORS),
        group_key=group_key,
        group_label=group_label,
        group_metrics=(COST, BIT_ERRORS, SEQUENCES),
        failed=FailRule("bit_errors", 1.0, label="more than 1 wrong bit per sequence"),
        target=Target("cost_bits", CONVERGED, label=f"cost < {CONVERGED} bits per sequence"),
        examples_noun="sequences",
    )


class Curriculum(Strict):
    """Train on the small end of the size range first and open the rest over ``sequences`` sequences."""

    sequences: int = Field(ge=1, le=1_000_000_000)  # training sequences until the whole range is open
    start: float = Field(0.0, ge=0.0, le=1.0)  # the fraction of the range open from the start


class StepOption(Strict):
    """``inspect-memory`` options every algorithmic task has."""

    step: int | None = Field(
        None,
        ge=1,
        description="time step (1 = the first, as the tables count) whose erase and add vectors are shown "
        "(default: the middle of the input phase)",
    )


def check_curriculum(curriculum: Curriculum | None, low: int, high: int, names: str) -> None:
    """A curriculum opens a range of sizes: without one (low == high) it would silently do nothing."""
    if curriculum is not None and low == high:
        raise ValueError(f"curriculum needs a range of sizes to open, but {names} allow only {low}")


class SequenceData(Strict):
    sequences_per_epoch: int = Field(3200, ge=1, le=10_000_000)  # generated sequences between epoch ends
    valid_sequences: int = Field(64, ge=1, le=100_000)  # per validation size, a fixed seeded set
    test_sequences: int = Field(128, ge=1, le=100_000)  # per scored size
    seed: Seed | None = None  # None: the run's seed


def random_bits(count: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randint(0, 2, (count, *shape), generator=generator).float()


def draw(low: int, high: int, reach: float, generator: torch.Generator) -> int:
    """A uniform integer in [low, high] cut to the part of the range a curriculum has opened."""
    top = low + round((high - low) * reach)
    return int(torch.randint(low, top + 1, (1,), generator=generator))


def size_seed(size: Size) -> int:
    value = 0
    for part in size:
        value = value * 10_007 + part
    return value


class SequenceTask(ShardedEvaluation, TaskDefaults):
    """The shared machinery; a task declares its sizes, its generator and its channels."""

    Data = SequenceData
    eval_changeable = ("data.", "eval.")
    name: ClassVar[str]
    eval_field: ClassVar[str]  # the ``eval`` section's list of scored sizes

    def __init__(
        self,
        params: Any,
        data: SequenceData,
        seed: int,
        state: dict[str, Any] | None = None,
        evaluation: Any | None = None,
    ) -> None:
        self.params, self.data = params, data
        self.seed = seed if data.seed is None else data.seed
        self.valid_sizes: list[Size] = sorted(set(self.validation_sizes()))
        self.test_sizes: list[Size] = sorted(set(self.scored_sizes(evaluation)))
        self.check_steps(self.largest_training_size(), "task")
        for size in self.test_sizes:
            self.check_steps(size, f"eval.{self.eval_field}")
        self.device = torch.device("cpu")

    # -- what each task declares --------------------------------------------------------------------
    def validation_sizes(self) -> list[Size]:
        """Sizes scored at every validation: a fixed spread over the training range."""
        raise NotImplementedError

    def scored_sizes(self, evaluation: Any | None) -> list[Size]:
        """Sizes of the test split: the config's ``eval`` section, or the training size and larger ones."""
        raise NotImplementedError

    def largest_training_size(self) -> Size:
        raise NotImplementedError

    def training_size(self, generator: torch.Generator, reach: float) -> Size:
        """One training batch's size; ``reach`` in (0, 1] is how much of the range a curriculum opened."""
        raise NotImplementedError

    def trained(self, size: Size) -> bool:
        """Whether ``size`` lies in the training range: the headline metrics average these sizes (all
        sizes when none does)."""
        raise NotImplementedError

    def generate(self, count: int, size: Size, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``count`` sequences of one size: inputs (count, steps, input channels) and targets
        (count, answer steps, output channels), the answer being the inputs' last steps."""
        raise NotImplementedError

    def steps(self, size: Size) -> int:
        """Time steps of one sequence of ``size`` (input and answer)."""
        raise NotImplementedError

    def channels(self) -> tuple[int, int]:
        """(input channels, output channels)."""
        raise NotImplementedError

    def size_name(self, size: Size) -> str:
        return "x".join(str(part) for part in size)

    def describe(self, size: Size) -> str:
        return self.size_name(size)

    # -- data -----------------------------------------------------------------------------------------
    def check_steps(self, size: Size, where: str) -> None:
        if self.steps(size) > LONGEST_STEPS:
            raise UserError(
                f"{where}: a sequence of {self.describe(size)} takes {self.steps(size)} time steps; "
                f"at most {LONGEST_STEPS}"
            )

    def _count(self, split: str) -> int:
        """Sequences per size in a fixed set ("train" inspects a test-sized set drawn apart)."""
        return self.data.valid_sequences if split == "valid" else self.data.test_sequences

    def _fixed_set(self, split: str, size: Size) -> tuple[Tensor, Tensor]:
        """A split's sequences of one size: the same every time (seeded by split and size)."""
        count = self._count(split)
        offset = {"valid": 1, "test": 2, "train": 3}[split]
        generator = seeded_generator((self.seed * 7 + offset) * 1_000_003 + size_seed(size))
        return self.generate(count, size, generator)

    def _sizes(self, split: str) -> list[Size]:
        return self.valid_sizes if split in ("valid", "train") else self.test_sizes

    def model_dims(self) -> dict[str, Any]:
        inputs, outputs = self.channels()
        return {"input_size": inputs, "output_size": outputs}

    def to(self, device: torch.device) -> None:
        self.device = device

    def split_size(self, split: str) -> int:
        if split == "train":
            return self.data.sequences_per_epoch
        return self._count(split) * len(self._sizes(split))

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.data.sequences_per_epoch / batch_size)

    def _reach(self, seen: int) -> float:
        curriculum: Curriculum | None = getattr(self.params, "curriculum", None)
        if curriculum is None:
            return 1.0
        return min(1.0, curriculum.start + (1.0 - curriculum.start) * seen / curriculum.sequences)

    def epoch_batches(self, batch_size: int, seed: int, start: int = 0, epoch: int = 0) -> Iterator[Batch]:
        for index in range(start, self.batches_per_epoch(batch_size)):
            generator = seeded_generator(seed * 1_000_003 + index)
            seen = epoch * self.data.sequences_per_epoch + index * batch_size
            size = self.training_size(generator, self._reach(seen))
            inputs, targets = self.generate(batch_size, size, generator)
            yield Batch({"inputs": inputs.to(self.device)}, targets.to(self.device))

    def batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        for size in self._sizes(split):
            inputs, targets = self._fixed_set(split, size)
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
    def evaluate_part(
        self, model: nn.Module, split: str, batch_size: int, rank: int, world: int
    ) -> dict[str, dict[str, float]]:
        """Per size of the split: the cost and wrong bits summed over this process's sequences of its
        fixed set, their count, and whether the size is a training one."""
        model.eval()
        device = next(model.parameters()).device
        sums: dict[str, dict[str, float]] = {}
        for size in self._sizes(split):
            inputs, targets = self._fixed_set(split, size)
            rows = part_rows(len(inputs), rank, world)
            cost = torch.zeros((), dtype=torch.float64, device=device)
            wrong = torch.zeros((), dtype=torch.float64, device=device)
            for first in range(rows.start, rows.stop, batch_size):
                last = min(first + batch_size, rows.stop)
                batch = Batch({"inputs": inputs[first:last]}, targets[first:last]).to(device)
                logits = self._answer(model(**batch.inputs), batch)
                bce = nn.functional.binary_cross_entropy_with_logits(logits, batch.targets, reduction="sum")
                cost += bce.double()
                wrong += ((logits > 0).float() != batch.targets).sum().double()
            sums[self.size_name(size)] = {
                "cost": cost.item(),
                "wrong": wrong.item(),
                "count": rows.stop - rows.start,
                "per_sequence": targets[0].numel(),
                "trained": self.trained(size),
            }
        return sums

    def merge_evaluation(self, split: str, parts: list[dict[str, dict[str, float]]]) -> EvalResult:
        groups: dict[str, dict[str, float]] = {}
        trained: list[str] = []
        for name, first in parts[0].items():
            cost = sum(part[name]["cost"] for part in parts)
            wrong = sum(part[name]["wrong"] for part in parts)
            count = sum(part[name]["count"] for part in parts)
            groups[name] = {
                "cost_bits": cost / math.log(2) / count,
                "bit_errors": wrong / count,
                "loss": cost / (count * first["per_sequence"]),  # mean cross-entropy per bit, as in training
                "examples": count,
            }
            if first["trained"]:
                trained.append(name)
        chosen = [groups[name] for name in trained] or list(groups.values())
        total = sum(g["examples"] for g in chosen)
        metrics = {
            name: sum(g[name] * g["examples"] for g in chosen) / total
            for name in ("cost_bits", "bit_errors", "loss")
        }
        metrics["examples"] = sum(g["examples"] for g in groups.values())
        label = self.scoring.group_label
        averaged = (
            f"the sizes trained on ({', '.join(trained)})" if trained else "every size (none trained on)"
        )
        note = f"cost, wrong bits and loss: the mean over {averaged}; per {label} below"
        return EvalResult(metrics, groups, self.scoring.group_key, note)

    # -- inspection -------------------------------------------------------------------------------------
    def inspect_size(self, options: Any) -> Size:
        """The size ``inspect-memory`` shows, from the task's options (default: the largest trained)."""
        raise NotImplementedError

    def inspect(self, model: nn.Module, request: InspectRequest) -> HeatmapView:
        """One sequence of the split's fixed set (the very sequence ``eval`` scores at that size)."""
        from memtool.tasks.algorithmic.inspection import inspect_sequence

        options = request.options or self.InspectOptions()
        size = self.inspect_size(options)
        self.check_steps(size, "inspect-memory")
        inputs, targets = self._fixed_set(request.split, size)
        if request.example >= len(inputs):
            raise UserError(
                f"--example: the {request.split} set has {len(inputs)} sequences of each size "
                f"(0–{len(inputs) - 1}); data.{'valid' if request.split == 'valid' else 'test'}_sequences "
                "sets how many"
            )
        rows = slice(request.example, request.example + 1)
        title = f"{self.name} · {self.describe(size)} · {request.split} sequence {request.example}"
        return inspect_sequence(model, inputs[rows], targets[rows], title, options.step)


class RangeSizedTask(SequenceTask):
    """A task whose size is one number drawn from a range: copy's length, recall's items, sort's inputs."""

    eval_field: ClassVar[str]  # the ``eval`` section's list of scored sizes
    inspect_field: ClassVar[str]  # the ``inspect-memory`` option choosing the size

    def size_range(self) -> tuple[int, int]:
        """The training sizes, lowest and highest."""
        raise NotImplementedError

    def larger_sizes(self, most: int) -> list[int]:
        """Sizes scored beyond the training range when the ``eval`` section names none."""
        raise NotImplementedError

    def validation_sizes(self) -> list[Size]:
        low, high = self.size_range()
        if high - low < 6:
            return [(n,) for n in range(low, high + 1)]
        return [(low + round((high - low) * k / 3),) for k in range(4)]

    def scored_sizes(self, evaluation: Any | None) -> list[Size]:
        chosen = getattr(evaluation, self.eval_field, None) if evaluation is not None else None
        if chosen:
            return [(n,) for n in chosen]
        most = self.size_range()[1]
        return [(most,), *((n,) for n in self.larger_sizes(most) if n > most)]

    def largest_training_size(self) -> Size:
        return (self.size_range()[1],)

    def training_size(self, generator: torch.Generator, reach: float) -> Size:
        return (draw(*self.size_range(), reach, generator),)

    def trained(self, size: Size) -> bool:
        low, high = self.size_range()
        return low <= size[0] <= high

    def inspect_size(self, options: Any) -> Size:
        return (getattr(options, self.inspect_field) or self.size_range()[1],)
