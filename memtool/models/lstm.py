"""An LSTM without external memory: the baseline the NTM paper compares with on the algorithmic tasks."""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor, nn

from memtool.models.base import ModelOutput
from memtool.registry import register_model

PositiveInt = Annotated[int, Field(ge=1)]


@register_model("lstm")
class LSTMBaseline(nn.Module):
    """LSTM baseline for the algorithmic tasks: the same inputs, outputs and metrics, no external memory."""

    data_dims = ("input_size", "output_size")
    start_modes = ()

    def __init__(
        self, input_size: int, output_size: int, hidden_size: PositiveInt = 256, layers: PositiveInt = 3
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=layers, batch_first=True)
        self.output = nn.Linear(hidden_size, output_size)

    def set_mode(self, mode: str | None) -> None:
        """No start modes."""

    def forward(self, inputs: Tensor, trace_memory: bool = False) -> ModelOutput:
        """inputs (B, T, input_size) → logits (B, T, output_size); no external memory, so nothing to trace."""
        # oneDNN has no bfloat16 LSTM on most CPUs: under CPU autocast the recurrence runs in float32
        # (CUDA's autocast, if on, is left as it is)
        with torch.autocast("cpu", enabled=False):
            hidden, _ = self.lstm(inputs)
        return ModelOutput(prediction=self.output(hidden))
