"""What the engine needs from a task: batches, a loss, its own metrics and how to read them.

A leaf module: it imports nothing of memtool's but the schema base, so the engine, the renderer and the
CLI can name the contract without loading any task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from memtool.models.base import ModelOutput, replica_output
from memtool.schema import NoOptions
from memtool.views import InspectRequest


@dataclass
class Batch:
    """One batch, already trimmed to its own longest example; ``inputs`` are the model's keyword arguments."""

    inputs: dict[str, Tensor]
    targets: Tensor

    @property
    def size(self) -> int:
        return int(self.targets.shape[0])

    def to(self, device: torch.device) -> Batch:
        return Batch(
            {name: value.to(device, non_blocking=True) for name, value in self.inputs.items()},
            self.targets.to(device, non_blocking=True),
        )


@dataclass(frozen=True)
class Metric:
    """One number a task reports: its key in ``EvalResult.metrics``, how to label it, which way is better."""

    name: str
    label: str  # in tables and figures, e.g. "error (%)"
    short: str = ""  # column heading in the per-validation line, e.g. "err %"
    higher_is_better: bool = False
    decimals: int = 1  # shown in the per-validation line and the group table (1 suits percentages)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.higher_is_better else a < b

    def improves(self, score: float, loss: float, best_score: float, best_loss: float) -> bool:
        """Whether a model scoring (``score``, ``loss``) replaces the best so far: a better score, or as
        good at a lower loss; no score (no validation data) or no best yet always does."""
        return (
            math.isnan(score)
            or math.isnan(best_score)
            or self.better(score, best_score)
            or (score == best_score and loss < best_loss)
        )


@dataclass(frozen=True)
class FailRule:
    """A group (e.g. one bAbI task) fails when ``metric`` is beyond ``threshold`` (the paper's line)."""

    metric: str
    threshold: float
    higher_is_better: bool = False
    label: str = ""  # e.g. "error > 5%"

    def failed(self, value: float) -> bool:
        return value < self.threshold if self.higher_is_better else value > self.threshold


@dataclass(frozen=True)
class Target:
    """A validation value that counts as learned: the engine reports how many training examples and
    seconds each restart took to first reach it (the NTM paper's "sequences to converge")."""

    metric: str
    threshold: float
    higher_is_better: bool = False
    label: str = ""  # e.g. "cost < 0.1 bits per sequence"

    def reached(self, value: float) -> bool:
        return value >= self.threshold if self.higher_is_better else value < self.threshold


@dataclass(frozen=True)
class Scoring:
    """How the engine, the renderer and ``plot`` read a task's results."""

    select: Metric  # picks best.pt over every validation of every restart; ties go to the lower loss
    progress: tuple[Metric, ...]  # shown and logged at every validation, for training and validation data
    summary: tuple[Metric, ...] = ()  # further test metrics in the final summary, when present
    group_key: str = "groups"  # JSON key of per-group results (e.g. "per_task", "per_length")
    group_label: str = "group"  # the group column's heading (e.g. "task", "length")
    group_metrics: tuple[Metric, ...] = ()  # columns of the per-group table
    failed: FailRule | None = None
    target: Target | None = None  # "converged": reported per restart; train.stop_at_target stops there
    # metrics of the training data (``train_metrics``), when they differ from ``progress`` (a captioner's
    # BLEU needs decoding, which training does not do); None: the ``progress`` metrics
    train_progress: tuple[Metric, ...] | None = None
    examples_noun: str = "examples"  # what one example is called in messages ("sequences", "questions")


def training_metrics(scoring: Scoring) -> tuple[Metric, ...]:
    """The metrics ``train_metrics`` reports and the epoch line shows for the training data."""
    return scoring.progress if scoring.train_progress is None else scoring.train_progress


@dataclass
class EvalResult:
    """A task's scores on one split. ``metrics`` always holds ``loss`` and ``examples`` and the selection
    metric; ``groups`` maps a group's name to its metrics."""

    metrics: dict[str, float]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    group_label: str = "groups"  # the JSON key the groups are written under
    note: str = ""  # what the headline metrics average, where it is not plain (e.g. the trained sizes only)


@dataclass(frozen=True)
class DataCommand:
    """``memtool data ACTION TASK [--option value ...]``: e.g. download a dataset, or generate one.

    ``run(options, report)`` gets the validated ``Options`` and a ``DataReport`` for progress and messages.
    """

    summary: str
    Options: type[BaseModel]
    run: Callable[[Any, DataReport], None]


class DataReport(Protocol):
    def progress(self, done: int, total: int | None) -> None: ...
    def message(self, text: str) -> None: ...


class Task(Protocol):
    """A dataset with its batching, loss and metrics, built from the config's ``task``/``data`` sections.

    The engine constructs it as ``Task(params, data, seed=..., state=..., evaluation=...)``: the validated
    ``Params``, ``Data`` (and ``Eval``) sections, the run's seed, and ``state`` from a checkpoint (None
    when training starts) so that new data is encoded as the model was trained. ``TaskDefaults`` holds
    the members most tasks leave as they are.
    """

    Params: ClassVar[type[BaseModel]]  # schema of the config's ``task`` section (without ``name``)
    Data: ClassVar[type[BaseModel]]  # schema of the config's ``data`` section
    Eval: ClassVar[type[BaseModel]]  # schema of the config's ``eval`` section (e.g. longer lengths)
    InspectOptions: ClassVar[type[BaseModel]]  # ``inspect-memory`` options of this task (--task, ...)
    EvalOptions: ClassVar[type[BaseModel]]  # ``eval`` options of this task (e.g. --data DIR)
    scoring: ClassVar[Scoring]
    # config keys (dotted prefixes) that may differ from training at eval/inspect time, e.g. "data."
    eval_changeable: ClassVar[tuple[str, ...]]
    data_commands: ClassVar[dict[str, DataCommand]]

    @classmethod
    def eval_overrides(cls, options: Any) -> list[str]:
        """``--set`` assignments that ``EvalOptions`` stand for (``--data DIR`` → ``data.path=DIR``)."""
        ...

    def model_dims(self) -> dict[str, Any]:
        """Sizes the data fixes for the model's constructor (vocabulary size, memory size, ...)."""
        ...

    def split_size(self, split: str) -> int: ...

    def batches_per_epoch(self, batch_size: int) -> int: ...

    def epoch_batches(self, batch_size: int, seed: int, start: int = 0, epoch: int = 0) -> Iterator[Batch]:
        """One epoch of training batches from batch ``start`` on: a pure function of ``seed`` (and
        ``epoch``, the number of epochs this restart finished before it), so a resumed run replays the same
        order. The task decides the order (shuffle, length buckets, an endless generator: an "epoch" is
        then a fixed number of generated batches); ``epoch`` lets a curriculum grow with training."""
        ...

    def batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        """Batches of an evaluation split, in a fixed order."""
        ...

    def loss(self, output: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean loss over the batch, and counts summed over it (e.g. ``{"wrong": 3}``) that
        ``train_metrics`` turns into the metrics of the training data (``scoring.train_progress``, or else
        ``scoring.progress``)."""
        ...

    def replica_batches(
        self, batch_size: int, seeds: list[int], start: int = 0, epoch: int = 0
    ) -> Iterator[list[Batch]]:
        """``epoch_batches`` of R replicas (seeds), a step at a time (``TaskDefaults`` zips them)."""
        ...

    def replica_loss(self, output: ModelOutput, batches: list[Batch]) -> tuple[Tensor, dict[str, Tensor]]:
        """``loss`` for R replicas' stacked output (``forward_replicas``), each on its own batch: (R,)
        losses and (R,) counts (``TaskDefaults`` calls ``loss`` once per replica)."""
        ...

    def train_metrics(self, sums: dict[str, float], examples: int) -> dict[str, float]: ...

    def evaluate(self, model: nn.Module, split: str, batch_size: int) -> EvalResult: ...

    def evaluate_part(self, model: nn.Module, split: str, batch_size: int, rank: int, world: int) -> Any:
        """What ``evaluate`` needs from process ``rank``'s part of the split (``part_rows``) when ``world``
        processes evaluate together: a picklable value on the host (per-example losses, generated
        captions, sums), which ``merge_evaluation`` turns into the split's result."""
        ...

    def merge_evaluation(self, split: str, parts: list[Any]) -> EvalResult:
        """The split's result from every process's ``evaluate_part``, in rank order: what ``evaluate``
        gives in one process, within float noise."""
        ...

    def evaluate_replicas(
        self, stacked: nn.Module, replica: Callable[[int], nn.Module], count: int, split: str, batch_size: int
    ) -> list[EvalResult]:
        """``evaluate`` of each of ``count`` replicas trained together (``train.stack_restarts``):
        ``stacked`` is ``stack_replicas``'s module, ``replica(r)`` replica r as a model of its own
        (``TaskDefaults`` evaluates those one at a time)."""
        ...

    def to(self, device: torch.device) -> None:
        """Move the tensorised splits to ``device`` once, so batches need no copy."""
        ...

    def inspect(self, model: nn.Module, request: InspectRequest) -> Any:
        """A view (``memtool.views``, or the family's own) of what the model attended to or stored."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to encode new data the same way (e.g. the vocabulary)."""
        ...

    def shard(self, batch: Batch, rank: int, world: int) -> tuple[Batch, float]:
        """Process ``rank``'s part of a training batch when ``world`` processes train together (DDP),
        and its share of what ``loss`` averages over (the batch's examples, or its words): the parts
        cover the batch once and their shares sum to 1, so the shares' weighted mean of the parts' losses
        is the batch's loss. A part may be empty (fewer examples than processes)."""
        ...


class TaskDefaults:
    """The members a task often leaves as they are: inherit them, declare only what differs."""

    Eval: ClassVar[type[BaseModel]] = NoOptions
    InspectOptions: ClassVar[type[BaseModel]] = NoOptions
    EvalOptions: ClassVar[type[BaseModel]] = NoOptions
    eval_changeable: ClassVar[tuple[str, ...]] = ("data.",)
    data_commands: ClassVar[dict[str, DataCommand]] = {}

    @classmethod
    def eval_overrides(cls, options: Any) -> list[str]:
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def replica_batches(
        self, batch_size: int, seeds: list[int], start: int = 0, epoch: int = 0
    ) -> Iterator[list[Batch]]:
        """One epoch of training batches for each of R replicas trained together (``train.stack_restarts``),
        a step at a time: replica r's are ``epoch_batches(batch_size, seeds[r], start, epoch)``. A task
        may build each step's R batches at once, padded alike."""
        epochs = [self.epoch_batches(batch_size, seed, start=start, epoch=epoch) for seed in seeds]
        return (list(batches) for batches in zip(*epochs, strict=True))

    def replica_loss(self, output: ModelOutput, batches: list[Batch]) -> tuple[Tensor, dict[str, Tensor]]:
        """``loss`` of each replica's part of the stacked output on its own batch (``train.stack_restarts``):
        the losses, (replicas,), and each count, (replicas,). One ``loss`` call per replica; a task whose
        loss can take the replicas at once overrides it (a step of small models costs what its ops number)."""
        results = [
            self.loss(replica_output(output, replica, batch.size), batch)
            for replica, batch in enumerate(batches)
        ]
        counts = {name: torch.stack([found[name] for _, found in results]) for name in results[0][1]}
        return torch.stack([loss for loss, _ in results]), counts

    def evaluate_part(self, model: nn.Module, split: str, batch_size: int, rank: int, world: int) -> Any:
        """The whole split's ``evaluate`` in the first process, nothing in the others: a task whose
        evaluation can be split overrides this and ``merge_evaluation`` (``ShardedEvaluation``), so
        that each process scores a part."""
        return self.evaluate(model, split, batch_size) if rank == 0 else None  # type: ignore[attr-defined]

    def merge_evaluation(self, split: str, parts: list[Any]) -> EvalResult:
        """The first process scored the whole split (``evaluate_part`` above): its result."""
        return parts[0]

    def evaluate_replicas(
        self, stacked: nn.Module, replica: Callable[[int], nn.Module], count: int, split: str, batch_size: int
    ) -> list[EvalResult]:
        """Each replica evaluated as a model of its own; a task whose evaluation can run the stacked
        model once for all replicas overrides it."""
        return [self.evaluate(replica(index), split, batch_size) for index in range(count)]

    def shard(self, batch: Batch, rank: int, world: int) -> tuple[Batch, float]:
        """Every input and the targets cut along their first dimension, the examples', for a loss that
        is a mean over examples; a task with an input of another shape (several captions sharing one
        video's frames) or another mean (per word) overrides it."""
        rows = part_rows(batch.size, rank, world)
        part = Batch({name: value[rows] for name, value in batch.inputs.items()}, batch.targets[rows])
        return part, part.size / max(batch.size, 1)


class ShardedEvaluation:
    """For a task whose evaluation splits into parts: ``evaluate`` is the merge of the one part that
    is the whole split, so one process and N processes score with the same code."""

    def evaluate(self, model: nn.Module, split: str, batch_size: int) -> EvalResult:
        return self.merge_evaluation(split, [self.evaluate_part(model, split, batch_size, 0, 1)])

    def evaluate_part(self, model: nn.Module, split: str, batch_size: int, rank: int, world: int) -> Any:
        raise NotImplementedError(f"{type(self).__name__}: a ShardedEvaluation task defines evaluate_part")

    def merge_evaluation(self, split: str, parts: list[Any]) -> EvalResult:
        raise NotImplementedError(f"{type(self).__name__}: a ShardedEvaluation task defines merge_evaluation")


def part_rows(size: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of ``size`` rows: sizes differ by at most one, earlier ranks first."""
    base, extra = divmod(size, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def seeded_generator(seed: int) -> torch.Generator:
    """A CPU generator for a seed derived from others (the epoch's, a split's): Python's integers have no
    bound, a generator's seed has, so the seed is taken modulo 2**63 (any seed below that as it is)."""
    return torch.Generator().manual_seed(seed % 2**63)


def bucketed_rows(
    lengths: Tensor, batch_size: int, seed: int, start: int = 0, pool: int = 50
) -> Iterator[Tensor]:
    """Row indices of an epoch's batches, examples of similar length together: a seeded permutation cut
    into pools of ``pool`` batches, each pool sorted by ``lengths`` and cut into batches, then the
    batches shuffled. Padding to a batch's longest example shrinks; the pools keep the epoch random.
    Only the last batch can be short, so an epoch has as many batches as ``shuffled_rows``'s."""
    generator = seeded_generator(seed)
    order = torch.randperm(len(lengths), generator=generator)
    keys = lengths.cpu()
    batches: list[Tensor] = []
    for first in range(0, len(order), batch_size * pool):
        members = order[first : first + batch_size * pool]
        batches += members[torch.argsort(keys[members], stable=True)].split(batch_size)
    for index in torch.randperm(len(batches), generator=generator)[start:].tolist():
        yield batches[index]


def shuffled_rows(rows: int, batch_size: int, seed: int, start: int = 0) -> Iterator[Tensor]:
    """Row indices of an epoch's batches: a seeded permutation cut into batches, from batch ``start``."""
    order = torch.randperm(rows, generator=seeded_generator(seed))
    for first in range(start * batch_size, rows, batch_size):
        yield order[first : first + batch_size]
