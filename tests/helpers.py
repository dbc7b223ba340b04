"""Shared test helpers: the tiny config every engine and CLI test starts from."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from typing import Any

TINY_CONFIG: dict[str, Any] = {
    "seed": 0,
    "device": "cpu",
    "model": {"name": "memn2n", "embedding_dim": 16, "hops": 2, "random_noise": 0.1},
    "task": {"name": "babi", "tasks": [1], "memory_size": 20},
    "data": {"source": "generated", "generator": {"train_stories": 40, "test_stories": 10}},
    "train": {"batch_size": 32, "epochs": 2, "lr": 0.005, "loss_reduction": "sum", "threads": 1},
}


def tiny_config(**sections: dict[str, Any]) -> dict[str, Any]:
    """The tiny config with some sections' keys replaced."""
    config = copy.deepcopy(TINY_CONFIG)
    for name, values in sections.items():
        if isinstance(config.get(name), dict):
            config[name].update(values)
        else:
            config[name] = values
    return config


def one_line_error(result: Any, *fragments: str) -> str:
    """A CliRunner result that is the promised user error: exit 2, one ``error:`` line with each fragment."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def memtool_process(*args: object, merge_output: bool = False) -> subprocess.Popen:
    """``python -m memtool ARGS`` as a real process, as a user's shell would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "memtool", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
