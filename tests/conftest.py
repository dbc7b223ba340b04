from __future__ import annotations

from pathlib import Path

import pytest
import torch

from memtool.tasks.babi.generator import write_generated

torch.set_num_threads(1)  # tests run many tiny models; threads only add overhead here


@pytest.fixture
def babi_dir(tmp_path: Path) -> Path:
    """A small directory of generated bAbI-format files (tasks 1, 2, 6, 7, 8)."""
    directory = tmp_path / "babi"
    write_generated(directory, (1, 2, 6, 7, 8), train_stories=12, test_stories=4, seed=3)
    return directory
