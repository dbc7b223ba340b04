"""Validation and selection for the training engine: each validation's record, the target and best
checkpoints it reaches, each restart's final scores, and the run's summary.

A mixin of ``memtool.engine.Trainer`` (and so of ``memtool.stacked.StackedTrainer``), kept apart so the
training loop reads on its own; it uses the trainer's run directory, task, observer and clock.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from memtool.build import model_from_checkpoint
from memtool.checkpoint import load_checkpoint, save_checkpoint
from memtool.errors import TrainingDiverged, UserError
from memtool.tasks.base import EvalResult
from memtool.train_state import Summary, TrainState


class Selection:
    """What a validation leads to. The trainer provides the attributes below and ``_tick``,
    ``_read_steps`` and ``_payload``."""

    config: Any
    tc: Any
    task: Any
    files: Any
    observer: Any
    ranks: Any
    device: Any
    several: bool
    only_restart: int | None

    def _validate(
        self, model: nn.Module, state: TrainState, lr: float, batches_per_epoch: int, epoch_end: bool = False
    ) -> EvalResult:
        """Score the validation split, log a record, keep best.pt; the window of training sums restarts."""
        self._read_steps(state)
        self._tick(state)
        speed = self._speed(state)
        valid = self._evaluate(model, "valid")
        model.train()  # whatever mode the task's evaluation left it in
        self._tick(state)
        self._log_validation(model, state, valid, lr, batches_per_epoch, epoch_end, speed)
        return valid

    def _evaluate(self, model: nn.Module, split: str) -> EvalResult:
        """The task's scores on a split, each process scoring its part (one process: the whole)."""
        part = self.task.evaluate_part(
            model, split, self.tc.eval_batch_size, self.ranks.rank, self.ranks.world
        )
        return self.task.merge_evaluation(split, self.ranks.gather(part))

    @staticmethod
    def _speed(state: TrainState) -> float:
        """Training examples a second since the last validation (validation excluded)."""
        return state.window_examples / max(state.elapsed - state.window_start, 1e-9)

    def _log_validation(
        self,
        model: nn.Module,
        state: TrainState,
        valid: EvalResult,
        lr: float,
        batches_per_epoch: int,
        epoch_end: bool,
        speed: float,
    ) -> None:
        """The record of a validation, the target and best checkpoints it reached; a new window."""
        seen = max(state.window_examples, 1)
        train_metrics = self.task.train_metrics(state.window_sums, state.window_examples)
        epoch: float = (
            state.epoch if epoch_end else round(state.epoch + state.batches_done / batches_per_epoch, 3)
        )
        record: dict[str, Any] = {
            "restart": state.restart,
            "epoch": epoch,
            "phase": state.phase,
            "step": state.step,
            "lr": lr,
            "train_loss": state.window_loss / seen,
            **{f"train_{name}": value for name, value in train_metrics.items()},
            **{f"train_{name}": total / seen for name, total in state.window_aux.items()},
            "valid_loss": valid.metrics["loss"],
            **{f"valid_{m.name}": valid.metrics.get(m.name) for m in self.task.scoring.progress},
            "elapsed": state.elapsed,
            "examples_seen": state.examples,  # training examples of this restart
            "examples_per_second": speed,  # training only, validation excluded
            "valid_groups": valid.groups,
        }
        state.start_window()
        if valid.metrics["examples"] and not math.isfinite(valid.metrics["loss"]):
            raise TrainingDiverged(f"validation loss became {valid.metrics['loss']} at step {state.step}")
        self._note_target(valid, state)
        self._keep_if_best(model, valid, state)
        self.files.append_record(record)
        self.observer.evaluated(record)

    def _note_target(self, valid: EvalResult, state: TrainState) -> None:
        """The first validation of this restart that reaches the task's target: examples and seconds."""
        target = self.task.scoring.target
        value = valid.metrics.get(target.metric) if target is not None else None
        if target is None or value is None or str(state.restart) in state.reached:
            return
        if not target.reached(value):
            return
        seconds = state.elapsed - state.restart_start
        reached = {"examples": state.examples, "seconds": seconds, "step": state.step}
        state.reached[str(state.restart)] = reached
        noun = self.task.scoring.examples_noun
        self.observer.message(
            f"reached {target.label or target.metric} (validation {value:.4g}) after "
            f"{state.examples:,} {noun}, {seconds:.0f} s, step {state.step}"
        )

    def _keep_if_best(self, model: nn.Module, valid: EvalResult, state: TrainState) -> None:
        """best.pt: the best selection metric (then lowest loss) over all validations of all restarts;
        best-restart-<r>.pt: restart r's best, when the run has several."""
        restart_best, run_best = self._improved(valid, state)
        paths = [self.files.restart_best(state.restart)] if restart_best and self.several else []
        if run_best:
            paths.append(self.files.best)
        if paths and self.ranks.main:
            payload = self._best_payload(model, valid, state)
            for path in paths:
                save_checkpoint(path, payload)

    def _improved(self, valid: EvalResult, state: TrainState) -> tuple[bool, bool]:
        """Whether ``valid`` is the restart's best so far, and the run's; the state keeps the new bests."""
        metric = self.task.scoring.select
        if metric.name not in valid.metrics and valid.metrics.get("examples"):
            raise UserError(
                f"task {self.config.task.name!r}: its evaluate() returned no {metric.name!r}, the metric its "
                f"scoring selects the best model by (it returned: {', '.join(valid.metrics)})"
            )
        score, loss = valid.metrics.get(metric.name, math.nan), valid.metrics["loss"]
        restart_best = metric.improves(score, loss, state.restart_best_score, state.restart_best_loss)
        if restart_best:
            state.restart_best_score, state.restart_best_loss = score, loss
        run_best = metric.improves(score, loss, state.best_score, state.best_loss)
        if run_best:
            state.best_score, state.best_loss, state.best_restart = score, loss, state.restart
        return restart_best, run_best

    def _best_payload(self, model: nn.Module, valid: EvalResult, state: TrainState) -> dict[str, Any]:
        return self._payload(model, state, self._best_extra(valid, state))

    @staticmethod
    def _best_extra(valid: EvalResult, state: TrainState) -> dict[str, Any]:
        """What a best checkpoint adds: the validation that chose it, its epoch and restart."""
        return {"valid": valid.metrics, "epoch": state.epoch, "restart": state.restart}

    def _score_restart(self, state: TrainState) -> None:
        """Score a finished restart's best model on the validation and test splits, for summary.json."""
        if str(state.restart) in state.scored:
            return
        self._tick(state)
        self.ranks.barrier()  # its checkpoint is written
        path = self.files.restart_best(state.restart) if self.several else self.files.best
        model = model_from_checkpoint(load_checkpoint(path), self.device)
        valid = self._evaluate(model, "valid")
        test = self._evaluate(model, "test")
        state.scored[str(state.restart)] = {
            "best_valid": state.restart_best_score,
            "valid": asdict(valid),
            "test": asdict(test),
            "train_seconds": state.elapsed - state.restart_start,
        }
        if self.several:
            select = self.task.scoring.select
            value = test.metrics.get(select.name, math.nan)
            self.observer.message(
                f"restart {state.restart + 1} of {self.tc.restarts}: best validation {select.label} "
                f"{state.restart_best_score:.4g}, test {value:.4g}"
            )

    def _summary(self, state: TrainState, tick: bool = True, write: bool = True) -> Summary:
        if tick:
            self._tick(state)
        kept = state.scored.get(str(state.best_restart))
        if kept is not None:  # scored as its restart ended
            valid, test = EvalResult(**kept["valid"]), EvalResult(**kept["test"])
        else:  # a run that finished before memtool scored each restart
            self.ranks.barrier()  # best.pt is written
            model = model_from_checkpoint(load_checkpoint(self.files.best), self.device)
            valid = self._evaluate(model, "valid")
            test = self._evaluate(model, "test")
        summary = Summary(
            run_dir=str(self.files.path),
            seed=self.config.seed,
            best_restart=state.best_restart,
            select=self.task.scoring.select.name,
            best_valid=state.best_score,
            test=test,
            valid=valid,
            train_seconds=state.elapsed,
            steps=state.step,
            target=self._target_summary(state),
            restarts=state.scored,
            ddp_processes=self.ranks.world,
            device=str(self.device),
            threads=torch.get_num_threads(),
        )
        if write:
            self.files.write_summary(summary.to_dict())
        return summary

    def _target_summary(self, state: TrainState) -> dict[str, Any] | None:
        target = self.task.scoring.target
        if target is None:
            return None
        restarts = range(self.only_restart or 0, state.restart + 1)
        return {
            "metric": target.metric,
            "threshold": target.threshold,
            "label": target.label,
            "examples_noun": self.task.scoring.examples_noun,
            "by_restart": {str(r): state.reached.get(str(r)) for r in restarts},
            "kept": state.reached.get(str(state.best_restart)),
        }
