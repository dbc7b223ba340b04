"""One training loop for every model family: optimiser, schedule, clipping, warmup phase, restarts,
validation, atomic checkpoints and exact resume.

The engine talks to a model only through ``forward(**batch.inputs)`` (and ``set_warmup`` when a warmup
phase is configured) and to a task through the ``Task`` protocol; it never prints, it reports to an
``Observer``.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from memtool import jsonio
from memtool.build import (
    build_task,
    changed_keys,
    create_model,
    model_arguments,
    model_from_checkpoint,
    resolve_device,
)
from memtool.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint, versions
from memtool.config import RunConfig, TrainConfig
from memtool.errors import TrainingDiverged, UserError
from memtool.run_state import EpochRecord, Observer, Progress, SilentObserver, Summary
from memtool.tasks.base import Batch, EvalResult

METRICS_FILE, CONFIG_FILE, SUMMARY_FILE = "metrics.jsonl", "config.yaml", "summary.json"
# Keys that may differ when resuming: they change how a run is executed or how long, not what it computes.
RESUMABLE_CHANGES = {
    "device",
    "train.epochs",
    "train.max_steps",
    "train.threads",
    "train.eval_batch_size",
    "train.checkpoint_every_steps",
    "train.checkpoint_every_seconds",
}


class Interrupted(Exception):
    """Training stopped on Ctrl-C after saving ``last.pt``; ``--resume`` continues it."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(f"interrupted: saved {run_dir / LAST}")
        self.run_dir = run_dir


@contextmanager
def _graceful_interrupt() -> Iterator[dict[str, bool]]:
    """First Ctrl-C asks the loop to save and stop between steps; a second one stops at once."""
    flag = {"stop": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield flag
        return
    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def clip_gradients(parameters: list[nn.Parameter], max_norm: float, mode: str = "per_matrix") -> None:
    """Rescale gradients so that their norm is at most ``max_norm``.

    ``per_matrix``: each weight on its own, Frobenius norm (the MemN2N authors clip each matrix alone;
    global clipping loses bAbI task 15). ``per_matrix_spectral``: each matrix by its largest singular
    value, which is what ``norm(grad)`` computes in the authors' MATLAB code. ``global``: all together.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    norms = torch._foreach_norm(grads)
    if mode == "per_matrix_spectral":
        # spectral ≤ Frobenius, so only matrices over the cap by Frobenius norm need the costlier norm
        norms = [
            torch.linalg.matrix_norm(g, ord=2) if g.ndim == 2 and norm > max_norm else norm
            for g, norm in zip(grads, norms, strict=True)
        ]
    scales = [torch.clamp(max_norm / (norm + 1e-6), max=1.0) for norm in norms]
    torch._foreach_mul_(grads, scales)


class Trainer:
    def __init__(self, config: RunConfig, run_dir: Path, observer: Observer | None = None) -> None:
        self.config = config
        self.train_config: TrainConfig = config.train
        self.run_dir = run_dir
        self.observer = observer or SilentObserver()
        self.device = resolve_device(config.device)
        if self.train_config.threads:
            torch.set_num_threads(self.train_config.threads)

    # -- setup ---------------------------------------------------------------------------------------
    def _check_resume(self, saved: dict[str, Any]) -> None:
        changed = [
            key
            for key in changed_keys(saved["config"], self.config.to_dict())
            if key not in RESUMABLE_CHANGES
        ]
        if changed:
            raise UserError(
                f"{self.run_dir / LAST}: cannot resume with a different config; changed: {', '.join(changed)}"
            )

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / CONFIG_FILE
        header = f"# resolved from {self.config.source}\n"
        if path.exists():  # a resumed run keeps the name of the config it started from
            header = path.read_text(encoding="utf-8").splitlines(keepends=True)[0]
        path.write_text(header + yaml.safe_dump(self.config.to_dict(), sort_keys=False), encoding="utf-8")
        (self.run_dir / "versions.json").write_text(json.dumps(versions(), indent=2) + "\n", encoding="utf-8")

    def _new_model(self, restart: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        tc = self.train_config
        torch.manual_seed(self.config.seed + restart)
        model = create_model(self.config.model.name, self.model_args).to(self.device)
        if tc.warmup is not None and not hasattr(model, "set_warmup"):
            raise UserError(f"train.warmup: model {self.config.model.name!r} has no warmup mode")
        if tc.optimizer == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(), lr=tc.lr, momentum=tc.momentum
            )
        else:
            optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
        return model, optimizer

    def _lr(self, progress: Progress) -> float:
        tc = self.train_config
        if progress.phase == "warmup":
            return tc.warmup.lr or tc.lr
        if tc.lr_decay is None:
            return tc.lr
        return tc.lr * tc.lr_decay.factor ** (progress.main_epochs // tc.lr_decay.every_epochs)

    def _order(self, progress: Progress, examples: int) -> torch.Tensor:
        """The epoch's example order, a pure function of (seed, restart, epoch): nothing to save."""
        seed = (self.config.seed * 1_000_003 + progress.restart) * 100_003 + progress.epoch
        return torch.randperm(examples, generator=torch.Generator().manual_seed(seed))

    def _payload(self, model: nn.Module, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "model_name": self.config.model.name,
            "model_args": self.model_args,
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "task_state": self.task.state_dict(),
            "config": self.config.to_dict(),
            "warmup_active": bool(getattr(model, "linear_start", False)),
            **extra,
        }

    def _last_good(self) -> str:
        last = self.run_dir / LAST
        return f"last good state: {last}" if last.exists() else "no checkpoint had been written yet"

    def _tick(self, progress: Progress) -> None:
        """Wall-clock seconds of training, evaluation included, summed over interruptions."""
        base, since = self._clock
        progress.elapsed = base + time.monotonic() - since

    def _save_last(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress, tick: bool = True
    ) -> None:
        if tick:
            self._tick(progress)
        training = {
            "progress": asdict(progress),
            "optimizer": optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        save_checkpoint(self.run_dir / LAST, self._payload(model, {"training": training}))

    def _append_metrics(self, record: EpochRecord) -> None:
        with (self.run_dir / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(jsonio.dumps(asdict(record)) + "\n")

    def _trim_metrics(self, progress: Progress) -> None:
        """Drop records written after the checkpoint we resume from; the resumed run writes them again."""
        path = self.run_dir / METRICS_FILE
        if not path.exists():
            return
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept = [
            jsonio.dumps(r)
            for r in records
            if (r["restart"], r["epoch"]) <= (progress.restart, progress.epoch)
        ]
        path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> Summary:
        last_path = self.run_dir / LAST
        saved = None
        if resume:
            if not last_path.is_file():
                raise UserError(
                    f"{self.run_dir}: nothing to resume (no {LAST}); drop --resume to start the run"
                )
            saved = load_checkpoint(last_path)
            if "training" not in saved:
                raise UserError(f"{last_path}: holds no training state to resume from")
            self._check_resume(saved)
        elif last_path.exists():
            raise UserError(
                f"{self.run_dir}: already holds a run; pass --resume to continue it or choose another --out"
            )

        self.task = build_task(self.config, saved["task_state"] if saved else None)
        if self.task.split_size("train") == 0:
            raise UserError(
                "data: no training questions for the selected tasks; check data.path and task.tasks"
            )
        self.task.to(self.device)
        self.model_args = saved["model_args"] if saved else model_arguments(self.config, self.task)
        self._write_run_files()
        progress = Progress(**saved["training"]["progress"]) if saved else Progress()
        self._clock = (progress.elapsed, time.monotonic())
        if progress.finished:
            self.observer.message(f"{self.run_dir} already finished training; its summary:")
            return self._summary(progress, tick=False)
        if saved:
            self._trim_metrics(progress)
        with _graceful_interrupt() as stop:
            while True:
                model, optimizer = self._train_restart(progress, saved, stop)
                saved = None
                if progress.restart + 1 >= self.train_config.restarts:
                    break
                progress = Progress(
                    restart=progress.restart + 1,
                    best_error=progress.best_error,
                    best_loss=progress.best_loss,
                    best_restart=progress.best_restart,
                    elapsed=progress.elapsed,
                )
        progress.finished = True
        summary = self._summary(progress)
        self._save_last(model, optimizer, progress, tick=False)  # a later --resume knows it is done
        return summary

    def _train_restart(
        self, progress: Progress, saved: dict[str, Any] | None, stop: dict[str, bool]
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        tc = self.train_config
        model, optimizer = self._new_model(progress.restart)
        if saved is not None:
            model.load_state_dict(saved["model_state"])
            optimizer.load_state_dict(saved["training"]["optimizer"])
            torch.set_rng_state(saved["training"]["rng_cpu"])
            if self.device.type == "cuda" and saved["training"]["rng_cuda"]:
                torch.cuda.set_rng_state_all(saved["training"]["rng_cuda"])
        elif tc.warmup is not None:
            progress.phase = "warmup"
        if tc.warmup is not None:
            model.set_warmup(progress.phase == "warmup")
        self.observer.started(self.config, self.task, model, self.device, saved is not None)
        parameters = [p for p in model.parameters() if p.requires_grad]
        examples = self.task.split_size("train")
        batches_per_epoch = math.ceil(examples / tc.batch_size)
        last_save = time.monotonic()
        model.train()

        while True:
            if progress.phase == "main" and progress.main_epochs >= tc.epochs:
                break
            if tc.max_steps is not None and progress.step >= tc.max_steps:
                break
            lr = self._lr(progress)
            for group in optimizer.param_groups:
                group["lr"] = lr
            self.observer.epoch_started(progress, batches_per_epoch, lr)
            order = self._order(progress, examples)[progress.batches_done * tc.batch_size :]
            for batch in self.task.batches("train", tc.batch_size, order):
                self._step(model, optimizer, parameters, batch.to(self.device), progress)
                if tc.max_steps is not None and progress.step >= tc.max_steps:
                    break
                now = time.monotonic()
                every = tc.checkpoint_every_steps
                if (every and progress.step % every == 0) or now - last_save >= tc.checkpoint_every_seconds:
                    self._save_last(model, optimizer, progress)
                    last_save = now
                if stop["stop"]:
                    self._save_last(model, optimizer, progress)
                    raise Interrupted(self.run_dir)
            self._end_epoch(model, optimizer, progress, lr)
            last_save = time.monotonic()
        return model, optimizer

    def _step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        parameters: list[nn.Parameter],
        batch: Batch,
        progress: Progress,
    ) -> None:
        tc = self.train_config
        loss, wrong = self.task.loss(model(**batch.inputs), batch)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingDiverged(
                f"loss became {loss_value} at restart {progress.restart}, epoch {progress.epoch + 1}, "
                f"step {progress.step + 1}; stopped without saving it ({self._last_good()}). "
                "Try a lower train.lr or a train.clip_norm."
            )
        (loss * batch.size if tc.loss_reduction == "sum" else loss).backward()
        if tc.clip_norm is not None:
            clip_gradients(parameters, tc.clip_norm, tc.clip_mode)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.step += 1
        progress.batches_done += 1
        progress.epoch_loss += loss_value * batch.size
        progress.epoch_wrong += int(wrong)
        progress.epoch_examples += batch.size
        self.observer.stepped(progress, loss_value)

    def _end_epoch(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress, lr: float
    ) -> None:
        tc = self.train_config
        valid = self.task.evaluate(model, "valid", tc.eval_batch_size)
        seen = max(progress.epoch_examples, 1)
        self._tick(progress)
        record = EpochRecord(
            restart=progress.restart,
            epoch=progress.epoch + 1,
            phase=progress.phase,
            step=progress.step,
            lr=lr,
            train_loss=progress.epoch_loss / seen,
            train_error=100 * progress.epoch_wrong / seen,
            valid_loss=valid.metrics["loss"],
            valid_error=valid.metrics["error"],
            elapsed=progress.elapsed,
            valid_groups=valid.groups,
        )
        progress.epoch += 1
        progress.batches_done = progress.epoch_wrong = progress.epoch_examples = 0
        progress.epoch_loss = 0.0
        if valid.metrics["examples"] and not math.isfinite(valid.metrics["loss"]):
            raise TrainingDiverged(
                f"validation loss became {valid.metrics['loss']} after epoch {progress.epoch}"
            )
        self._keep_if_best(model, valid, progress)
        self._append_metrics(record)
        self.observer.evaluated(record)
        self._advance_phase(model, valid.metrics["loss"], progress)
        self._save_last(model, optimizer, progress)

    def _keep_if_best(self, model: nn.Module, valid: EvalResult, progress: Progress) -> None:
        """best.pt: the lowest validation error (then loss) over every epoch of every restart."""
        error, loss = valid.metrics["error"], valid.metrics["loss"]
        # no validation data (validation_fraction 0): the latest model is the best we know
        if math.isnan(error) or (error, loss) < (progress.best_error, progress.best_loss):
            progress.best_error, progress.best_loss, progress.best_restart = error, loss, progress.restart
            extra = {"valid": valid.metrics, "epoch": progress.epoch, "restart": progress.restart}
            save_checkpoint(self.run_dir / BEST, self._payload(model, extra))

    def _advance_phase(self, model: nn.Module, valid_loss: float, progress: Progress) -> None:
        """Count the finished epoch; leave warmup after its epochs, or on a validation-loss plateau."""
        if progress.phase == "main":
            progress.main_epochs += 1
            return
        warmup = self.train_config.warmup
        if valid_loss < progress.warmup_best_loss:
            progress.warmup_best_loss, progress.warmup_stalls = valid_loss, 0
        else:
            progress.warmup_stalls += 1
        plateau = warmup.until_plateau and progress.warmup_stalls >= warmup.patience
        if progress.epoch >= warmup.epochs or plateau:
            progress.phase = "main"
            model.set_warmup(False)
            reason = "validation loss stopped falling" if plateau else f"its {warmup.epochs} epochs"
            self.observer.message(f"warmup ended after epoch {progress.epoch}: {reason}")

    def _summary(self, progress: Progress, tick: bool = True) -> Summary:
        if tick:
            self._tick(progress)
        model = model_from_checkpoint(load_checkpoint(self.run_dir / BEST), self.device)
        valid = self.task.evaluate(model, "valid", self.train_config.eval_batch_size)
        test = self.task.evaluate(model, "test", self.train_config.eval_batch_size)
        summary = Summary(
            run_dir=str(self.run_dir),
            seed=self.config.seed,
            best_restart=progress.best_restart,
            best_valid_error=progress.best_error,
            test=test,
            valid=valid,
            train_seconds=progress.elapsed,
            steps=progress.step,
        )
        (self.run_dir / SUMMARY_FILE).write_text(
            jsonio.dumps(asdict(summary), indent=2) + "\n", encoding="utf-8"
        )
        return summary


def train(
    config: RunConfig, run_dir: Path, resume: bool = False, observer: Observer | None = None
) -> Summary:
    return Trainer(config, run_dir, observer).run(resume)
