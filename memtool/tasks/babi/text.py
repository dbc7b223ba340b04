"""The bAbI text format, in any language: Unicode tokenisation and the story/question parser.

Format (one line each): ``ID sentence`` or ``ID question<TAB>answer<TAB>supporting IDs``; the IDs restart
at 1 when a new story starts. Supporting IDs name earlier lines of the same story.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from memtool.errors import UserError

_WORD_CATEGORIES = ("L", "M", "N")  # letters, combining marks (e.g. Devanagari vowel signs), numbers
_separators: dict[int, str] = {}  # code point → " " for every non-word character seen so far
_seen: set[str] = set()


def tokenize(text: str) -> list[str]:
    """Case-folded runs of letters, marks and digits; everything else separates words.

    No language-specific rule: ``Where is Mary?`` → ``["where", "is", "mary"]``, and Hindi, accented or
    letter-shuffled text tokenises the same way.
    """
    new = set(text) - _seen
    if new:
        for char in new:
            if unicodedata.category(char)[0] not in _WORD_CATEGORIES:
                _separators[ord(char)] = " "
        _seen.update(new)
    return text.translate(_separators).casefold().split()


@dataclass
class Question:
    words: list[str]
    answer: str
    supporting: list[int]  # indices into the story's sentences
    sentences_before: int  # how many story sentences precede the question


@dataclass
class Story:
    task: int
    sentences: list[list[str]] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


LINE_ID = re.compile(r"\s*(\d+)\s(.*)")
_TASK_FILE = re.compile(r"qa(\d+)_.*_(train|test)\.txt$")


def parse_lines(lines: Iterable[str], task: int, source: str = "<text>") -> list[Story]:
    """Parse bAbI lines into stories; a malformed line is a UserError naming ``source`` and the line."""
    stories: list[Story] = []
    line_to_sentence: dict[int, int] = {}
    previous_id = 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        match = LINE_ID.match(raw)
        if match is None:
            raise UserError(f"{source}:{number}: expected 'ID text', got {raw.strip()[:60]!r}")
        line_id, text = int(match.group(1)), match.group(2)
        if line_id <= previous_id or not stories:
            if line_id != 1 and not stories:
                raise UserError(f"{source}:{number}: the first story must start at ID 1, got {line_id}")
            stories.append(Story(task))
            line_to_sentence = {}
        previous_id = line_id
        story = stories[-1]
        if "\t" in text:
            parts = text.split("\t")
            if len(parts) < 2 or not parts[1].strip():
                raise UserError(f"{source}:{number}: a question line needs 'question<TAB>answer'")
            try:
                supporting = [line_to_sentence[int(i)] for i in parts[2].split()] if len(parts) > 2 else []
            except (ValueError, KeyError):
                raise UserError(
                    f"{source}:{number}: supporting IDs {parts[2]!r} name no earlier sentence"
                ) from None
            answer = parts[1].strip().casefold()
            story.questions.append(Question(tokenize(parts[0]), answer, supporting, len(story.sentences)))
        elif "?" in text:  # bAbI sentences never ask
            raise UserError(
                f"{source}:{number}: a question needs its answer after a TAB "
                "('ID question?<TAB>answer<TAB>supporting IDs')"
            )
        else:
            line_to_sentence[line_id] = len(story.sentences)
            story.sentences.append(tokenize(text))
    return stories


def find_task_files(directory: Path, split: str) -> dict[int, Path]:
    """``{task number: path}`` of every ``qaN_*_{split}.txt`` in ``directory``."""
    found = {}
    for path in sorted(directory.glob(f"qa*_{split}.txt")):
        match = _TASK_FILE.search(path.name)
        if match:
            found[int(match.group(1))] = path
    return found


def read_task_file(path: Path, task: int) -> list[Story]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read bAbI file: {error}") from None
    return parse_lines(text.splitlines(), task, str(path))
