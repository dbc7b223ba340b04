"""Tasks. Importing this package registers every task under its name."""

from memtool.tasks import babi  # noqa: F401
