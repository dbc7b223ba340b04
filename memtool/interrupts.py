"""How a training run stops early: Ctrl-C and SIGTERM between two steps, and running out of memory."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from memtool.checkpoint import RESTARTS_FOLDER
from memtool.run_dir import RunDirectory


class Interrupted(Exception):
    """Training stopped on Ctrl-C after saving ``last.pt``; ``--resume`` continues it."""

    def __init__(self, run_dir: Path, saved: str | None = None) -> None:
        super().__init__(f"interrupted: saved {saved or RunDirectory(run_dir).last}")
        self.run_dir = run_dir


def say_interrupted(run_dir: Path, resume_hint: str) -> None:
    """After a stop that skipped the usual report (a second Ctrl-C, torchrun stopping its processes):
    whether a saved state exists, and the command that continues from it."""
    last = RunDirectory(run_dir).last
    if last.exists():  # written atomically: whichever save it is, the run resumes from it
        print(f"interrupted: the last saved state is {last} · continue with: {resume_hint}", file=sys.stderr)
    elif any((run_dir / RESTARTS_FOLDER).glob("*/last.pt")):  # restarts in their own processes
        saved = f"each restart's last.pt in {run_dir / RESTARTS_FOLDER}"
        print(
            f"interrupted: the last saved states are {saved} · continue with: {resume_hint}", file=sys.stderr
        )
    else:
        print("interrupted before anything was saved", file=sys.stderr)


@contextmanager
def graceful_interrupt() -> Iterator[dict[str, bool]]:
    """First Ctrl-C (or SIGTERM: a scheduler's preemption, torchrun stopping its workers) asks the loop to
    save and stop between steps; a second one stops at once."""
    flag = {"stop": False, "at_once": False}
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield flag
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in signals}

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"] or flag["at_once"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    for number in signals:
        signal.signal(number, handler)
    try:
        yield flag
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


@contextmanager
def stop_at_once(flag: dict[str, bool]) -> Iterator[None]:
    """Within it, where there are no steps to stop between (scoring a finished restart, minutes on a big
    test split), the first Ctrl-C raises KeyboardInterrupt at once."""
    flag["at_once"] = True
    try:
        yield
    finally:
        flag["at_once"] = False


def out_of_memory(error: RuntimeError) -> bool:
    text = str(error).lower()
    return (
        isinstance(error, torch.OutOfMemoryError)
        or "can't allocate memory" in text
        or "out of memory" in text
    )
