"""The ``memtool`` console script: Ctrl-C while the command line is still being imported exits quietly.

``memtool.cli.main`` handles Ctrl-C from then on (exit code 130, no traceback).
"""

from __future__ import annotations

import signal
import sys
from typing import Any


def _interrupted(signum: int, frame: Any) -> None:
    sys.stderr.write("interrupted\n")
    sys.exit(130)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted)
    from memtool.cli import main as cli_main

    signal.signal(signal.SIGINT, signal.default_int_handler)
    cli_main()
