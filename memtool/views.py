"""What ``inspect-memory`` shows, as plain data.

Tasks build views, the renderer draws them, ``--json`` dumps them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class InspectRequest:
    split: str = "test"
    example: int = 0  # index among the split's examples (of ``group``, when given)
    group: int | None = None  # e.g. a bAbI task number
    story: Path | None = None  # a user-written story to run the model on
    question: str | None = None


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
