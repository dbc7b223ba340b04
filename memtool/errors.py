"""The one exception type that means "the user asked for something we cannot do"."""

import os
import select
import sys
from collections.abc import Callable
from contextlib import suppress
from typing import NoReturn


class UserError(Exception):
    """A mistake in the user's input: config, data, checkpoint or arguments.

    The CLI prints the message as a single line and exits with code 2; the message must name the file,
    field or value at fault.
    """


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; training stops without writing the bad state."""


def exit_for_user(message: str) -> NoReturn:
    """What the CLI does with a ``UserError``, for the scripts beside it: one line on stderr, exit code 2."""
    # stderr piped to a reader that has gone (``2>&1 | head``): the exit code still says it
    with suppress(BrokenPipeError):
        print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run_as_script(main: Callable[[], None]) -> None:
    """A script's ``main`` as the CLI runs a command: a ``UserError`` is one line and exit code 2, Ctrl-C
    is "interrupted" and exit code 130, and a reader of stdout that stops early (``| head``) ends the
    script quietly instead of in a BrokenPipeError (what it had left to print, or to write after printing,
    is skipped). A broken pipe elsewhere (a subprocess, a socket) stays an error."""
    try:
        main()
        sys.stdout.flush()  # a pipe closed on the last lines fails here, inside the handler
    except UserError as error:
        exit_for_user(str(error))
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit, too
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end has been closed: polling it reports an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no fileno, or no poll on this platform
        return True  # as before: a broken pipe while printing is taken for a reader that has gone
