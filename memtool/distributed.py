"""Data-parallel training with PyTorch DDP under ``torchrun``: which process this is, its share of each
batch, and the numbers every process must agree on.

A run of one process is the same code with every collective a no-op, so the training loop has one path.
Every rank builds the same batches (a pure function of the seed) and trains on its own part of each; DDP
averages the gradients, and the parts' losses are weighted so that the average is the gradient of the
whole batch: N processes take the steps one process would, within float noise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from memtool.errors import UserError


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (``torchrun`` sets the environment)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Ranks:
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise UserError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
        return cls(rank, world, local_rank)

    @property
    def main(self) -> bool:
        """The process that prints, logs and writes the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def device(self, requested: torch.device) -> torch.device:
        """One GPU per process on a machine: CUDA runs on ``cuda:LOCAL_RANK``."""
        if not self.distributed or requested.type != "cuda":
            return requested
        if self.local_rank >= torch.cuda.device_count():
            raise UserError(
                f"LOCAL_RANK {self.local_rank}: this machine has {torch.cuda.device_count()} GPU(s); "
                "start at most that many processes per node"
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def start(self, device: torch.device) -> None:
        """Join the process group: NCCL between GPUs, gloo between CPU processes."""
        if self.distributed and not torch.distributed.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend, rank=self.rank, world_size=self.world)

    def stop(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """The module the training step calls: DDP around the model when there are several processes."""
        if not self.distributed:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, values: Tensor) -> Tensor:
        """``values`` summed over every process (a copy; the input is left as it is)."""
        if not self.distributed:
            return values
        total = values.clone()
        torch.distributed.all_reduce(total)
        return total

    def from_main(self, value: Any) -> Any:
        """The main process's ``value`` (a picklable object), in every process."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (a picklable object), in rank order, in every process."""
        if not self.distributed:
            return [value]
        values: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(values, value)
        return values

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def seed_offset(self) -> int:
        """Added to the seed after the model is built, so each process draws its own dropout masks."""
        return 7_919 * self.rank
