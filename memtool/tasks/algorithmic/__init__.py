"""The NTM paper's algorithmic tasks (Graves et al. 2014, Sec. 4), generated on the fly, seeded."""

# importing registers each task
from memtool.tasks.algorithmic import copy, priority_sort, recall, repeat_copy  # noqa: F401
