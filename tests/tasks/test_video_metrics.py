"""Caption metrics: the COCO scorers on captions tokenised in Python, and the repeated-word rate that
counts a word only when it is said more often than any reference says it."""

from __future__ import annotations

import math

import pytest

from memtool.tasks.video.metrics import (
    caption_scores,
    excess_words,
    repeat_metrics,
    repeat_rate,
    repeats_a_word,
)

pytest.importorskip("pycocoevalcap")

REFERENCES = [
    ["a red square moves to the left", "a red square slides left"],
    ["a blue circle bounces up", "a blue circle jumps up"],
    ["a green triangle appears", "a green triangle shows up"],
]


def test_captions_equal_to_a_reference_score_full_bleu_and_rouge() -> None:
    perfect = caption_scores([refs[0] for refs in REFERENCES], REFERENCES)
    assert perfect["bleu1"] == pytest.approx(1.0) and perfect["bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert perfect["rouge_l"] == pytest.approx(1.0)
    assert perfect["cider"] > 3  # CIDEr-D is × 10 and idf-weighted over this set


def test_a_stuttering_or_wrong_caption_scores_lower_on_every_metric() -> None:
    good = caption_scores([refs[0] for refs in REFERENCES], REFERENCES)
    stutter = caption_scores(
        ["a red red red square square moves", "a blue circle bounces up", "a green triangle appears"],
        REFERENCES,
    )
    wrong = caption_scores(["a blue circle", "a red square", "a yellow circle"], REFERENCES)
    for metric in ("bleu4", "rouge_l", "cider"):
        assert stutter[metric] < good[metric] and wrong[metric] < good[metric], metric
    assert set(good) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}


def test_an_empty_caption_is_scored_not_crashed() -> None:
    scores = caption_scores(["", "a blue circle bounces up", "a green triangle appears"], REFERENCES)
    assert 0 < scores["bleu1"] < 1


def test_a_repeat_counts_only_beyond_what_the_references_say() -> None:
    references = ["the red square moves left then the red square moves right"]
    assert not repeats_a_word("the red square moves left then the red square moves right", references)
    assert repeats_a_word("the red square moves left then the red red square moves right", references)
    assert repeats_a_word("a red red square", ["a red square"])
    assert not repeats_a_word("a red square and a blue square", ["a red square and a blue square"])
    assert not repeats_a_word("the square and the circle", ["a square"])  # "the" is no content word
    assert repeat_rate(["a red red square", "a red square"], [["a red square"], ["a red square"]]) == 50.0
    # a caption counts once, however many words it repeats; where words looked does not matter
    captions = [
        ["a", "red", "red", "square", "square"],
        ["a", "red", "square"],
        ["a", "square", "a", "square"],
    ]
    peaks = [[0, 1, 1, 2, 2], [0, 1, 2], [None] * 4]
    refs = [["a red square"]] * 3
    assert repeat_metrics(captions, refs, peaks)["repeat_rate"] == pytest.approx(200 / 3)
    assert repeat_rate([" ".join(words) for words in captions], refs) == pytest.approx(200 / 3)
    flags = excess_words(["a", "red", "red", "square", "a", "square"], ["a red square"])
    assert flags == [False, False, True, False, False, True]  # the second "red" and the second "square"


def test_a_paraphrase_in_the_references_is_no_repeat_in_the_caption() -> None:
    from memtool.tasks.video.shapes_task import ShapesCaptionTask

    synonyms = ShapesCaptionTask.synonyms
    references = ["a red square appears then a blue circle shows up"]
    caption = "a red square appears then a blue circle appears"
    assert repeats_a_word(caption, references)  # word by word, "appears" comes twice against once
    assert not repeats_a_word(caption, references, synonyms)  # both mean the same event kind
    assert repeats_a_word("a red square appears then a red square shows up", references, synonyms)
    caption_words = ["a", "red", "circle", "shows", "up", "then", "it", "shows", "up"]
    flags = excess_words(caption_words, ["a red circle appears"], synonyms)
    assert flags == [False, False, False, False, False, False, False, True, False]  # on "shows" only


def test_the_shape_references_never_repeat_against_each_other_when_paraphrases_count_as_one() -> None:
    from memtool.tasks.video.data import generate_shapes
    from memtool.tasks.video.shapes_task import ShapesCaptionTask

    _, captions = generate_shapes(40, 8, 16, (2, 4), 2, set(), False, 3, 0.0, seed=0)
    pairs = [(refs[i], refs[:i] + refs[i + 1 :]) for refs in captions for i in range(len(refs))]
    word_by_word = sum(repeats_a_word(c, others) for c, others in pairs)
    canonical = sum(repeats_a_word(c, others, ShapesCaptionTask.synonyms) for c, others in pairs)
    assert word_by_word > 0 and canonical == 0  # the references' own "repeats" were paraphrase alone


def test_repeat_metrics_tells_a_repeat_read_from_the_same_frame_from_a_re_mention_read_later() -> None:
    references = [["a red square appears then the red square moves left"]]
    # "red" again is allowed (the reference says it twice), "square" said a third time is a repeat
    caption = [
        "a",
        "red",
        "square",
        "appears",
        "then",
        "the",
        "red",
        "square",
        "moves",
        "left",
        "the",
        "square",
    ]
    peaks = [[0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 0, 4]]
    # position 11 ("square", the repeat) peaks on frame 4, as its previous mention at 7 did
    shares = repeat_metrics([caption], references, peaks)
    assert shares["repeat_same_frame"] == 100.0
    assert shares["mention_same_frame"] == 0.0  # "red" and "square" again, read at frame 4, not 0

    stared = [[0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 0, 0]]  # the second mention stays on the first event's frame
    shares = repeat_metrics([caption], references, stared)
    assert shares["mention_same_frame"] == 100.0
    assert shares["repeat_same_frame"] == 100.0
    moved = [[0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 0, 6]]
    assert repeat_metrics([caption], references, moved)["repeat_same_frame"] == 0.0


def test_repeat_metrics_is_nan_without_repeats() -> None:
    shares = repeat_metrics([["a", "red", "square"]], [["a red square"]], [[0, 1, 1]])
    assert math.isnan(shares["repeat_same_frame"]) and math.isnan(shares["mention_same_frame"])


def test_repeat_metrics_leaves_out_words_without_a_peak() -> None:
    references = [["a red square appears"]]
    caption = ["a", "red", "square", "appears", "the", "square"]
    assert repeat_metrics([caption], references, [[0, 0, 1, 1, 0, 1]])["repeat_same_frame"] == 100.0
    unplaced = repeat_metrics([caption], references, [[0, 0, 1, 1, 0, None]])
    assert math.isnan(unplaced["repeat_same_frame"])
