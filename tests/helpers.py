"""Shared test helpers: the tiny config every engine and CLI test starts from."""

from __future__ import annotations

import copy
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
