"""scripts/coverage_oracle.py's event oracle, on a caption worked out by hand."""

from __future__ import annotations

import random
from types import ModuleType

import pytest

from memtool.tasks.video.shapes import Event, VideoSpec
from tests.helpers import load_script


@pytest.fixture(scope="module")
def oracle() -> ModuleType:
    return load_script("coverage_oracle")


# frames 0-1: a red square appears; frames 2-5: it moves left
VIDEO = VideoSpec(
    [Event("appears", 0, "red", "square", None, 0, 1), Event("moves", 0, "red", "square", "left", 2, 5)]
)
CAPTION = "a red square shows up and then the red square slides left"  # 5 + 2 + 5 words


def test_each_word_looks_at_its_own_events_frames(oracle: ModuleType) -> None:
    coverage = oracle.oracle_coverage(VIDEO, CAPTION, 6, connective_before=False, eos_even=False)
    # 5 words over frames 0-1; 2 connective + 5 words + <eos> = 8 over frames 2-5
    assert coverage == pytest.approx([2.5, 2.5, 2, 2, 2, 2])


def test_connectives_may_go_back_and_eos_spread_evenly(oracle: ModuleType) -> None:
    coverage = oracle.oracle_coverage(VIDEO, CAPTION, 6, connective_before=True, eos_even=True)
    # 5 + 2 words over frames 0-1, 5 over frames 2-5, and 1/6 everywhere for <eos>
    assert coverage == pytest.approx(
        [3.5 + 1 / 6, 3.5 + 1 / 6, 1.25 + 1 / 6, 1.25 + 1 / 6, 1.25 + 1 / 6, 1.25 + 1 / 6]
    )


def test_a_caption_of_other_events_is_refused(oracle: ModuleType) -> None:
    with pytest.raises(ValueError, match="none of"):
        oracle.oracle_coverage(VIDEO, "a blue circle appears", 6, connective_before=False, eos_even=False)


def test_on_an_even_slideshow_correct_attention_is_uniform_coverage(oracle: ModuleType) -> None:
    """Two objects over four frames, "red square blue circle" and <eos>: τ = 5 / 4 on every frame."""
    show = VideoSpec(
        [Event("appears", 0, "red", "square", None, 0, 1), Event("appears", 1, "blue", "circle", None, 2, 3)],
        slideshow=True,
    )
    caption = show.captions(3, random.Random(0))
    assert caption == ["red square blue circle"]
    even = oracle.oracle_coverage(show, caption[0], 4, connective_before=False, eos_even=True)
    assert even == pytest.approx([5 / 4] * 4)
    last = oracle.oracle_coverage(show, caption[0], 4, connective_before=False, eos_even=False)
    assert last == pytest.approx([1, 1, 1.5, 1.5])
    with pytest.raises(ValueError, match="none of"):
        oracle.oracle_coverage(show, "blue circle red square", 4, connective_before=False, eos_even=True)
