"""``memtool train CONFIG --parallel-restarts K``: the restarts of ``train.restarts`` as independent
processes, K at a time, for machines with more cores than one run keeps busy.

Restart r trains in ``RUN/restarts/<r>/``, a complete run of its own seeded exactly as restart r of a
one-process run (the same data split, initialisation and batch order), so its result is the same. When
every restart has finished, ``RUN`` gets what a one-process run leaves: ``best.pt`` (the best restart by
validation, ties to the lower loss, then the earlier restart), ``metrics.jsonl`` (every restart's records)
and ``summary.json`` (every restart's validation and test scores and the one kept). An interrupted run
resumes restart by restart: finished ones are kept, the others continue from their ``last.pt``.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from memtool import jsonio
from memtool.checkpoint import atomic_write
from memtool.config import RunConfig, build_config
from memtool.errors import UserError
from memtool.run_dir import METRICS_FILE, RunDirectory
from memtool.tasks.base import EvalResult
from memtool.train_state import Observer, SilentObserver, Summary

RESTARTS_FOLDER = "restarts"


def restart_folder(run_dir: Path, restart: int) -> Path:
    return run_dir / RESTARTS_FOLDER / str(restart)


def is_parallel_run(run_dir: Path) -> bool:
    return (run_dir / RESTARTS_FOLDER).is_dir()


def _train_one(raw: dict[str, Any], source: str, folder: str, restart: int, resume: bool) -> dict[str, Any]:
    """One restart, in a worker process: its summary.json, or ``{"interrupted": True}`` after Ctrl-C."""
    from memtool.engine import Interrupted, Trainer

    config = build_config(raw, source=source)
    try:
        summary = Trainer(config, Path(folder), SilentObserver(), restart=restart).run(resume)
    except Interrupted:
        return {"interrupted": True}
    return summary.to_dict()


def _ignore_interrupts() -> None:
    # Ctrl-C reaches every process of the terminal's group: a worker between restarts must not die of it
    # (a training worker catches it itself, saves and stops); the parent decides what happens next
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ParallelRestarts:
    def __init__(self, config: RunConfig, run_dir: Path, processes: int, observer: Observer) -> None:
        self.config = config
        self.files = RunDirectory(run_dir)
        self.processes = min(processes, config.train.restarts)
        self.observer = observer
        # each process its share of the cores, unless train.threads says otherwise
        threads = config.train.threads or max(1, (os.cpu_count() or 1) // self.processes)
        self.raw = config.to_dict()
        self.raw["train"]["threads"] = threads

    def run(self, resume: bool) -> Summary:
        from memtool.registry import TASKS

        self.files.claim()
        try:
            if not resume and (is_parallel_run(self.files.path) or self.files.last.exists()):
                raise UserError(
                    f"{self.files.path}: already holds a run; "
                    "pass --resume to continue it or choose another --out"
                )
            if resume and not is_parallel_run(self.files.path):
                raise UserError(
                    f"{self.files.path}: no restarts to resume (no {RESTARTS_FOLDER}/ folder); "
                    "drop --resume to start the run"
                )
            self.files.write_config(self.config.to_dict(), self.config.source)
            started = time.monotonic()
            results = self._train_all(resume)
            scoring = TASKS.get(self.config.task.name).scoring
            summary = self._merge(results, scoring, time.monotonic() - started)
            self.files.write_summary(summary.to_dict())
            return summary
        finally:
            self.files.release()

    def _train_all(self, resume: bool) -> dict[int, dict[str, Any]]:
        from memtool.engine import Interrupted

        restarts = self.config.train.restarts
        self.observer.message(
            f"training {restarts} restarts in {self.processes} processes of {self.raw['train']['threads']} "
            f"thread(s) each, restart r in {self.files.path / RESTARTS_FOLDER}/<r>"
        )
        results: dict[int, dict[str, Any]] = {}
        interrupted = {"stop": False}

        def on_interrupt(signum: int, frame: Any) -> None:
            interrupted["stop"] = True  # the training workers save and stop by themselves

        previous = signal.signal(signal.SIGINT, on_interrupt)
        context = get_context("spawn")  # a fresh interpreter: no inherited torch threads or locks
        try:
            with ProcessPoolExecutor(
                self.processes, mp_context=context, initializer=_ignore_interrupts
            ) as pool:
                pending: dict[Future, int] = {}
                for restart in range(restarts):
                    folder = restart_folder(self.files.path, restart)
                    again = resume and (folder / "last.pt").exists()
                    future = pool.submit(
                        _train_one, self.raw, self.config.source, str(folder), restart, again
                    )
                    pending[future] = restart
                while pending:
                    done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                    if interrupted["stop"]:
                        for future in pending:
                            future.cancel()  # those not started yet
                    for future in done:
                        restart = pending.pop(future)
                        if future.cancelled():
                            continue
                        try:
                            result = future.result()  # a worker's error is raised here, as its own
                        except BaseException:
                            for other in pending:  # the running ones finish their restart: resumable
                                other.cancel()
                            raise
                        if result.get("interrupted"):
                            interrupted["stop"] = True
                            continue
                        results[restart] = result
                        self._report(restart, result)
        finally:
            signal.signal(signal.SIGINT, previous)
        if interrupted["stop"] or len(results) < restarts:
            raise Interrupted(
                self.files.path, f"each restart's last.pt in {self.files.path / RESTARTS_FOLDER}"
            )
        return results

    def _report(self, restart: int, result: dict[str, Any]) -> None:
        select = next(key for key in result if key.startswith("best_valid_"))
        label = select.removeprefix("best_valid_")
        self.observer.message(
            f"restart {restart + 1} of {self.config.train.restarts} done: best validation {label} "
            f"{result[select]:.4g}, test {result['test']['metrics'].get(label, math.nan):.4g} "
            f"({result['train_seconds']:.0f} s)"
        )

    def _merge(self, results: dict[int, dict[str, Any]], scoring: Any, seconds: float) -> Summary:
        """What a one-process run of the restarts leaves in RUN, from each restart's own run."""
        select = scoring.select
        kept, best, best_loss = -1, math.nan, math.inf
        for restart in sorted(results):  # the engine's rule, so the same restart is kept
            score = results[restart][f"best_valid_{select.name}"]
            loss = results[restart]["valid"]["metrics"]["loss"]
            if select.improves(score, loss, best, best_loss):
                kept, best, best_loss = restart, score, loss
        chosen = results[kept]
        source = restart_folder(self.files.path, kept) / "best.pt"
        with source.open("rb") as handle:
            atomic_write(self.files.best, lambda out: shutil.copyfileobj(handle, out))
        records = []
        for restart in sorted(results):
            records += RunDirectory(restart_folder(self.files.path, restart)).records()
        text = "".join(jsonio.dumps(record) + "\n" for record in records)
        atomic_write(self.files.path / METRICS_FILE, lambda out: out.write(text.encode("utf-8")))
        scored = {}
        for restart in sorted(results):
            (entry,) = results[restart]["restarts"]
            scored[str(restart)] = {
                "best_valid": entry[f"best_valid_{select.name}"],
                "valid": entry["valid"],
                "test": entry["test"],
                "train_seconds": entry["train_seconds"],
            }
        target = chosen.get("target")
        if target is not None:
            by_restart = {str(r): results[r]["target"]["by_restart"][str(r)] for r in sorted(results)}
            target = {**target, "by_restart": by_restart, "kept": by_restart[str(kept)]}
        return Summary(
            run_dir=str(self.files.path),
            seed=self.config.seed,
            best_restart=kept,
            select=select.name,
            best_valid=chosen[f"best_valid_{select.name}"],
            test=EvalResult(**chosen["test"]),
            valid=EvalResult(**chosen["valid"]),
            train_seconds=seconds,
            steps=chosen["steps"],
            target=target,
            restarts=scored,
        )
