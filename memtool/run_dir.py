"""The files of a run directory: the resolved config, the versions, the metrics log and the summary.

Checkpoints (``best.pt``, ``last.pt``) are ``memtool.checkpoint``'s; this module owns the rest, so the
training loop never builds a path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from memtool import jsonio
from memtool.checkpoint import BEST, LAST, versions

CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, VERSIONS_FILE = (
    "config.yaml",
    "metrics.jsonl",
    "summary.json",
    "versions.json",
)


class RunDirectory:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.best, self.last = path / BEST, path / LAST

    def write_config(self, resolved: dict[str, Any], source: str) -> None:
        """config.yaml, headed by the config it came from; a resumed run keeps the first header."""
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / CONFIG_FILE
        header = f"# resolved from {source}\n"
        if path.exists():
            header = path.read_text(encoding="utf-8").splitlines(keepends=True)[0]
        path.write_text(header + yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
        (self.path / VERSIONS_FILE).write_text(json.dumps(versions(), indent=2) + "\n", encoding="utf-8")

    def append_record(self, record: dict[str, Any]) -> None:
        with (self.path / METRICS_FILE).open("a", encoding="utf-8") as handle:
            handle.write(jsonio.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        path = self.path / METRICS_FILE
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def trim_records(self, restart: int, step: int) -> None:
        """Drop records written after the checkpoint we resume from; the resumed run writes them again."""
        path = self.path / METRICS_FILE
        if not path.exists():
            return
        kept = [r for r in self.records() if (r["restart"], r["step"]) <= (restart, step)]
        path.write_text("".join(jsonio.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def write_summary(self, summary: dict[str, Any]) -> None:
        (self.path / SUMMARY_FILE).write_text(jsonio.dumps(summary, indent=2) + "\n", encoding="utf-8")
