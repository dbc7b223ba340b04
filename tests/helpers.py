"""Shared test helpers: the tiny config every engine and CLI test starts from."""

from __future__ import annotations

import copy
import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
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


FEATURE_THINGS = ("red square", "blue circle", "green triangle", "yellow star")


def write_feature_videos(folder: Any, videos: int, frames: int = 3, seed: int = 0, dims: int = 6) -> None:
    """A tiny captioning set in the features layout: per video a (frames, 6) .npy, frame k showing one
    thing (one-hot, with noise), and a captions.json whose captions name the frames' things in order,
    so only a decoder that attends to the right frame at each phrase can get them right."""
    import json
    import random
    from pathlib import Path

    import numpy as np

    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(videos):
        things = [rng.randrange(len(FEATURE_THINGS)) for _ in range(frames)]
        features = np.zeros((frames, max(dims, len(FEATURE_THINGS) + 2)), dtype=np.float32)
        for frame, thing in enumerate(things):
            features[frame, thing] = 1.0
            features[frame, -2:] = [rng.uniform(-0.1, 0.1), 1.0]
        name = f"video{index}"
        np.save(folder / f"{name}.npy", features)
        phrases = [f"a {FEATURE_THINGS[thing]}" for thing in things]
        captions = [" then ".join(phrases), " and then ".join(phrases)]
        split = "train" if index < videos * 0.7 else ("val" if index < videos * 0.85 else "test")
        entries.append({"id": name, "split": split, "captions": captions})
    (folder / "captions.json").write_text(json.dumps({"videos": entries}, indent=1))


def same_metrics(a: dict[str, float], b: dict[str, float], rel: float = 0.0) -> bool:
    """Metrics equal key by key (within ``rel``, relative), NaN equal to NaN (a share with nothing to
    count is NaN in both runs)."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) or math.isclose(a[k], b[k], rel_tol=rel, abs_tol=rel)
        for k in a
    )


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module, for testing a script's arithmetic without running it."""
    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # NamedTuple's annotations look their module up
    spec.loader.exec_module(module)
    return module
