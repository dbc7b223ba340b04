"""The view of one bAbI question through a memory network: its story, the attention at every hop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class AttentionView:
    """Attention of a multi-hop reader over its memories for one question."""

    title: str
    memories: list[str]  # memory contents, oldest first
    memory_labels: list[str]  # e.g. the sentence's number in the story
    attention: list[list[float]]  # (memories, hops)
    supporting: list[int]  # indices into ``memories`` of the supporting facts
    question: str
    predicted: str
    top_answers: list[tuple[str, float]]
    answer: str | None = None  # None for a user's story with no known answer
    empty_slots: list[float] | None = None  # per hop, attention that went to unused memory slots
    notes: list[str] = field(default_factory=list)
    # what every view has (memtool.views.HeatmapView), for scripts that read any family's --json: unused here
    strips: list[Any] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
