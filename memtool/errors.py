"""The one exception type that means "the user asked for something we cannot do"."""

import sys
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
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
