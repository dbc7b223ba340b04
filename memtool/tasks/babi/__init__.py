"""The bAbI QA tasks (Weston et al. 2015): reading, generating and batching."""

# importing the package registers the task, the table of its view and its figure
from memtool.tasks.babi import figure, render, task  # noqa: F401
