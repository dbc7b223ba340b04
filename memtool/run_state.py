"""The state of a training run, what it records per epoch, and who hears about it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from memtool.config import RunConfig
from memtool.tasks.base import EvalResult, Task


@dataclass
class Progress:
    """Where training stands; saved in ``last.pt`` so a resumed run continues exactly."""

    restart: int = 0
    epoch: int = 0  # epochs finished in this restart, warmup included
    batches_done: int = 0  # batches finished in the current epoch
    step: int = 0  # optimizer steps in this restart
    phase: str = "main"  # "warmup" or "main"
    main_epochs: int = 0
    warmup_best_loss: float = math.inf
    warmup_stalls: int = 0
    epoch_loss: float = 0.0
    epoch_wrong: int = 0
    epoch_examples: int = 0
    best_error: float = math.inf  # best validation error over all restarts so far
    best_loss: float = math.inf
    best_restart: int = -1
    elapsed: float = 0.0  # training seconds, summed over interruptions
    finished: bool = False


@dataclass
class EpochRecord:
    restart: int
    epoch: int
    phase: str
    step: int
    lr: float
    train_loss: float
    train_error: float
    valid_loss: float
    valid_error: float
    elapsed: float
    valid_groups: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class Summary:
    run_dir: str
    seed: int
    best_restart: int  # 0-based: restart r trains with seed + r
    best_valid_error: float
    test: EvalResult
    valid: EvalResult
    train_seconds: float
    steps: int


class Observer(Protocol):
    def started(
        self, config: RunConfig, task: Task, model: nn.Module, device: torch.device, resumed: bool
    ) -> None: ...
    def epoch_started(self, progress: Progress, batches: int, lr: float) -> None: ...
    def stepped(self, progress: Progress, loss: float) -> None: ...
    def evaluated(self, record: EpochRecord) -> None: ...
    def message(self, text: str) -> None: ...


class SilentObserver:
    def started(self, *args: Any) -> None: ...
    def epoch_started(self, *args: Any) -> None: ...
    def stepped(self, *args: Any) -> None: ...
    def evaluated(self, *args: Any) -> None: ...
    def message(self, *args: Any) -> None: ...
