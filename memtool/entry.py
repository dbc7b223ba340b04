"""The ``memtool`` console script: Ctrl-C while the command line is still being imported exits quietly.

The handler is installed when this module is imported, before anything else is: only the interpreter's
own start (tens of milliseconds) comes earlier. ``memtool.cli`` handles Ctrl-C from then on (exit 130).
"""

import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    sys.stderr.write("interrupted\n")
    sys.exit(130)


signal.signal(signal.SIGINT, _interrupted)


def main() -> None:
    from memtool.cli import main as cli_main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    cli_main()
