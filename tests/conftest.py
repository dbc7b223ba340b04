from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from memtool.tasks.babi.generator import write_generated

torch.set_num_threads(1)  # tests run many tiny models; threads only add overhead here
# the data cache of this test session (commands run by tests inherit it), not the user's ~/.cache
os.environ.setdefault("MEMTOOL_CACHE_DIR", tempfile.mkdtemp(prefix="memtool-cache-"))


@pytest.fixture
def babi_dir(tmp_path: Path) -> Path:
    """A small directory of generated bAbI-format files (tasks 1, 2, 6, 7, 8)."""
    directory = tmp_path / "babi"
    write_generated(directory, (1, 2, 6, 7, 8), train_stories=12, test_stories=4, seed=3)
    return directory
