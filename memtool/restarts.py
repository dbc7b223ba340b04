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

import json
import math
import os
import queue
import shutil
import signal
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from memtool import jsonio
from memtool.checkpoint import RESTARTS_FOLDER, atomic_write
from memtool.config import RunConfig, build_config
from memtool.errors import TrainingDiverged, UserError
from memtool.interrupts import Interrupted
from memtool.run_dir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, RunDirectory
from memtool.tasks.base import EvalResult
from memtool.train_state import Observer, SilentObserver, Summary

Origin = tuple[str, tuple[str, ...]]  # a config's source file and the --set overrides it was built with


def restart_folder(run_dir: Path, restart: int) -> Path:
    return run_dir / RESTARTS_FOLDER / str(restart)


def is_parallel_run(run_dir: Path) -> bool:
    return (run_dir / RESTARTS_FOLDER).is_dir()


def _train_one(
    raw: dict[str, Any], origin: Origin, folder: str, restart: int, resume: bool
) -> dict[str, Any]:
    """One restart: its summary.json, or ``{"interrupted": True}`` after Ctrl-C or SIGTERM."""
    from memtool.engine import Trainer

    # ``raw`` has the overrides applied already; they travel along so that errors can name them
    config = replace(build_config(raw, source=origin[0]), overrides=origin[1])
    try:
        summary = Trainer(config, Path(folder), SilentObserver(), restart=restart).run(resume)
    except Interrupted:
        return {"interrupted": True}
    return summary.to_dict()


def _worker(
    answers: Any, raw: dict[str, Any], origin: Origin, folder: str, restart: int, resume: bool
) -> None:
    """A worker process: trains one restart and answers (restart, kind, result or message)."""
    # out of the terminal's process group: Ctrl-C reaches the parent only, which passes it on once
    os.setpgrp()
    try:
        answers.put((restart, "done", _train_one(raw, origin, folder, restart, resume)))
    except UserError as error:
        answers.put((restart, "user", str(error)))
    except TrainingDiverged as error:
        answers.put((restart, "diverged", str(error)))
    except KeyboardInterrupt:  # a second SIGTERM from the parent (a second Ctrl-C): stopped at once
        answers.put((restart, "done", {"interrupted": True}))
    except BaseException as error:  # anything else: the parent says which restart failed, and how
        answers.put((restart, "failed", f"{type(error).__name__}: {error}"))


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

        path = self.files.path
        if resume and not is_parallel_run(path):
            trained_alone = self.files.last.exists()
            raise UserError(
                f"{path}: trained in one process (no {RESTARTS_FOLDER}/ folder); resume it without "
                "--parallel-restarts"
                if trained_alone
                else f"{path}: no run to resume; drop --resume to start one"
            )
        created = not path.exists()
        self.files.claim()
        try:
            if not resume and (is_parallel_run(path) or self.files.last.exists()):
                raise UserError(
                    f"{path}: already holds a run; pass --resume to continue it or choose another --out"
                )
            scoring = TASKS.get(self.config.task.name).scoring
            if resume:
                finished = self._check_resume(scoring)
                if finished is not None:
                    self.observer.message(f"{path} already finished training; its summary:")
                    return finished
            self.files.write_config(self.config.to_dict(), self.config.source)
            started = time.monotonic()
            results = self._train_all(resume)
            summary = self._merge(results, scoring, time.monotonic() - started)
            self.files.write_summary(summary.to_dict())
            return summary
        except UserError:
            # refused before any restart saved a step (bad data, say): leave nothing, as one process does
            restarts = range(self.config.train.restarts)
            if created and not any((restart_folder(path, r) / "last.pt").exists() for r in restarts):
                self.files.remove()
            raise
        finally:
            self.files.release()

    def _check_resume(self, scoring: Any) -> Summary | None:
        """Refuse a changed config before anything is written, as a one-process resume does; a finished
        run resumed with the same limits is returned as it is."""
        from memtool.build import changed_keys, resume_refusal
        from memtool.config import load_config
        from memtool.engine import RESUMABLE_CHANGES

        saved_path = self.files.path / CONFIG_FILE
        saved = load_config(saved_path).to_dict()
        current = self.config.to_dict()
        differing = changed_keys(saved, current)
        changed = [key for key in differing if key not in RESUMABLE_CHANGES]
        if changed:
            raise UserError(resume_refusal(str(saved_path), saved, current, changed))
        limits = ("train.epochs", "train.max_steps", "train.stop_at_target")
        summary_path = self.files.path / SUMMARY_FILE
        if not summary_path.is_file() or any(key in limits for key in differing):
            return None
        return summary_from_dict(json.loads(summary_path.read_text(encoding="utf-8")), scoring)

    def _train_all(self, resume: bool) -> dict[int, dict[str, Any]]:
        """Run the restarts, ``processes`` at a time; a restart starts only when one has ended, so after
        Ctrl-C nothing new starts and the running ones save and stop."""
        restarts = self.config.train.restarts
        plural = "es" if self.processes > 1 else ""
        self.observer.message(
            f"training {restarts} restarts in {self.processes} process{plural} of "
            f"{self.raw['train']['threads']} thread(s) each; restart k in "
            f"{self.files.path / RESTARTS_FOLDER}/<k - 1>"
        )
        context = get_context("spawn")  # a fresh interpreter: no inherited torch threads or locks
        answers = context.Queue()
        waiting, running = list(range(restarts)), {}
        results: dict[int, dict[str, Any]] = {}
        failure: tuple[str, str] | None = None
        stop = {"asked": 0}

        def on_signal(signum: int, frame: Any) -> None:
            stop["asked"] += 1
            for process in running.values():  # once: save and stop; twice: stop at once
                if process.is_alive():
                    os.kill(process.pid, signal.SIGTERM)

        previous = {number: signal.signal(number, on_signal) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            while waiting or running:
                while waiting and len(running) < self.processes and not stop["asked"] and failure is None:
                    restart = waiting.pop(0)
                    folder = restart_folder(self.files.path, restart)
                    again = resume and (folder / "last.pt").exists()
                    origin = (self.config.source, self.config.overrides)
                    arguments = (answers, self.raw, origin, str(folder), restart, again)
                    running[restart] = context.Process(target=_worker, args=arguments, daemon=True)
                    running[restart].start()
                if not running:
                    break
                try:
                    restart, kind, answer = answers.get(timeout=0.5)
                except queue.Empty:
                    for restart, process in list(running.items()):
                        if not process.is_alive() and answers.empty():  # killed without a word
                            running.pop(restart)
                            failure = failure or (
                                "failed",
                                f"restart {restart + 1}: its process ended with exit code {process.exitcode}",
                            )
                    continue
                running.pop(restart).join()
                if kind == "done" and answer.get("interrupted"):
                    stop["asked"] = max(stop["asked"], 1)
                elif kind == "done":
                    results[restart] = answer
                    self._report(restart, answer)
                else:
                    failure = failure or (kind, answer)
        finally:
            for number, action in previous.items():
                signal.signal(number, action)
        if failure is not None:  # the others ended their restart or saved: a resume continues them
            kind, message = failure
            raise {"user": UserError, "diverged": TrainingDiverged}.get(kind, RuntimeError)(message)
        if stop["asked"] or len(results) < restarts:
            raise Interrupted(
                self.files.path, f"each restart's last.pt in {self.files.path / RESTARTS_FOLDER}"
            )
        return results

    def _report(self, restart: int, result: dict[str, Any]) -> None:
        select = next(key for key in result if key.startswith("best_valid_"))
        label = select.removeprefix("best_valid_")
        self.observer.message(
            f"restart {restart + 1} of {self.config.train.restarts} ({RESTARTS_FOLDER}/{restart}) done: "
            f"best validation {label} "
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
        scored: dict[str, dict[str, Any]] = {}
        for restart in sorted(results):
            scored |= restart_scores(results[restart]["restarts"], select.name)
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
            steps=results[max(results)]["steps"],  # as a one-process run: the last restart's
            target=target,
            restarts=scored,
            device=chosen.get("device", ""),
            threads=chosen.get("threads", 0),
        )


def summary_from_dict(written: dict[str, Any], scoring: Any) -> Summary:
    """A ``Summary`` back from its ``summary.json``."""
    select = scoring.select.name
    return Summary(
        run_dir=written["run_dir"],
        seed=written["seed"],
        best_restart=written["best_restart"],
        select=select,
        best_valid=written[f"best_valid_{select}"],
        test=EvalResult(**written["test"]),
        valid=EvalResult(**written["valid"]),
        train_seconds=written["train_seconds"],
        steps=written["steps"],
        target=written.get("target"),
        restarts=restart_scores(written.get("restarts", []), select),
        ddp_processes=written.get("ddp_processes", 1),
        device=written.get("device", ""),
        threads=written.get("threads", 0),
    )


def restart_scores(entries: list[dict[str, Any]], select: str) -> dict[str, dict[str, Any]]:
    """summary.json's ``restarts`` list back to ``Summary.restarts`` (the inverse of ``to_dict``'s)."""
    return {
        str(entry["restart"]): {
            "best_valid": entry[f"best_valid_{select}"],
            "valid": entry["valid"],
            "test": entry["test"],
            "train_seconds": entry.get("train_seconds"),
        }
        for entry in entries
    }
