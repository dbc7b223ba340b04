"""bAbI stories as tensors: encoded once, stories shared by questions stored once, and each batch a gather
from them with its padding trimmed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from memtool.tasks.babi.text import Story
from memtool.tasks.base import Batch

NIL = "<nil>"  # word 0: padding, and the id of any word the vocabulary has not seen


@dataclass
class Split:
    """One split as tensors. Sentences of every story are stacked once; a question's memory is the window
    ``sentences[memory_end - memory_count : memory_end]``, so stories shared by questions are stored once."""

    sentences: Tensor  # (sentences + 1, words); row 0 is the blank padding sentence
    sentence_lengths: Tensor  # (sentences + 1,)
    memory_end: Tensor  # (questions,)
    memory_count: Tensor  # (questions,)
    story_start: Tensor  # (questions,) the row of the question's story's first sentence
    questions: Tensor  # (questions, words)
    question_lengths: Tensor  # (questions,)
    answers: Tensor  # (questions,)
    tasks: Tensor  # (questions,) bAbI task number
    supporting: Tensor  # (questions, facts): memory-window index of each supporting fact, -1 for none
    unknown_words: int  # tokens that mapped to the nil word

    def __len__(self) -> int:
        return int(self.answers.shape[0])

    def fields(self) -> dict[str, Any]:
        """Every field by name, the tensors not copied (``dataclasses.asdict`` would deep-copy them)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def select(self, rows: Tensor) -> Split:
        per_question = (
            "memory_end",
            "memory_count",
            "story_start",
            "questions",
            "question_lengths",
            "answers",
            "tasks",
            "supporting",
        )
        values = self.fields()
        values.update({name: values[name][rows] for name in per_question})
        return Split(**values)

    def to(self, device: torch.device) -> Split:
        return Split(**{k: v.to(device) if isinstance(v, Tensor) else v for k, v in self.fields().items()})


class Vocabulary:
    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}

    @classmethod
    def build(cls, stories: Sequence[Story]) -> Vocabulary:
        seen: set[str] = set()
        for story in stories:
            for sentence in story.sentences:
                seen.update(sentence)
            for question in story.questions:
                seen.update(question.words)
                seen.add(question.answer)
        seen.discard(NIL)
        return cls([NIL, *sorted(seen)])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.index.get(word, 0) for word in words]

    def unknown(self, words: Sequence[str]) -> list[str]:
        return [word for word in words if word not in self.index]


def _pad(rows: list[list[int]], width: int | None = None) -> Tensor:
    """Right-pad with the nil word into one (rows, longest) tensor, built in a single call."""
    width = max([len(row) for row in rows] + [1]) if width is None else width
    if not rows:
        return torch.zeros(0, width, dtype=torch.long)
    return torch.tensor([row + [0] * (width - len(row)) for row in rows], dtype=torch.long)


def tensorise(stories: Sequence[Story], vocab: Vocabulary, memory_size: int) -> Split:
    """Encode stories once; every later batch is a gather from these tensors."""
    sentences: list[list[int]] = [[]]
    ends, counts, starts, questions, answers, tasks, supporting = [], [], [], [], [], [], []
    unknown = 0
    for story in stories:
        first_row = len(sentences)
        for sentence in story.sentences:
            encoded = vocab.encode(sentence)
            unknown += encoded.count(0)
            sentences.append(encoded)
        for question in story.questions:
            count = min(question.sentences_before, memory_size)
            start = question.sentences_before - count
            ends.append(first_row + question.sentences_before)
            counts.append(count)
            starts.append(first_row)
            encoded = vocab.encode(question.words)
            unknown += encoded.count(0)
            questions.append(encoded)
            answers.append(vocab.index.get(question.answer, 0))
            tasks.append(story.task)
            supporting.append([s - start if s >= start else -1 for s in question.supporting])
    facts = max([len(s) for s in supporting] + [1])
    support = _pad([row + [-1] * (facts - len(row)) for row in supporting], width=facts)
    sentence_tensor = _pad(sentences)
    question_tensor = _pad(questions)
    return Split(
        sentences=sentence_tensor,
        sentence_lengths=torch.tensor(
            [len(sentence) for sentence in sentences], dtype=torch.long
        ),  # unknown words count too
        memory_end=torch.tensor(ends, dtype=torch.long),
        memory_count=torch.tensor(counts, dtype=torch.long),
        story_start=torch.tensor(starts, dtype=torch.long),
        questions=question_tensor,
        question_lengths=torch.tensor([len(q) for q in questions], dtype=torch.long),
        answers=torch.tensor(answers, dtype=torch.long),
        tasks=torch.tensor(tasks, dtype=torch.long),
        supporting=support,
        unknown_words=unknown,
    )


def memory_windows(split: Split, rows: Tensor, slots: int | None = None) -> Tensor:
    """The sentence rows of each question's memory, (questions, its longest memory); padding slots read
    the blank row 0."""
    count = split.memory_count[rows]
    slots = slots or max(int(count.max()), 1)
    offsets = torch.arange(slots, device=count.device)
    window = split.memory_end[rows].unsqueeze(1) - count.unsqueeze(1) + offsets
    return torch.where(offsets < count.unsqueeze(1), window, 0)


def padding_sizes(split: Split) -> Tensor:
    """(questions, 3) on the host: each question's memory count, its memory's longest sentence and its
    question's length. Read from the device once, so that trimming a batch's padding never waits for it."""
    if len(split) == 0:
        return torch.zeros(0, 3, dtype=torch.long)
    everyone = torch.arange(len(split), device=split.memory_count.device)
    longest = split.sentence_lengths[memory_windows(split, everyone)].amax(1)
    return torch.stack([split.memory_count, longest, split.question_lengths], 1).cpu()


def batch_from_split(split: Split, rows: Tensor, trim: Sequence[int] | None = None) -> Batch:
    """Gather the memory windows of ``rows`` and trim padding to this batch's longest story and sentence;
    ``trim`` gives those (slots, words, question words) from the host (``padding_sizes``), so that the
    batch is built without waiting for the device."""
    count = split.memory_count[rows]
    if trim is not None:
        slots, words, question_words = (max(int(v), 1) for v in trim)
        window = memory_windows(split, rows, slots)
    else:
        window = memory_windows(split, rows)
        words = max(int(split.sentence_lengths[window].max()), 1)
        question_words = max(int(split.question_lengths[rows].max()), 1)
    return Batch(
        inputs={
            "story": split.sentences[window, :words],
            "memory_count": count,
            "question": split.questions[rows, :question_words],
        },
        targets=split.answers[rows],
    )
