"""Priority sort (Graves et al. 2014, Sec. 4.5): read random bit vectors, each with a scalar priority
drawn uniformly from [-1, 1], then write the highest-priority ones back, sorted from the highest down.
The paper sorts 20 inputs into 16 outputs; longer lists keep that ratio."""

from __future__ import annotations

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor

from memtool.registry import register_task
from memtool.schema import Strict
from memtool.tasks.algorithmic.sequence import (
    Curriculum,
    RangeSizedTask,
    Size,
    StepOption,
    check_curriculum,
    random_bits,
    sequence_scoring,
)

MOST_INPUTS = 1000


class PrioritySortParams(Strict):
    bits: PositiveInt = 8
    inputs: int = Field(20, ge=1, le=MOST_INPUTS)  # vectors to sort (the most, when min_inputs is set)
    outputs: int = Field(16, ge=1, le=MOST_INPUTS)  # how many of the highest-priority ones to write back
    min_inputs: int | None = Field(None, ge=1, le=MOST_INPUTS)  # None: every list has `inputs` vectors
    curriculum: Curriculum | None = None  # list lengths up to `inputs` open over curriculum.sequences

    def outputs_for(self, inputs: int) -> int:
        """The trained ratio of outputs to inputs, at least one: 30 inputs → 24 after 20 → 16."""
        return max(1, round(inputs * self.outputs / self.inputs))

    @model_validator(mode="after")
    def _sizes(self) -> PrioritySortParams:
        if self.outputs > self.inputs:
            raise ValueError(f"outputs {self.outputs} is above inputs {self.inputs}")
        if self.min_inputs is not None and self.min_inputs > self.inputs:
            raise ValueError(f"min_inputs {self.min_inputs} is above inputs {self.inputs}")
        check_curriculum(
            self.curriculum, self.min_inputs or self.inputs, self.inputs, "min_inputs and inputs"
        )
        return self


class PrioritySortEval(Strict):
    # scored list lengths (outputs keep the trained ratio); None: the trained length, then 1.5× and 2×
    inputs: list[PositiveInt] | None = Field(None, min_length=1)


class PrioritySortInspectOptions(StepOption):
    inputs: PositiveInt | None = Field(None, description="vectors in the list (default: as trained)")


def answer_order(priority: Tensor, outputs: int) -> Tensor:
    """(count, outputs): the inputs the answer returns, highest priority first."""
    return priority.argsort(dim=1, descending=True)[:, :outputs]


def priority_sort_sequences(
    count: int, inputs: int, outputs: int, bits: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Inputs (count, inputs + 1 + outputs, bits + 2): each vector with its priority on channel ``bits``,
    a delimiter step (channel ``bits + 1``), blank answer steps. Targets (count, outputs, bits): the
    ``outputs`` vectors of highest priority, highest first."""
    vectors = random_bits(count, (inputs, bits), generator)
    priority = torch.rand(count, inputs, generator=generator) * 2 - 1
    sequence = torch.zeros(count, inputs + 1 + outputs, bits + 2)
    sequence[:, :inputs, :bits] = vectors
    sequence[:, :inputs, bits] = priority
    sequence[:, inputs, bits + 1] = 1.0
    order = answer_order(priority, outputs)
    targets = vectors.gather(1, order.unsqueeze(2).expand(-1, -1, bits))
    return sequence, targets


@register_task("priority_sort")
class PrioritySortTask(RangeSizedTask):
    """Priority sort (NTM paper, Sec. 4.5): vectors with priorities; the top ones back, in priority order."""

    name = "priority sort"
    Params = PrioritySortParams
    Eval = PrioritySortEval
    InspectOptions = PrioritySortInspectOptions
    scoring = sequence_scoring("per_inputs", "inputs")
    params: PrioritySortParams

    def outputs_for(self, inputs: int) -> int:
        return self.params.outputs_for(inputs)

    eval_field, inspect_field = "inputs", "inputs"

    def size_range(self) -> tuple[int, int]:
        return self.params.min_inputs or self.params.inputs, self.params.inputs

    def larger_sizes(self, most: int) -> list[int]:
        return [most * 3 // 2, 2 * most]

    def generate(self, count: int, size: Size, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return priority_sort_sequences(count, size[0], self.outputs_for(size[0]), self.params.bits, generator)

    def steps(self, size: Size) -> int:
        return size[0] + 1 + self.outputs_for(size[0])

    def channels(self) -> tuple[int, int]:
        return self.params.bits + 2, self.params.bits

    def describe(self, size: Size) -> str:
        return f"{size[0]} vectors of {self.params.bits} bits, the top {self.outputs_for(size[0])} back"
