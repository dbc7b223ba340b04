"""The copy task (Graves et al. 2014, Sec. 4.1): read a sequence of random bit vectors, then a delimiter,
then write the sequence back. Scored in bits per sequence at the training lengths and at longer ones."""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor

from memtool.registry import register_task
from memtool.schema import Strict
from memtool.tasks.algorithmic.inspection import plural
from memtool.tasks.algorithmic.sequence import (
    Curriculum,
    RangeSizedTask,
    Size,
    StepOption,
    check_curriculum,
    random_bits,
    sequence_scoring,
)

LONGEST = 2000  # a sequence length the generator refuses above: 4001 time steps per sequence


class CopyParams(Strict):
    bits: PositiveInt = 8  # width of each random vector
    min_length: int = Field(1, ge=1, le=LONGEST)
    max_length: int = Field(20, ge=1, le=LONGEST)
    curriculum: Curriculum | None = None  # lengths up to max_length open over curriculum.sequences

    @model_validator(mode="after")
    def _ordered(self) -> CopyParams:
        if self.min_length > self.max_length:
            raise ValueError(f"min_length {self.min_length} is above max_length {self.max_length}")
        check_curriculum(self.curriculum, self.min_length, self.max_length, "min_length and max_length")
        return self


class CopyEval(Strict):
    # scored lengths; None: the longest training length and 30, 50, 120 beyond it (the paper's Fig. 4)
    lengths: list[PositiveInt] | None = Field(None, min_length=1)


class CopyInspectOptions(StepOption):
    length: PositiveInt | None = Field(
        None, description="sequence length to show (default: the longest trained)"
    )


def copy_sequences(count: int, length: int, bits: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` sequences of ``length`` random ``bits``-vectors: inputs (count, 2·length + 1, bits + 1)
    with the delimiter on the extra channel, targets (count, length, bits): the answer steps' bits."""
    pattern = random_bits(count, (length, bits), generator)
    inputs = torch.zeros(count, 2 * length + 1, bits + 1)
    inputs[:, :length, :bits] = pattern
    inputs[:, length, bits] = 1.0  # the delimiter
    return inputs, pattern


@register_task("copy")
class CopyTask(RangeSizedTask):
    """Copy (NTM paper, Sec. 4.1): bit vectors, a delimiter, the vectors back; scored in bits per sequence."""

    name = "copy"
    Params = CopyParams
    Eval = CopyEval
    InspectOptions = CopyInspectOptions
    scoring = sequence_scoring("per_length", "length")
    params: CopyParams

    eval_field, inspect_field = "lengths", "length"

    def size_range(self) -> tuple[int, int]:
        return self.params.min_length, self.params.max_length

    def larger_sizes(self, most: int) -> list[int]:
        return [30, 50, 120]  # the paper's Fig. 4

    def generate(self, count: int, size: Size, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return copy_sequences(count, size[0], self.params.bits, generator)

    def steps(self, size: Size) -> int:
        return 2 * size[0] + 1

    def channels(self) -> tuple[int, int]:
        return self.params.bits + 1, self.params.bits

    def describe(self, size: Size) -> str:
        return f"{plural(size[0], 'vector')} of {self.params.bits} bits"

    @property
    def test_lengths(self) -> list[int]:
        return [size[0] for size in self.test_sizes]

    @property
    def valid_lengths(self) -> list[int]:
        return [size[0] for size in self.valid_sizes]
