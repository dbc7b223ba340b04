"""Model families. Importing this package registers every family under its name."""

from memtool.models import memn2n  # noqa: F401
