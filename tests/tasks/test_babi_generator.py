from pathlib import Path

from memtool.tasks.babi.generator import PLACES, generate_split, write_generated
from memtool.tasks.babi.text import find_task_files, parse_lines, read_task_file


def test_same_seed_same_stories_other_seed_other_stories() -> None:
    assert generate_split(2, "train", 5, seed=1) == generate_split(2, "train", 5, seed=1)
    assert generate_split(2, "train", 5, seed=1) != generate_split(2, "train", 5, seed=2)
    assert generate_split(2, "train", 5, seed=1) != generate_split(2, "test", 5, seed=1)


def test_single_fact_answers_are_the_persons_last_place() -> None:
    """Re-derive every task-1 answer from the story text: the generator must never lie."""
    for story in parse_lines(generate_split(1, "train", 30, seed=0), task=1):
        for question in story.questions:
            person = question.words[-1]
            moves = [s for s in story.sentences[: question.sentences_before] if s[0] == person]
            assert moves[-1][-1] == question.answer
            assert story.sentences[question.supporting[0]] == moves[-1]


def test_counting_answers_match_takes_minus_drops() -> None:
    count_words = ["none", "one", "two", "three"]
    for story in parse_lines(generate_split(7, "train", 30, seed=0), task=7):
        for question in story.questions:
            person = question.words[-2]
            held = 0
            for sentence in story.sentences[: question.sentences_before]:
                if sentence[0] == person and sentence[-1] == "there":
                    held += 1
                elif sentence[0] == person and sentence[-1] not in PLACES:
                    held -= 1
            assert count_words[held] == question.answer


def test_written_files_follow_the_babi_layout(tmp_path: Path) -> None:
    write_generated(tmp_path, (1, 8), train_stories=3, test_stories=2, seed=0)
    files = find_task_files(tmp_path, "train")
    assert sorted(files) == [1, 8]
    stories = read_task_file(files[8], 8)
    assert len(stories) == 3 and all(len(s.questions) == 5 for s in stories)
