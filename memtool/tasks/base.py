"""What the engine needs from a task: batches, a loss, and its own metrics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from pydantic import BaseModel
from torch import Tensor, nn

from memtool.views import InspectRequest


@dataclass
class Batch:
    """One batch, already trimmed to its own longest story/sentence; ``inputs`` are the model's kwargs."""

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


@dataclass
class EvalResult:
    """A task's scores on one split. ``metrics['error']`` (%, lower is better) selects checkpoints."""

    metrics: dict[str, float]
    groups: dict[str, dict[str, float]] = field(default_factory=dict)  # e.g. bAbI task number → metrics
    group_label: str = "per_task"


class Task(Protocol):
    """A dataset with its batching, loss and metrics. Tasks are built from the config's ``task``/``data``."""

    Params: ClassVar[type[BaseModel]]  # schema of the config's ``task`` section (without ``name``)
    Data: ClassVar[type[BaseModel]]  # schema of the config's ``data`` section

    def model_dims(self) -> dict[str, Any]:
        """Sizes the data fixes for the model's constructor (vocabulary size, memory size, ...)."""
        ...

    def split_size(self, split: str) -> int: ...

    def batches(self, split: str, batch_size: int, order: Tensor | None = None) -> Iterator[Batch]:
        """Batches of ``split`` in ``order`` (a permutation of its rows; None keeps file order)."""
        ...

    def loss(self, output: Any, batch: Batch) -> tuple[Tensor, Tensor]:
        """Mean loss over the batch and the number of wrong predictions in it."""
        ...

    def evaluate(self, model: nn.Module, split: str, batch_size: int) -> EvalResult: ...

    def to(self, device: torch.device) -> None:
        """Move the tensorised splits to ``device`` once, so batches need no copy."""
        ...

    def inspect(self, model: nn.Module, request: InspectRequest) -> Any:
        """A view (see ``memtool.views``) of what the model attended to or stored for one example."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to encode new data the same way (e.g. the vocabulary)."""
        ...
