"""The NTM paper's algorithmic tasks (Graves et al. 2014, Sec. 4), generated on the fly, seeded."""

from memtool.tasks.algorithmic import copy  # noqa: F401  (registers the task)
