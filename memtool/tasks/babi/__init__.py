"""The bAbI QA tasks (Weston et al. 2015): reading, generating and batching."""

from memtool.tasks.babi import task  # noqa: F401
