"""The terminal side of every command: output that survives a closed pipe, the one-line user error,
Ctrl-C while torch loads, and how memtool was started (for commands it prints)."""

from __future__ import annotations

import functools
import io
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from memtool.errors import TrainingDiverged, UserError


class _ClosableStdout(io.TextIOBase):
    """stdout that outlives its reader: when a pipe closes (``memtool train ... | head``), the rest goes
    to /dev/null and the command carries on, so a training run is not killed by its own progress lines."""

    def __init__(self) -> None:
        self.reader_gone = False

    def _gone(self) -> None:
        self.reader_gone = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail either
        sys.stderr.write("memtool: stdout was closed; carrying on without printing\n")

    @staticmethod
    def _stream() -> Any:
        """The real stdout: while a progress display runs in a terminal, ``sys.stdout`` is rich's proxy,
        which prints through this very console, and writing to it would loop back here for ever."""
        return getattr(sys.stdout, "rich_proxied_file", sys.stdout)

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                self._stream().write(text)
            except BrokenPipeError:
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream().flush()
            except BrokenPipeError:
                self._gone()

    def isatty(self) -> bool:
        return self._stream().isatty()


def stdout_is_devnull() -> bool:
    """Whether stdout now writes to /dev/null: where rich (and ``_ClosableStdout``) send it once the
    reader of a pipe has gone."""
    try:
        here, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return (here.st_dev, here.st_ino) == (null.st_dev, null.st_ino)


# Piped output gets 120 columns rather than rich's 80, so tables and paths are not folded.
out = Console(file=_ClosableStdout(), highlight=False, width=None if sys.stdout.isatty() else 120)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)

MOST_ERROR_CHARACTERS = 1000


def error_line(message: str) -> None:
    """A user error as the one line on stderr that every command promises, whatever the message held."""
    line = " ".join(message.split())
    if len(line) > MOST_ERROR_CHARACTERS:
        line = line[: MOST_ERROR_CHARACTERS - 1] + "…"
    err.print(f"[red]error:[/] {escape(line)}", soft_wrap=True)


def import_torch_shielded() -> None:
    """Import torch with Ctrl-C held back until it is done, then honoured (exit 130 in ``main``).

    A KeyboardInterrupt raised while torch's C++ extensions initialise reaches pybind11, which calls
    std::terminate: the process aborts with a C++ message instead of stopping cleanly. Help and usage
    errors never get here, so they still answer without importing torch."""
    if "torch" in sys.modules or threading.current_thread() is not threading.main_thread():
        return
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: interrupted.append(number))
    try:
        import torch  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt


def user_errors(command: Any) -> Any:
    """Turn a UserError into one red line on stderr and exit code 2; divergence into exit code 1; Ctrl-C
    before a run can save (imports, data preparation) into "interrupted" and exit code 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            import_torch_shielded()
            return command(*args, **kwargs)
        except KeyboardInterrupt:  # before training saves anything; typer would exit 130 without a word
            if "RANK" not in os.environ:  # under torchrun, the launcher says it once for every process
                err.print("interrupted")
            raise typer.Exit(130) from None
        except UserError as error:
            if main_process():  # under torchrun every process meets the error; the first says it
                error_line(str(error))
            raise typer.Exit(2) from None
        except TrainingDiverged as error:
            if not main_process():
                raise typer.Exit(1) from None
            err.print(f"[red]training stopped:[/] {escape(str(error))}", soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as error:  # a path the user gave: an existing file as --out, a read-only folder
            error_line(f"{error.filename or 'path'}: {error.strerror or error}")
            raise typer.Exit(2) from None

    return wrapper


PROGRAM_VARIABLE = "MEMTOOL_PROGRAM"
# set by `memtool train --nproc N` for the processes it starts: their launcher reports an interruption
LAUNCHED_VARIABLE = "MEMTOOL_LAUNCHED"


def main_process() -> bool:
    """Not one of torchrun's further processes (they train and stay quiet)."""
    return os.environ.get("RANK", "0") == "0"


def program() -> str:
    """How this memtool was started, so a printed command works as typed (``memtool`` may not be on
    PATH: the README's set-up installs it into ``.venv/bin``)."""
    if os.environ.get(PROGRAM_VARIABLE):  # a process torchrun started for `memtool train --nproc`
        return os.environ[PROGRAM_VARIABLE]
    started = sys.argv[0] if sys.argv and sys.argv[0] else "memtool"
    if Path(started).name == "__main__.py":
        return f"{sys.executable} -m memtool"
    return started if Path(started).name == "memtool" else "memtool"
