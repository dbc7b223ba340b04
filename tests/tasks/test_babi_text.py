from pathlib import Path

import pytest

from memtool.errors import UserError
from memtool.tasks.babi.text import find_task_files, parse_lines, tokenize

STORY = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Where is Daniel? \thallway\t4
1 Sandra got the milk there.
2 What is Sandra carrying?\tmilk\t1
""".splitlines()


def test_tokenize_english_drops_punctuation_and_case() -> None:
    assert tokenize("Where is Mary? ") == ["where", "is", "mary"]
    assert tokenize("Mary moved to the bathroom.") == ["mary", "moved", "to", "the", "bathroom"]


def test_tokenize_keeps_combining_marks_and_accents() -> None:
    # Devanagari vowel signs are combining marks (category M): splitting on them would break every word.
    assert tokenize("मैरी बाथरूम में गई।") == ["मैरी", "बाथरूम", "में", "गई"]
    assert tokenize("Ça va, Élodie?") == ["ça", "va", "élodie"]
    assert tokenize("Özge 2 elma aldı") == ["özge", "2", "elma", "aldı"]


def test_parse_splits_stories_and_maps_supporting_ids_to_sentences() -> None:
    stories = parse_lines(STORY, task=1)
    assert len(stories) == 2
    first = stories[0]
    assert first.sentences == [
        ["mary", "moved", "to", "the", "bathroom"],
        ["john", "went", "to", "the", "hallway"],
        ["daniel", "went", "back", "to", "the", "hallway"],
    ]
    assert [q.answer for q in first.questions] == ["bathroom", "hallway"]
    # line 4 is the third *sentence*: question lines are not memories
    assert [q.supporting for q in first.questions] == [[0], [2]]
    assert [q.sentences_before for q in first.questions] == [2, 3]
    assert stories[1].questions[0].words == ["what", "is", "sandra", "carrying"]


def test_parse_reports_file_and_line_of_a_malformed_line() -> None:
    with pytest.raises(UserError, match=r"f\.txt:2: expected 'ID text'"):
        parse_lines(["1 Mary moved.", "Mary moved again."], task=1, source="f.txt")
    with pytest.raises(UserError, match=r"f\.txt:2: supporting IDs"):
        parse_lines(["1 Mary moved.", "2 Where?\tx\t7"], task=1, source="f.txt")


def test_find_task_files_reads_task_numbers(tmp_path: Path) -> None:
    for name in ("qa1_single_train.txt", "qa12_conj_train.txt", "qa1_single_test.txt", "notes.txt"):
        (tmp_path / name).write_text("")
    assert sorted(find_task_files(tmp_path, "train")) == [1, 12]
    assert list(find_task_files(tmp_path, "test")) == [1]
