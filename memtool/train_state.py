"""Where a training run stands, what it records at each validation, and who hears about it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

MAIN = "main"  # the phase after the start phase (or the only one)


@dataclass
class TrainState:
    """Where training stands; saved in ``last.pt`` so a resumed run continues exactly."""

    restart: int = 0
    epoch: int = 0  # epochs finished in this restart, start phase included
    batches_done: int = 0  # batches finished in the current epoch
    step: int = 0  # optimizer steps in this restart
    phase: str = MAIN  # the start phase's model mode (e.g. "linear_start"), or "main"
    main_epochs: int = 0
    phase_best_loss: float = math.inf
    phase_stalls: int = 0
    # since the last validation: summed loss, the task's summed counts, auxiliary losses, examples
    window_loss: float = 0.0
    window_sums: dict[str, float] = field(default_factory=dict)  # the task's counts (e.g. "wrong")
    window_aux: dict[str, float] = field(default_factory=dict)  # each auxiliary loss × examples
    window_examples: int = 0
    window_start: float = 0.0  # ``elapsed`` when the window began: training speed per window
    best_score: float = math.nan  # the task's selection metric, best over every restart so far
    best_loss: float = math.inf
    best_restart: int = -1
    restart_best_score: float = math.nan  # the same, over this restart's validations only
    restart_best_loss: float = math.inf
    elapsed: float = 0.0  # training seconds, summed over interruptions
    finished: bool = False
    examples: int = 0  # training examples seen in this restart
    restart_start: float = 0.0  # ``elapsed`` when this restart began
    # restart (as a string: JSON keys) → when it first reached the task's target, if it did
    reached: dict[str, dict[str, float]] = field(default_factory=dict)
    # restart (as a string) → its best model's scores: {"best_valid", "valid", "test"} (EvalResult
    # fields) and its own training seconds
    scored: dict[str, dict[str, Any]] = field(default_factory=dict)

    def start_window(self) -> None:
        self.window_loss, self.window_sums, self.window_aux, self.window_examples = 0.0, {}, {}, 0
        self.window_start = self.elapsed

    def next_restart(self) -> TrainState:
        return TrainState(
            restart=self.restart + 1,
            best_score=self.best_score,
            best_loss=self.best_loss,
            best_restart=self.best_restart,
            elapsed=self.elapsed,
            restart_start=self.elapsed,
            window_start=self.elapsed,  # its first record's speed counts its own seconds only
            reached=self.reached,
            scored=self.scored,
        )


@dataclass
class Summary:
    run_dir: str
    seed: int
    best_restart: int  # 0-based: restart r trains with seed + r
    select: str  # the task's selection metric
    best_valid: float  # its best validation value
    test: Any  # EvalResult
    valid: Any  # EvalResult
    train_seconds: float
    steps: int
    target: dict[str, Any] | None = None  # the task's target and when each restart reached it
    restarts: dict[str, dict[str, Any]] = field(default_factory=dict)  # TrainState.scored
    ddp_processes: int = 1  # the data-parallel processes (torchrun) of the command that finished it
    device: str = ""  # where it trained ("cpu", "cuda:0"), so its train_seconds can be compared
    threads: int = 0  # torch intra-op threads per process

    def to_dict(self) -> dict[str, Any]:
        """summary.json: the selection metric's best value under ``best_valid_<metric>``."""
        return {
            "run_dir": self.run_dir,
            "seed": self.seed,
            "best_restart": self.best_restart,
            f"best_valid_{self.select}": self.best_valid,
            "test": vars(self.test),
            "valid": vars(self.valid),
            "train_seconds": self.train_seconds,
            "steps": self.steps,
            "ddp_processes": self.ddp_processes,
            "device": self.device,
            "threads": self.threads,
            **({"target": self.target} if self.target is not None else {}),
            "restarts": [
                {
                    "restart": int(restart),
                    "seed": self.seed + int(restart),
                    f"best_valid_{self.select}": scores["best_valid"],
                    "valid": scores["valid"],
                    "test": scores["test"],
                    "train_seconds": scores.get("train_seconds"),
                }
                for restart, scores in sorted(self.restarts.items(), key=lambda item: int(item[0]))
            ],
        }


class Observer(Protocol):
    def started(self, config: Any, task: Any, model: Any, device: Any, resumed: bool) -> None: ...
    def epoch_started(self, state: TrainState, batches: int, lr: float) -> None: ...
    def stepped(self, state: TrainState, loss: float) -> None: ...
    def evaluated(self, record: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...
    def stage(self, text: str | None) -> None:
        """A long step without steps to count (data preparation) begins, or ends with None."""
        ...

    def close(self) -> None: ...


class SilentObserver:
    def started(self, *args: Any) -> None: ...
    def epoch_started(self, *args: Any) -> None: ...
    def stepped(self, *args: Any) -> None: ...
    def evaluated(self, *args: Any) -> None: ...
    def message(self, *args: Any) -> None: ...
    def stage(self, *args: Any) -> None: ...
    def close(self) -> None: ...


class Observers:
    """Several observers heard as one (the terminal and TensorBoard)."""

    def __init__(self, *observers: Any) -> None:
        self.observers = [o for o in observers if o is not None]

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any) -> None:
            for observer in self.observers:
                getattr(observer, name)(*args)

        return call
