"""Video captioning (issue 13, in progress): synthetic shape videos whose captions need temporal
attention, their data, metrics and the captioning task."""

# importing the package registers the task
from memtool.tasks.video import task  # noqa: F401
