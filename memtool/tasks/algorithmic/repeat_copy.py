"""Repeat copy (Graves et al. 2014, Sec. 4.2): read a sequence of random bit vectors and a number of
repeats, then write the sequence that many times and an end marker. The repeat count arrives on its own
channel, normalised to mean 0 and variance 1 over the training range, as in the paper."""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import Tensor

from memtool.registry import register_task
from memtool.schema import Strict
from memtool.tasks.algorithmic.inspection import plural
from memtool.tasks.algorithmic.sequence import (
    Curriculum,
    SequenceTask,
    Size,
    StepOption,
    check_curriculum,
    draw,
    random_bits,
    sequence_scoring,
)

LONGEST = 400  # the generator refuses lengths or repeats above this (LONGEST_STEPS bounds their product)


class RepeatCopyParams(Strict):
    bits: PositiveInt = 8
    min_length: int = Field(1, ge=1, le=LONGEST)
    max_length: int = Field(10, ge=1, le=LONGEST)
    min_repeats: int = Field(1, ge=1, le=LONGEST)
    max_repeats: int = Field(10, ge=1, le=LONGEST)
    curriculum: Curriculum | None = None  # lengths and repeats open together over curriculum.sequences

    @model_validator(mode="after")
    def _ordered(self) -> RepeatCopyParams:
        for low, high in (("min_length", "max_length"), ("min_repeats", "max_repeats")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} {getattr(self, low)} is above {high} {getattr(self, high)}")
        if self.min_length == self.max_length and self.min_repeats == self.max_repeats:
            check_curriculum(self.curriculum, self.min_length, self.max_length, "the lengths and repeats")
        return self


class RepeatCopyEval(Strict):
    # scored [length, repeats] pairs; None: the largest trained, then twice the length and twice the
    # repeats (the paper's Fig. 8: length 10 × 20 repeats and length 20 × 10 repeats after 10 × 10)
    sizes: list[tuple[PositiveInt, PositiveInt]] | None = Field(None, min_length=1)

    @field_validator("sizes", mode="before")
    @classmethod
    def _pairs(cls, sizes: Any) -> Any:
        for size in sizes if isinstance(sizes, list) else []:
            if not isinstance(size, (list, tuple)) or len(size) != 2:
                raise ValueError(f"each size is a pair [length, repeats], e.g. [20, 10], not {size!r}")
        return sizes


class RepeatCopyInspectOptions(StepOption):
    length: PositiveInt | None = Field(None, description="sequence length to show (default: the longest)")
    repeats: PositiveInt | None = Field(None, description="repeats to ask for (default: the most trained)")


def repeat_copy_sequences(
    count: int,
    length: int,
    repeats: int,
    bits: int,
    repeats_scale: tuple[float, float],
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Inputs (count, length + 2 + length·repeats + 1, bits + 2): the pattern, a delimiter step (channel
    ``bits``), a step with the normalised repeat count (channel ``bits + 1``), blank answer steps. Targets
    (count, length·repeats + 1, bits + 1): the pattern ``repeats`` times, then the end marker alone on the
    extra channel."""
    mean, std = repeats_scale
    pattern = random_bits(count, (length, bits), generator)
    answer = length * repeats + 1
    inputs = torch.zeros(count, length + 2 + answer, bits + 2)
    inputs[:, :length, :bits] = pattern
    inputs[:, length, bits] = 1.0
    inputs[:, length + 1, bits + 1] = (repeats - mean) / std
    targets = torch.zeros(count, answer, bits + 1)
    targets[:, :-1, :bits] = pattern.repeat(1, repeats, 1)
    targets[:, -1, bits] = 1.0
    return inputs, targets


@register_task("repeat_copy")
class RepeatCopyTask(SequenceTask):
    """Repeat copy (NTM paper, Sec. 4.2): a sequence, a repeat count; the sequence that often, an end mark."""

    name = "repeat copy"
    eval_field = "sizes"
    Params = RepeatCopyParams
    Eval = RepeatCopyEval
    InspectOptions = RepeatCopyInspectOptions
    scoring = sequence_scoring("per_size", "length×repeats")
    params: RepeatCopyParams

    @property
    def repeats_scale(self) -> tuple[float, float]:
        """Mean and standard deviation of the training repeat counts (uniform integers)."""
        low, high = self.params.min_repeats, self.params.max_repeats
        variance = ((high - low + 1) ** 2 - 1) / 12
        return (low + high) / 2, math.sqrt(variance) if variance > 0 else 1.0

    def validation_sizes(self) -> list[Size]:
        p = self.params
        lengths = {p.min_length, (p.min_length + p.max_length) // 2, p.max_length}
        repeats = {p.min_repeats, (p.min_repeats + p.max_repeats) // 2, p.max_repeats}
        return [(n, r) for n in lengths for r in repeats]

    def scored_sizes(self, evaluation: RepeatCopyEval | None) -> list[Size]:
        if evaluation is not None and evaluation.sizes:
            return [tuple(size) for size in evaluation.sizes]
        n, r = self.params.max_length, self.params.max_repeats
        return [(n, r), (2 * n, r), (n, 2 * r)]

    def largest_training_size(self) -> Size:
        return (self.params.max_length, self.params.max_repeats)

    def training_size(self, generator: torch.Generator, reach: float) -> Size:
        p = self.params
        length = draw(p.min_length, p.max_length, reach, generator)
        return length, draw(p.min_repeats, p.max_repeats, reach, generator)

    def trained(self, size: Size) -> bool:
        p = self.params
        return p.min_length <= size[0] <= p.max_length and p.min_repeats <= size[1] <= p.max_repeats

    def generate(self, count: int, size: Size, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        length, repeats = size
        return repeat_copy_sequences(count, length, repeats, self.params.bits, self.repeats_scale, generator)

    def steps(self, size: Size) -> int:
        return size[0] + 2 + size[0] * size[1] + 1

    def channels(self) -> tuple[int, int]:
        return self.params.bits + 2, self.params.bits + 1

    def describe(self, size: Size) -> str:
        return f"{plural(size[0], 'vector')} of {self.params.bits} bits × {plural(size[1], 'repeat')}"

    def inspect_size(self, options: Any) -> Size:
        return (options.length or self.params.max_length, options.repeats or self.params.max_repeats)
