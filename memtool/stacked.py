"""``train.stack_restarts``: the restarts of ``train.restarts`` trained at once, as replicas of one model.

Restart r is built as a run of its own builds it (seeded with seed + r), draws its randomness from a
generator that continues where that run's global one would, and reads its own epoch order of batches.
The replicas' parameters are stacked along a first dimension (``stack_replicas``); the model's
``forward_replicas`` runs all of them in one pass, the task's loss scores each replica's batch, each
replica's gradient is clipped as its own, and one optimizer step updates all of them (every optimizer
memtool offers updates each element on its own, so that step is each replica's own step). Validation,
the best checkpoints (``best-restart-<r>.pt``, ordinary checkpoints), selection, the records and the
summary are per restart, as when the restarts train one after another; ``last.pt`` holds the stacked
state, and an interrupted run resumes from it.

Stacking pays where a step is bound by the number of ops, not their arithmetic: one op then serves R
replicas (a small MemN2N on one bAbI task; docs/PERFORMANCE.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from memtool.build import create_model
from memtool.checkpoint import save_checkpoint
from memtool.engine import Trainer
from memtool.errors import UserError
from memtool.models.base import STACKED_REPLICAS, replica_state, stack_replicas
from memtool.optim import build_optimizer, clip_gradients
from memtool.tasks.base import Batch, EvalResult
from memtool.train_state import MAIN, TrainState


class StackedTrainer(Trainer):
    together = True

    def __init__(self, config: Any, run_dir: Any, observer: Any = None) -> None:
        super().__init__(config, run_dir, observer)
        if self.ranks.distributed:
            raise UserError(
                "train.stack_restarts: trains the restarts in one process, not under torchrun; set it to "
                "false to train data-parallel"
            )
        self.states: list[TrainState] = []  # one per restart
        self.generators: list[torch.Generator] = []  # each restart's random draws
        self.replicas: list[nn.Module] = []  # one model per restart: validation and checkpoints
        self.bests: dict[int, dict[str, Any]] = {}  # restarts' bests not yet in best-restart-<r>.pt

    def _training_restarts(self, state: TrainState) -> list[int]:
        return list(range(self.tc.restarts))

    def _replica(self, restart: int) -> nn.Module:
        """Restart ``restart``'s model, initialised as its own run would be, and its generator, which goes
        on where that run's global generator would."""
        torch.manual_seed(self.config.seed + restart)
        model = create_model(self.config.model.name, self.model_args).to(self.device)
        generator = torch.Generator(self.device)
        cuda = self.device.type == "cuda"
        generator.set_state(torch.cuda.get_rng_state(self.device) if cuda else torch.get_rng_state())
        self.generators.append(generator)
        return model

    def _train_restarts(
        self, state: TrainState, saved: dict[str, Any] | None, stop: dict[str, bool]
    ) -> tuple[nn.Module, torch.optim.Optimizer, TrainState]:
        tc = self.tc
        self.replicas = [self._replica(restart) for restart in range(tc.restarts)]
        stacked = stack_replicas(self.replicas)
        optimizer = build_optimizer(tc, list(stacked.parameters()))
        if saved is not None:
            training = saved["training"]
            stacked.load_state_dict(saved["model_state"])
            optimizer.load_state_dict(training["optimizer"])
            for generator, generator_state in zip(self.generators, training["generators"], strict=True):
                generator.set_state(generator_state)
            self.states = [TrainState(**progress) for progress in training["replicas"]]
            self.bests = {int(restart): best for restart, best in training.get("bests", {}).items()}
        else:
            self.states = [TrainState(restart) for restart in range(tc.restarts)]
            for replica in self.states:
                replica.phase = tc.start_phase.mode if tc.start_phase is not None else MAIN
        for replica in self.states:  # the run's shared record: one best, one clock
            replica.reached, replica.scored, replica.finished = state.reached, state.scored, False
            self._share_best(state, replica)
        lead = self.states[0]  # every replica is at the same step, epoch and phase
        self._set_mode([stacked, *self.replicas], lead)
        self.observer.message(f"training the {tc.restarts} restarts together, stacked (train.stack_restarts)")
        if saved is not None:
            self._say_where_it_resumes(lead)
        if not self._finished(lead):  # resumed with only scoring left: no header over no epochs
            self.observer.started(self.config, self.task, self.replicas[0], self.device, saved is not None)
        try:
            self._train_loop(stacked, stacked, optimizer, lead, stop)
        finally:  # stopped or failed too: the bests so far are good checkpoints
            self._write_bests()
        self._score_or_stop(stacked, optimizer, self.states, lead, stop)
        return stacked, optimizer, self.states[-1]

    def _epoch_steps(self, state: TrainState) -> Iterator[list[Batch]]:
        """Each step's batches, one per replica, each from its restart's own epoch order."""
        seeds = [self._epoch_seed(replica) for replica in self.states]
        steps = self.task.replica_batches(
            self.tc.batch_size, seeds, start=state.batches_done, epoch=state.epoch
        )
        return ([batch.to(self.device) for batch in batches] for batches in steps)

    def _validate_now(self, model: nn.Module, state: TrainState, lr: float, batches_per_epoch: int) -> None:
        self._validate_replicas(model, lr, batches_per_epoch)

    def _end_epoch(
        self, model: nn.Module, optimizer: Any, state: TrainState, lr: float, batches_per_epoch: int
    ) -> None:
        for replica in self.states:
            replica.epoch += 1
            replica.batches_done = 0
        losses = self._validate_replicas(model, lr, batches_per_epoch, epoch_end=True)
        self._advance_phase(model, losses[0], state)  # a start phase of fixed length: all at once
        for replica in self.states[1:]:
            replica.phase, replica.main_epochs = state.phase, state.main_epochs
        self._save_last(model, optimizer, state)

    def _set_mode(self, models: list[nn.Module], state: TrainState) -> None:
        if self.tc.start_phase is not None:
            for model in models:
                model.set_mode(state.phase if state.phase != MAIN else None)

    @staticmethod
    def _share_best(source: TrainState, replica: TrainState) -> None:
        replica.best_score, replica.best_loss = source.best_score, source.best_loss
        replica.best_restart, replica.elapsed = source.best_restart, source.elapsed

    def _step(  # type: ignore[override]
        self,
        stacked: nn.Module,
        optimizer: torch.optim.Optimizer,
        parameters: list[nn.Parameter],
        batches: list[Batch],
        state: TrainState,
        stop: dict[str, bool],
    ) -> None:
        """One optimizer step of every replica, each on its own batch."""
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.tc.precision == "bf16"):
            output = stacked.forward_replicas([batch.inputs for batch in batches], self.generators)
            task_losses, counts = self.task.replica_loss(output, batches)
            aux = output.aux_losses  # each (replicas,)
            losses = task_losses + sum(aux.values()) if aux else task_losses
        numbers = torch.stack(
            [task_losses.detach(), *counts.values(), *(a.detach() for a in aux.values())], 1
        )
        sizes = [batch.size for batch in batches]
        if self.tc.loss_reduction == "sum":
            losses = losses * torch.tensor(sizes, device=losses.device)
        losses.sum().backward()  # replicas share no parameter: each gets its own loss's gradient
        if self.tc.clip_norm is not None or self.tc.clip_value is not None:
            clip_gradients(
                parameters, self.tc.clip_norm, self.tc.clip_mode, self.tc.clip_value, replicas=True
            )
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        for replica, batch in zip(self.states, batches, strict=True):
            replica.step += 1
            replica.batches_done += 1
            replica.examples += batch.size
        lead = self.states[0]
        self._unread.append((numbers.double(), lead.epoch, lead.step, sizes, [*counts], [*aux]))
        self._stop_read = self._stop_read or stop["stop"]

    def _read_steps(self, state: TrainState) -> bool:
        """Every replica's steps into its own window (one read from the device for all)."""
        if not self._unread:
            return self._stop_read
        values = torch.stack([entry[0] for entry in self._unread]).tolist()  # (steps, replicas, numbers)
        for (_, epoch, step, sizes, counts, aux), rows in zip(self._unread, values, strict=True):
            for replica, size, numbers in zip(self.states, sizes, rows, strict=True):
                self._add_step(replica, numbers, size, counts, aux, (epoch, step))
        self._unread.clear()
        self.observer.stepped(self.states[0], sum(row[0] for row in values[-1]) / len(values[-1]))
        return self._stop_read

    def _validate_replicas(
        self, stacked: nn.Module, lr: float, batches_per_epoch: int, epoch_end: bool = False
    ) -> list[float]:
        """Validate every replica (one pass of the stacked model, where the task can), then log each
        restart's record and keep its bests, as a restart of its own would; their losses."""
        lead = self.states[0]
        self._read_steps(lead)
        self._tick(lead)
        speeds = [self._speed(replica) for replica in self.states]
        results = self.task.evaluate_replicas(
            stacked,
            lambda restart: self._replica_model(stacked, restart),
            len(self.states),
            "valid",
            self.tc.eval_batch_size,
        )
        stacked.train()
        self._tick(lead)
        for replica, valid, speed in zip(self.states, results, speeds, strict=True):
            self._log_validation(stacked, replica, valid, lr, batches_per_epoch, epoch_end, speed)
            for other in self.states:  # the best over every restart so far, for the next one's turn
                self._share_best(replica, other)
        return [valid.metrics["loss"] for valid in results]

    def _replica_model(self, stacked: nn.Module, restart: int) -> nn.Module:
        """Restart ``restart``'s model with its current weights and mode."""
        model = self.replicas[restart]
        model.load_state_dict(replica_state(stacked, restart))
        self._set_mode([model], self.states[restart])
        return model

    def _keep_if_best(self, stacked: nn.Module, valid: EvalResult, state: TrainState) -> None:
        """best.pt is written when a restart beats every other; a restart's own best is kept in memory
        (and in last.pt, so a resumed run has it) and written as best-restart-<r>.pt when the run ends or
        stops: at nearly every validation one of ten restarts improves, and each file write costs more
        than a step."""
        restart_best, run_best = self._improved(valid, state)
        if not (restart_best or run_best):
            return
        own = self._own_part(self._replica_model(stacked, state.restart), state)
        own |= self._best_extra(valid, state)
        if restart_best:  # only what differs from the run's other checkpoints, and a copy of the weights
            weights = {name: value.clone() for name, value in own["model_state"].items()}
            self.bests[state.restart] = {**own, "model_state": weights}
        if run_best:
            save_checkpoint(self.files.best, {**self._run_identity(), **own})

    def _write_bests(self) -> None:
        """Each restart's best kept since the last write, as its best-restart-<r>.pt."""
        identity = self._run_identity()
        for restart, kept in sorted(self.bests.items()):
            save_checkpoint(self.files.restart_best(restart), {**identity, **kept})
        self.bests.clear()

    def _tick(self, state: TrainState) -> None:
        super()._tick(state)
        for replica in self.states:
            replica.elapsed = state.elapsed

    def _save_last(self, model: nn.Module, optimizer: Any, state: TrainState, tick: bool = True) -> None:
        self._read_steps(state)
        if tick:
            self._tick(state)
        final = self.states[-1]  # the run's progress, as a run of restarts in turn leaves it
        final.finished = state.finished
        training = {
            "progress": asdict(final),
            "replicas": [asdict(replica) for replica in self.states],
            "optimizer": optimizer.state_dict(),
            "generators": [generator.get_state() for generator in self.generators],
            "bests": {str(restart): best for restart, best in self.bests.items()},
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": [],
        }
        extra = {"training": training, STACKED_REPLICAS: len(self.states)}
        save_checkpoint(self.files.last, self._payload(model, final, extra))
