"""Video captioning: synthetic shape videos whose captions need temporal attention, users' own videos as
per-frame feature arrays, and what every captioning task shares (batches, loss, scores, inspection)."""

# importing the package registers the tasks
from memtool.tasks.video import features, shapes_task  # noqa: F401
