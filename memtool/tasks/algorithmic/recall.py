"""Associative recall (Graves et al. 2014, Sec. 4.3): read a list of items, each a few random bit vectors
after an item delimiter, then a query item between two query delimiters; answer with the item that
followed the query in the list. Scored at the trained item counts and at longer lists."""

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

MOST_ITEMS = 500


class RecallParams(Strict):
    bits: PositiveInt = 6  # width of each vector
    item_length: int = Field(3, ge=1, le=100)  # vectors per item
    min_items: int = Field(2, ge=2, le=MOST_ITEMS)  # a query needs an item after it
    max_items: int = Field(6, ge=2, le=MOST_ITEMS)
    curriculum: Curriculum | None = None  # item counts up to max_items open over curriculum.sequences

    @model_validator(mode="after")
    def _ordered(self) -> RecallParams:
        if self.min_items > self.max_items:
            raise ValueError(f"min_items {self.min_items} is above max_items {self.max_items}")
        check_curriculum(self.curriculum, self.min_items, self.max_items, "min_items and max_items")
        return self


class RecallEval(Strict):
    # scored item counts; None: the most trained, then 8, 12 and 15 items beyond (the paper's Fig. 11)
    items: list[int] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _two_or_more(self) -> RecallEval:
        if self.items and min(self.items) < 2:
            raise ValueError("each item count must be at least 2: the answer is the item after the query")
        return self


class RecallInspectOptions(StepOption):
    items: int | None = Field(None, ge=2, description="items in the list (default: the most trained)")


def recall_sequences(
    count: int, items: int, item_length: int, bits: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Inputs (count, items·(item_length + 1) + item_length + 2 + item_length, bits + 2): each item is an
    item-delimiter step (channel ``bits``) and its vectors; then the query between two query-delimiter
    steps (channel ``bits + 1``); then blank answer steps. Targets (count, item_length, bits): the item
    after the query, which is any item but the last."""
    stored = random_bits(count, (items, item_length, bits), generator)
    query = torch.randint(0, items - 1, (count,), generator=generator)
    rows = torch.arange(count)
    block = item_length + 1
    listed = items * block
    inputs = torch.zeros(count, listed + item_length + 2 + item_length, bits + 2)
    body = inputs[:, :listed].view(count, items, block, bits + 2)
    body[:, :, 0, bits] = 1.0
    body[:, :, 1:, :bits] = stored
    inputs[:, listed, bits + 1] = 1.0
    inputs[:, listed + 1 : listed + 1 + item_length, :bits] = stored[rows, query]
    inputs[:, listed + 1 + item_length, bits + 1] = 1.0
    return inputs, stored[rows, query + 1]


@register_task("associative_recall")
class RecallTask(RangeSizedTask):
    """Associative recall (NTM paper, Sec. 4.3): a list of items, a query; the item that came next."""

    name = "associative recall"
    Params = RecallParams
    Eval = RecallEval
    InspectOptions = RecallInspectOptions
    scoring = sequence_scoring("per_items", "items")
    params: RecallParams

    eval_field, inspect_field = "items", "items"

    def size_range(self) -> tuple[int, int]:
        return self.params.min_items, self.params.max_items

    def larger_sizes(self, most: int) -> list[int]:
        return [8, 12, 15]

    def generate(self, count: int, size: Size, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return recall_sequences(count, size[0], self.params.item_length, self.params.bits, generator)

    def steps(self, size: Size) -> int:
        k = self.params.item_length
        return size[0] * (k + 1) + k + 2 + k

    def channels(self) -> tuple[int, int]:
        return self.params.bits + 2, self.params.bits

    def describe(self, size: Size) -> str:
        return f"{plural(size[0], 'item')} of {self.params.item_length} × {self.params.bits} bits"
