"""One training loop for every model family: restarts, an optional start phase, validation, the best
checkpoint by the task's own metric, atomic checkpoints and exact resume.

The engine talks to a model through ``forward(**batch.inputs) -> ModelOutput`` (and ``set_mode`` when a
start phase is configured), to a task through the ``Task`` protocol, and to the terminal through an
``Observer``; it never prints. Run-directory files live in ``run_dir``, optimisation in ``optim``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from memtool.build import (
    build_task,
    changed_keys,
    check_model_size,
    create_model,
    model_arguments,
    resolve_device,
    resume_refusal,
)
from memtool.checkpoint import load_checkpoint, save_checkpoint
from memtool.config import RunConfig, build_config
from memtool.distributed import Ranks
from memtool.errors import TrainingDiverged, UserError
from memtool.interrupts import Interrupted, graceful_interrupt, out_of_memory, stop_at_once
from memtool.models.base import compile_model
from memtool.optim import build_optimizer, clip_gradients, learning_rate
from memtool.run_dir import ReadOnlyRunDirectory, RunDirectory
from memtool.selection import Selection
from memtool.tasks.base import Batch
from memtool.train_state import MAIN, Observer, Observers, SilentObserver, Summary, TrainState

# Keys that may differ when resuming: they change how a run is executed or how long, not what it computes.
RESUMABLE_CHANGES = {
    "device",
    "train.epochs",
    "train.max_steps",
    "train.threads",
    "train.compile",
    "train.precision",
    "train.eval_batch_size",
    "train.checkpoint_every_steps",
    "train.checkpoint_every_seconds",
    "train.tensorboard",
    "train.stop_at_target",
    "imports",  # a plugin that moved: the same code at a new path
}


class Trainer(Selection):
    together = False  # whether the restarts train at once (``memtool.stacked``), not one after another

    def __init__(
        self, config: RunConfig, run_dir: Path, observer: Observer | None = None, restart: int | None = None
    ) -> None:
        """``restart``: train only that restart of ``train.restarts`` (seeded as in a run of them all), as
        one of the processes of ``--parallel-restarts``; its ``best.pt`` is that restart's best."""
        self.config = config
        self.tc = config.train
        if restart is not None and not 0 <= restart < self.tc.restarts:
            raise UserError(f"restart {restart}: train.restarts is {self.tc.restarts}")
        self.only_restart = restart
        # a best checkpoint per restart beside best.pt, when this run trains several
        self.several = restart is None and self.tc.restarts > 1
        # under torchrun, one process prints and writes the run directory; the others train beside it
        self.ranks = Ranks.from_environment()
        self.files = RunDirectory(run_dir) if self.ranks.main else ReadOnlyRunDirectory(run_dir)
        self.device = self.ranks.device(resolve_device(config.device))
        # how often the step loop reads its numbers (loss, counts, stop flag) from the device: on a GPU a
        # read waits for the queued work, so it reads every 16 steps; on a CPU reading costs nothing
        self.read_every = 1 if self.device.type == "cpu" else 16
        self._unread: list[tuple[torch.Tensor, int, int, int, list[str], list[str]]] = []
        self._stop_read = False
        self.observer: Any = (observer if self.ranks.main else None) or SilentObserver()
        if self.tc.threads:
            torch.set_num_threads(self.tc.threads)

    # -- setup ---------------------------------------------------------------------------------------
    def _resume_point(self, resume: bool) -> dict[str, Any] | None:
        """What to resume from: checked by the process that owns the run directory, then read by all."""
        saved, refusal = None, None
        if self.ranks.main:
            try:
                saved = self._checked_resume_point(resume)
            except UserError as error:
                refusal = str(error)
        refusal = self.ranks.from_main(refusal)  # every process stops with the main one's reason
        if refusal is not None:
            raise UserError(refusal)
        if not self.ranks.main and resume:
            saved = load_checkpoint(self.files.last)
        return saved

    def _checked_resume_point(self, resume: bool) -> dict[str, Any] | None:
        last = self.files.last
        if not resume:
            if last.exists():
                raise UserError(
                    f"{self.files.path}: already holds a run; "
                    "pass --resume to continue it or choose another --out"
                )
            self.files.start_fresh()
            return None
        saved = load_checkpoint(last)
        if "training" not in saved:
            raise UserError(f"{last}: holds no training state to resume from")
        # the saved config as this version reads it: a key added since (with its default) is no change
        # (with this run's imports: a plugin may have moved, which `imports` may change)
        raw = {**saved["config"], "imports": list(self.config.imports)}
        trained = build_config(raw, source=str(last)).to_dict()
        changed = [
            key for key in changed_keys(trained, self.config.to_dict()) if key not in RESUMABLE_CHANGES
        ]
        if changed:
            raise UserError(resume_refusal(str(last), trained, self.config.to_dict(), changed))
        return saved

    def _new_model(self, restart: int) -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(self.config.seed + restart)
        model = create_model(self.config.model.name, self.model_args).to(self.device)
        if self.ranks.distributed:  # one initialisation, but each process its own dropout masks
            torch.manual_seed(self.config.seed + restart + self.ranks.seed_offset())
        return model, build_optimizer(self.tc, list(model.parameters()))

    def _epoch_seed(self, state: TrainState) -> int:
        """The epoch's batch order is a pure function of (seed + restart, epoch), nothing to save: restart
        r draws the batches a run with seed + r draws (its data seeded as this run's: ``data.seed``)."""
        return (self.config.seed + state.restart) * 1_000_003 * 100_003 + state.epoch

    def _payload(self, model: nn.Module, state: TrainState, extra: dict[str, Any]) -> dict[str, Any]:
        return {**self._run_identity(), **self._own_part(model, state), **extra}

    @staticmethod
    def _own_part(model: nn.Module, state: TrainState) -> dict[str, Any]:
        """What a checkpoint holds of its own model: the weights and the mode they run in."""
        return {
            "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "mode": state.phase if state.phase != MAIN else None,
        }

    def _run_identity(self) -> dict[str, Any]:
        """What every checkpoint of the run shares: the model's name and arguments, the task's state and
        the resolved config."""
        return {
            "model_name": self.config.model.name,
            "model_args": self.model_args,
            "task_state": self.task.state_dict(),
            "config": self.config.to_dict(),
        }

    def _tick(self, state: TrainState) -> None:
        """Wall-clock seconds of training, evaluation included, summed over interruptions."""
        base, since = self._clock
        state.elapsed = base + time.monotonic() - since

    def _save_last(self, model: nn.Module, optimizer: Any, state: TrainState, tick: bool = True) -> None:
        self._read_steps(state)  # a loss that is not finite stops here, before the state is saved
        if tick:
            self._tick(state)
        if not self.ranks.main:
            return
        training = {
            "progress": asdict(state),
            "optimizer": optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        save_checkpoint(self.files.last, self._payload(model, state, {"training": training}))

    # -- the run -------------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> Summary:
        nothing = UserError(
            f"{self.files.path}: nothing to resume (no {self.files.last.name}); drop --resume to start it"
        )
        created = not self.files.path.exists()
        if resume and created:
            raise nothing
        self.files.claim()  # first: a run that another process is writing is named as such
        self.ranks.start(self.device)
        try:
            if resume and not self.files.last.is_file():
                raise nothing
            return self._run(resume)
        except UserError:
            if created and not self.files.last.exists():  # a run refused before it began leaves nothing
                self.files.remove()
            raise
        except RuntimeError as error:  # torch.OutOfMemoryError is a RuntimeError too
            if not out_of_memory(error):
                raise
            first = str(error).strip().splitlines()[0][:200]
            last = f"last good state: {self.files.last}" if self.files.last.exists() else "nothing was saved"
            raise UserError(
                f"out of memory ({first}); lower train.batch_size, train.eval_batch_size or the sizes in the "
                f"model and task sections ({last})"
            ) from None
        finally:
            self.files.release()
            self.ranks.stop()

    def _run(self, resume: bool) -> Summary:
        saved = self._resume_point(resume)
        if self.tc.tensorboard:
            from memtool.tensorboard import TensorBoardObserver

            self.observer = Observers(self.observer, TensorBoardObserver(self.files.path / "tensorboard"))
        self.observer.stage("preparing the data (read, tokenise, tensorise once)")
        started = time.monotonic()
        self.task = build_task(self.config, saved["task_state"] if saved else None)
        self.observer.stage(None)
        if time.monotonic() - started > 5:
            self.observer.message(f"data ready in {time.monotonic() - started:.0f} s")
        if self.task.split_size("train") == 0:
            raise UserError("data: no training examples for this task configuration; check the data section")
        self.task.to(self.device)
        self.model_args = saved["model_args"] if saved else model_arguments(self.config, self.task)
        try:
            check_model_size(self.config.model.name, self.model_args)
        except UserError as error:
            raise UserError(self.config.located(str(error))) from None
        state = TrainState(**saved["training"]["progress"]) if saved else TrainState(self.only_restart or 0)
        self._clock = (state.elapsed, time.monotonic())
        if state.finished:
            if self._finished(state):  # nothing more to do: leave every file as it is
                self.observer.message(f"{self.files.path} already finished training; its summary:")
                return self._summary(state, tick=False, write=False)
            state.finished = False  # train.epochs or train.max_steps was raised: train on
            for restart in self._training_restarts(state):
                state.scored.pop(str(restart), None)  # its best may still change
            self.observer.message(f"{self.files.path} had finished; training on to the new limits")
        self.files.write_config(self.config.to_dict(), self.config.source)
        if saved:
            dropped = self.files.trim_records(state.restart, state.step, together=self.together)
            if dropped:
                self.observer.message(
                    f"metrics.jsonl: dropped {dropped} unreadable line(s), e.g. a line torn by a kill; "
                    "the checkpoint holds the run's state"
                )
        if self.ranks.distributed:
            backend = "NCCL" if self.device.type == "cuda" else "gloo"
            self.observer.message(
                f"data-parallel over {self.ranks.world} processes (torchrun, {backend}): each reads its "
                f"shard of every batch of {self.tc.batch_size}"
            )
        try:
            with graceful_interrupt() as stop:
                model, optimizer, state = self._train_restarts(state, saved, stop)
            state.finished = True
            summary = self._summary(state)
            self._save_last(model, optimizer, state, tick=False)  # a later --resume knows it is done
            return summary
        finally:
            self.observer.close()

    def _training_restarts(self, state: TrainState) -> list[int]:
        """The restarts that train on from ``state``: one at a time here."""
        return [state.restart]

    def _train_restarts(
        self, state: TrainState, saved: dict[str, Any] | None, stop: dict[str, bool]
    ) -> tuple[nn.Module, torch.optim.Optimizer, TrainState]:
        """Train the restarts from ``state`` on, one after another, scoring each as it ends; returns the
        last one's model, optimizer and state."""
        while True:
            model, optimizer = self._train_restart(state, saved, stop)
            saved = None
            self._score_or_stop(model, optimizer, [state], state, stop)
            if self.only_restart is not None or state.restart + 1 >= self.tc.restarts:
                return model, optimizer, state
            state = state.next_restart()

    def _score_or_stop(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        restarts: list[TrainState],
        state: TrainState,
        stop: dict[str, bool],
    ) -> None:
        """Score restarts whose training ended; Ctrl-C stops at once here (there are no steps to stop
        between), after saving ``last.pt``: ``--resume`` scores them."""
        try:
            with stop_at_once(stop):
                for restart in restarts:
                    self._score_restart(restart)
        except KeyboardInterrupt:
            self._save_last(model, optimizer, state)
            raise Interrupted(self.files.path) from None

    def _train_restart(
        self, state: TrainState, saved: dict[str, Any] | None, stop: dict[str, bool]
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        tc = self.tc
        model, optimizer = self._new_model(state.restart)
        if saved is not None:
            model.load_state_dict(saved["model_state"])
            optimizer.load_state_dict(saved["training"]["optimizer"])
            torch.set_rng_state(saved["training"]["rng_cpu"])
            if self.device.type == "cuda" and saved["training"]["rng_cuda"]:
                torch.cuda.set_rng_state_all(saved["training"]["rng_cuda"])
        elif tc.start_phase is not None:
            state.phase = tc.start_phase.mode
        if tc.start_phase is not None:
            model.set_mode(state.phase if state.phase != MAIN else None)
        if tc.compile:
            compiled = compile_model(model)
            self.observer.message(
                f"torch.compile: {', '.join(compiled)}; the first steps of each new shape compile it"
            )
        trainee = self.ranks.wrap(model, self.device)  # what the step calls: DDP under torchrun
        if saved is not None:
            self._say_where_it_resumes(state)
        if not self._finished(state):  # resumed with only scoring left: no header over no epochs
            self.observer.started(self.config, self.task, model, self.device, saved is not None)
        return self._train_loop(trainee, model, optimizer, state, stop)

    def _say_where_it_resumes(self, state: TrainState) -> None:
        restart = f"restart {state.restart + 1} of {self.tc.restarts}, " if self.tc.restarts > 1 else ""
        into = f", {state.batches_done} batches into epoch {state.epoch + 1}" if state.batches_done else ""
        done = f"{restart}{state.epoch} epochs done{into}, step {state.step}"
        self.observer.message(f"resuming from {self.files.last.name}: {done}")

    def _train_loop(
        self,
        trainee: nn.Module,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        state: TrainState,
        stop: dict[str, bool],
    ) -> tuple[nn.Module, torch.optim.Optimizer]:
        """Epochs of steps on ``trainee`` until the restart is finished, validating ``model``, saving
        ``last.pt`` at epoch ends and on the checkpoint cadence, and stopping cleanly when asked."""
        tc = self.tc
        parameters = [p for p in model.parameters() if p.requires_grad]
        batches_per_epoch = self.task.batches_per_epoch(tc.batch_size)
        last_save = time.monotonic()
        model.train()
        while not self._finished(state):
            lr = learning_rate(tc, state)
            for group in optimizer.param_groups:
                group["lr"] = lr
            self.observer.epoch_started(state, batches_per_epoch, lr)
            for batch in self._epoch_steps(state):
                self._step(trainee, optimizer, parameters, batch, state, stop)
                stopping = state.step % self.read_every == 0 and self._read_steps(state)
                if tc.max_steps is not None and state.step >= tc.max_steps:
                    if state.batches_done < batches_per_epoch:  # mid-epoch: keep the place in it, so a
                        self._validate_now(model, state, lr, batches_per_epoch)  # higher max_steps goes on
                        self._save_last(model, optimizer, state)
                        return model, optimizer
                    break
                every = tc.eval_every_steps
                if every and state.step % every == 0 and state.batches_done < batches_per_epoch:
                    self._validate_now(model, state, lr, batches_per_epoch)
                    if self._finished(state):  # reached the target, with train.stop_at_target
                        break
                now = time.monotonic()
                every = tc.checkpoint_every_steps
                if (every and state.step % every == 0) or now - last_save >= tc.checkpoint_every_seconds:
                    self._save_last(model, optimizer, state)
                    last_save = now
                if stopping:
                    self._save_last(model, optimizer, state)
                    raise Interrupted(self.files.path)
            self._end_epoch(model, optimizer, state, lr, batches_per_epoch)
            last_save = time.monotonic()
        return model, optimizer

    def _epoch_steps(self, state: TrainState) -> Iterator[Any]:
        """What each step of the epoch trains on, from the state's place in the epoch: a batch."""
        batches = self.task.epoch_batches(
            self.tc.batch_size, self._epoch_seed(state), start=state.batches_done, epoch=state.epoch
        )
        return (batch.to(self.device) for batch in batches)

    def _validate_now(self, model: nn.Module, state: TrainState, lr: float, batches_per_epoch: int) -> None:
        """A validation between epoch ends (``eval_every_steps``, ``max_steps``)."""
        self._validate(model, state, lr, batches_per_epoch)

    def _finished(self, state: TrainState) -> bool:
        if self.tc.max_steps is not None and state.step >= self.tc.max_steps:
            return True
        if self.tc.stop_at_target and str(state.restart) in state.reached:
            return True
        return state.phase == MAIN and state.main_epochs >= self.tc.epochs

    def _part(self, batch: Batch) -> tuple[Batch, float]:
        """This process's part of the batch and its share of the batch's examples (1 alone). A process
        whose part is empty runs the whole batch with share 0: every process must take part in DDP's
        gradient averaging."""
        if not self.ranks.distributed:
            return batch, 1.0
        part, share = self.task.shard(batch, self.ranks.rank, self.ranks.world)
        return (part, share) if part.size else (batch, 0.0)

    def _step(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        parameters: list[nn.Parameter],
        batch: Batch,
        state: TrainState,
        stop: dict[str, bool],
    ) -> None:
        """One optimizer step on ``batch``; its numbers stay on the device until ``_read_steps``."""
        part, share = self._part(batch)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.tc.precision == "bf16"):
            output = model(**part.inputs)
            task_loss, counts = self.task.loss(output, part)
            loss = task_loss + sum(output.aux_losses.values()) if output.aux_losses else task_loss
        # the batch's numbers, summed over the processes' parts (the stop flag with them, so that every
        # process stops after the same step), read from the device later; train_loss is the task's loss
        # alone, as valid_loss is, and the model's own losses come beside it
        numbers = self.ranks.sum(
            torch.stack(
                [
                    task_loss.detach() * share,
                    *(count * (share > 0) for count in counts.values()),
                    *(aux.detach() * share for aux in output.aux_losses.values()),
                    torch.tensor(float(stop["stop"]), device=loss.device),
                ]
            ).double()
        )
        # DDP averages the processes' gradients: weighting each part by its share × processes makes the
        # average the whole batch's gradient
        weight = share * self.ranks.world * (batch.size if self.tc.loss_reduction == "sum" else 1)
        (loss * weight if weight != 1 else loss).backward()
        if self.tc.clip_norm is not None or self.tc.clip_value is not None:
            clip_gradients(parameters, self.tc.clip_norm, self.tc.clip_mode, self.tc.clip_value)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batches_done += 1
        state.examples += batch.size
        self._unread.append((numbers, state.epoch, state.step, batch.size, [*counts], [*output.aux_losses]))

    def _read_steps(self, state: TrainState) -> bool:
        """Read the steps' numbers from the device (one synchronisation for all of them) into the window;
        stop at a loss that is not finite before anything is saved. Returns whether a stop was asked."""
        if not self._unread:
            return self._stop_read
        values = torch.stack([entry[0] for entry in self._unread]).tolist()
        loss_value = math.nan
        for (_, epoch, step, size, counts, aux), numbers in zip(self._unread, values, strict=True):
            loss_value = numbers[0]
            self._add_step(state, numbers[:-1], size, counts, aux, (epoch, step))
            self._stop_read = self._stop_read or numbers[-1] > 0
        self._unread.clear()
        self.observer.stepped(state, loss_value)
        return self._stop_read

    def _add_step(
        self,
        state: TrainState,
        numbers: list[float],
        size: int,
        counts: list[str],
        aux: list[str],
        when: tuple[int, int],
    ) -> None:
        """One step's task loss, the task's counts and the model's own (auxiliary) losses into the state's
        window; a loss that is not finite, of either kind, stops training (``when``: the step's epoch and
        number)."""
        own = dict(zip(aux, numbers[1 + len(counts) :], strict=True))
        loss_value = numbers[0] + sum(own.values())  # what the step minimised
        if not math.isfinite(loss_value):
            last = self.files.last
            where = f"last good state: {last}" if last.exists() else "no checkpoint had been written yet"
            name, value = _broken_loss(numbers[0], own, loss_value)
            raise TrainingDiverged(
                f"{name} became {value} at restart {state.restart}, epoch {when[0] + 1}, "
                f"step {when[1]}; stopped without saving it ({where}). "
                "Try a lower train.lr, train.clip_norm or train.clip_value."
            )
        state.window_loss += numbers[0] * size
        state.window_examples += size
        for name, value in zip(counts, numbers[1 : 1 + len(counts)], strict=True):
            state.window_sums[name] = state.window_sums.get(name, 0.0) + value
        for name, value in own.items():
            state.window_aux[name] = state.window_aux.get(name, 0.0) + value * size  # batch means

    def _end_epoch(
        self, model: nn.Module, optimizer: Any, state: TrainState, lr: float, batches_per_epoch: int
    ) -> None:
        state.epoch += 1
        state.batches_done = 0
        valid = self._validate(model, state, lr, batches_per_epoch, epoch_end=True)
        self._advance_phase(model, valid.metrics["loss"], state)
        self._save_last(model, optimizer, state)

    def _advance_phase(self, model: nn.Module, valid_loss: float, state: TrainState) -> None:
        """Count the finished epoch; leave the start phase after its epochs, or on a validation plateau."""
        if state.phase == MAIN:
            state.main_epochs += 1
            return
        phase = self.tc.start_phase
        assert phase is not None
        if valid_loss < state.phase_best_loss:
            state.phase_best_loss, state.phase_stalls = valid_loss, 0
        else:
            state.phase_stalls += 1
        plateau = phase.until_plateau and state.phase_stalls >= phase.patience
        if state.epoch >= phase.epochs or plateau:
            ended, state.phase = state.phase, MAIN
            model.set_mode(None)
            reason = "validation loss stopped falling" if plateau else f"after {phase.epochs} epoch(s)"
            self.observer.message(f"{ended} ended at epoch {state.epoch}: {reason}")


def _broken_loss(task_loss: float, own: dict[str, float], total: float) -> tuple[str, float]:
    """Which loss stopped training, for its message: the task's, else the first of the model's own."""
    if not math.isfinite(task_loss):
        return "loss", task_loss
    broken = [(f"the model's {name} loss", value) for name, value in own.items() if not math.isfinite(value)]
    return broken[0] if broken else ("loss", total)


def trainer_for(config: RunConfig, run_dir: Path, observer: Observer | None = None) -> Trainer:
    """The engine that trains ``config``: the restarts stacked (``train.stack_restarts``) or in turn."""
    if config.train.stack_restarts and config.train.restarts > 1:
        from memtool.stacked import StackedTrainer

        return StackedTrainer(config, run_dir, observer)
    return Trainer(config, run_dir, observer)


def train(
    config: RunConfig, run_dir: Path, resume: bool = False, observer: Observer | None = None
) -> Summary:
    return trainer_for(config, run_dir, observer).run(resume)
