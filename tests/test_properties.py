"""Property-based tests: whatever a user types or a file holds, the answer is a result or one
``UserError`` line, never another exception."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memtool.config import build_config
from memtool.errors import UserError
from memtool.task_options import parse_task_options
from memtool.tasks.babi.task import BabiInspectOptions
from memtool.tasks.babi.text import parse_lines
from tests.helpers import tiny_config

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# bAbI-shaped lines: an ID, words, maybe a question with TAB-separated answer and supporting IDs
ids = st.integers(min_value=-2, max_value=12).map(str) | st.text(max_size=3)
words = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
babi_line = st.one_of(
    st.builds(lambda i, w: f"{i} {w}", ids, words),
    st.builds(
        lambda i, w, a, s: f"{i} {w}?\t{a}\t{s}", ids, words, words, st.text("0123456789 x", max_size=8)
    ),
    words,
)


@SETTINGS
@given(st.lists(babi_line, max_size=12))
def test_the_babi_parser_returns_stories_or_one_user_error(lines: list[str]) -> None:
    try:
        stories = parse_lines(lines, task=1, source="f.txt")
    except UserError as error:
        assert "\n" not in str(error) and str(error).startswith("f.txt:")
        return
    for story in stories:
        for question in story.questions:
            assert all(0 <= s < len(story.sentences) for s in question.supporting)
            assert question.sentences_before <= len(story.sentences)


# not `imports`: random module names would import whatever the standard library has under that name
keys = st.sampled_from(
    [
        "train.lr", "train.optimizer", "train.optimizer.momentum", "train.start_phase", "train.clip_value",
        "model.hops", "model.embedding_dim", "model.match", "task.tasks", "task.memory_size", "data.source",
        "data.generator.train_stories", "seed", "device", "eval", "train", "model.name", "x.y",
    ]
)  # fmt: skip
values = st.one_of(
    st.text(max_size=20),
    st.integers(min_value=-5, max_value=10**12).map(str),
    st.floats(allow_nan=True).map(str),
    st.sampled_from(["[]", "[0]", "{}", "{name: adam}", "null", "true", "[1, 2", "&a [*a]", "{a: 1, a: 2}"]),
)


@SETTINGS
@given(
    st.lists(st.one_of(st.builds(lambda k, v: f"{k}={v}", keys, values), st.text(max_size=20)), max_size=3)
)
def test_config_overrides_give_a_config_or_one_user_error(assignments: list[str]) -> None:
    try:
        config = build_config(tiny_config(), assignments, source="c.yaml")
    except UserError as error:
        assert "\n" not in str(error)
        return
    assert build_config(config.to_dict()).to_dict() == config.to_dict()  # what it resolved loads again


option_words = st.lists(
    st.one_of(st.sampled_from(["--task", "--story", "--question", "--bogus", "--task=3", "--", "-x"]), words),
    max_size=6,
)


@SETTINGS
@given(option_words)
def test_task_options_parse_or_give_one_user_error(argv: list[str]) -> None:
    try:
        parse_task_options(argv, BabiInspectOptions, "inspect-memory")
    except UserError as error:
        assert "\n" not in str(error)
