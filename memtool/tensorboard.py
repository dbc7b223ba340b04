"""TensorBoard event files for a run (``train.tensorboard: true``), so a long run can be watched there.

Every number of every validation record is written under its own tag (``valid/error``, ``train/loss``,
``lr``), one run per restart, at the optimizer step it was taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from memtool.errors import UserError


class TensorBoardObserver:
    def __init__(self, directory: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "train.tensorboard needs the tensorboard package; "
                "install it with: pip install 'memtool[tensorboard]'"
            ) from None
        self.directory = directory
        self._writer_class = SummaryWriter
        self.writers: dict[int, Any] = {}

    def _writer(self, restart: int) -> Any:
        if restart not in self.writers:
            self.writers[restart] = self._writer_class(str(self.directory / f"restart-{restart + 1}"))
        return self.writers[restart]

    def evaluated(self, record: dict[str, Any]) -> None:
        writer = self._writer(record["restart"])
        for key, value in record.items():
            if key in ("restart", "step", "epoch", "elapsed") or not isinstance(value, int | float):
                continue
            split, _, name = key.partition("_")
            tag = f"{split}/{name}" if name and split in ("train", "valid") else key
            if value is not None:
                writer.add_scalar(tag, value, record["step"])
        writer.flush()

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers.clear()

    def started(self, *args: Any) -> None: ...
    def epoch_started(self, *args: Any) -> None: ...
    def stepped(self, *args: Any) -> None: ...
    def message(self, *args: Any) -> None: ...
    def stage(self, *args: Any) -> None: ...
