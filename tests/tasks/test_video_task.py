"""The captioning task end to end on tiny generated videos: the regularizer is logged on its own and
off at λ = 0, `eval --json` has the promised keys, and the test split holds the held-out pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import Tensor
from typer.testing import CliRunner

from memtool.cli import app
from memtool.config import build_config
from memtool.engine import train

pytest.importorskip("pycocoevalcap")
SMOKE = Path(__file__).resolve().parent.parent / "smoke" / "captioner-shapes_captions.yaml"


def test_the_regularizer_is_logged_beside_the_caption_loss_and_off_at_lambda_zero(tmp_path: Path) -> None:
    raw = yaml.safe_load(SMOKE.read_text())
    train(build_config(raw), tmp_path / "reg")
    raw["model"]["reg_lambda"] = 0.0
    train(build_config(raw), tmp_path / "noreg")
    with_reg = [json.loads(line) for line in (tmp_path / "reg" / "metrics.jsonl").read_text().splitlines()]
    without = [json.loads(line) for line in (tmp_path / "noreg" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train_attention_reg"] >= 0 for r in with_reg) and "train_word_accuracy" in with_reg[0]
    assert all("train_attention_reg" not in r for r in without)
    assert {"valid_cider", "valid_bleu4", "valid_repeat_rate"} <= set(with_reg[0])

    result = CliRunner().invoke(app, ["eval", str(tmp_path / "reg"), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    assert {"bleu4", "cider", "rouge_l", "repeat_rate", "coverage_error"} <= set(metrics)
    assert 0 <= metrics["repeat_rate"] <= 100 and metrics["coverage_error"] >= 0

    result = CliRunner().invoke(app, ["inspect-memory", str(tmp_path / "reg"), "--json"])
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    frames = raw["task"]["frames"]
    (strip,) = view["strips"]  # the video's frames above the attention grid, one picture per column
    assert len(strip["images"]) == frames == len(view["panels"][0]["columns"])
    size = raw["task"]["size"]
    assert [len(strip["images"][0]), len(strip["images"][0][0]), len(strip["images"][0][0][0])] == [
        size,
        size,
        3,
    ]
    assert set(view["facts"]) >= {"caption", "references", "tau", "regularizer", "coverage_error"}
    attention = view["panels"][0]["values"]
    assert all(abs(sum(row) - 1) < 1e-4 for row in attention)  # every word's attention sums to 1


def test_the_test_split_shows_the_held_out_pairs_and_training_never_does() -> None:
    from memtool.build import build_task

    raw = yaml.safe_load(SMOKE.read_text())
    task = build_task(build_config(raw))
    held_out = [" ".join(pair) for pair in build_config(raw).task.params.held_out]
    train_text = " ".join(c for refs in task.splits["train"].references for c in refs)
    assert not any(pair in train_text for pair in held_out)
    assert all(any(pair in " ".join(refs) for pair in held_out) for refs in task.splits["test"].references)


def test_the_vocabulary_is_the_configured_colours_and_shapes() -> None:
    from memtool.build import build_task
    from memtool.errors import UserError
    from memtool.tasks.video.shapes import COLOURS, SHAPES

    raw = yaml.safe_load(SMOKE.read_text())
    raw["task"].update(colours=["red", "yellow"], shapes=["circle", "square"], held_out=[["red", "circle"]])
    task = build_task(build_config(raw))
    said = set(task.vocabulary.words)
    assert said & set(COLOURS) == {"red", "yellow"} and said & set(SHAPES) == {"circle", "square"}
    # unless given, held_out is the default pairs the vocabulary has: here green circle alone
    assert build_config(
        {**raw, "task": {"name": "shapes_captions", "colours": ["red", "green"]}}
    ).task.params.held_out == [("green", "circle")]
    for wrong, named in (
        ({"colours": ["red", "pink"]}, "'pink' is not one of"),
        (
            {"colours": ["red", "yellow"], "held_out": [["blue", "triangle"]]},
            "held_out: (blue, triangle) is no pair",
        ),
        ({"colours": ["red", "green"], "shapes": ["circle"], "held_out": [], "max_objects": 3}, "only 2"),
        (
            {
                "colours": ["red", "green"],
                "shapes": ["circle"],
                "held_out": [["red", "circle"], ["green", "circle"]],
            },
            "all 2",
        ),
    ):
        raw = yaml.safe_load(SMOKE.read_text())
        raw["task"].update(wrong)
        with pytest.raises(UserError) as caught:
            build_config(raw)
        assert "task" in str(caught.value) and named in str(caught.value), str(caught.value)


def test_a_seen_pairs_test_split_draws_fresh_videos_without_the_held_out_pairs() -> None:
    from memtool.build import build_task

    raw = yaml.safe_load(SMOKE.read_text())
    raw.setdefault("data", {})["test_pairs"] = "seen"
    task = build_task(build_config(raw))
    held_out = [" ".join(pair) for pair in build_config(raw).task.params.held_out]
    test = [" ".join(refs) for refs in task.splits["test"].references]
    assert not any(pair in text for pair in held_out for text in test)
    assert test != [" ".join(refs) for refs in task.splits["valid"].references]  # not the valid split again


class _FixedCaptioner(torch.nn.Module):
    """Writes one fixed caption with fixed attention, whatever the video."""

    def __init__(self, words: list[int], peaks: list[int], frames: int) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # caption_view asks for the model's device
        self.words = torch.tensor([words])
        self.alphas = torch.nn.functional.one_hot(torch.tensor([peaks]), frames).float()

    def generate(self, frames: Tensor, mask: Tensor, max_words: int, beam_size: int) -> tuple[Tensor, Tensor]:
        return self.words, self.alphas


def test_inspect_says_where_a_repeated_word_and_its_earlier_mention_looked() -> None:
    from memtool.tasks.video.captioning import CaptionEval, caption_view
    from memtool.tasks.video.data import EOS, Vocabulary

    vocabulary = Vocabulary.build(["a red square appears then the square moves left"])
    caption = "a red square appears then the square moves left the square"
    ids = [*vocabulary.encode(caption), EOS]
    # the third "square" (word 11) looks at frame 2 as the second (word 7) did; the second moved on
    peaks = [0, 0, 0, 0, 1, 2, 2, 2, 2, 3, 2, 3]
    model = _FixedCaptioner(ids, peaks, frames=4)
    references = ["a red square appears then the red square moves left"]
    view = caption_view(model, torch.zeros(4, 3, 8, 8), references, "t", vocabulary, CaptionEval())
    (repeat,) = view.facts["repeats"]
    assert view.facts["repeated_words"] == ["square"]  # the ✗ marks: the same words as the repeats
    marked = [(r, c) for r, row in enumerate(view.panels[0].marks) for c, mark in enumerate(row) if mark]
    assert marked == [(10, 2)]  # one ✗: the repeat, on the frame it looked at
    assert repeat == {"word": "square", "position": 10, "frame": 2, "earlier_position": 6, "earlier_frame": 2}
    assert (
        "repeat: 'square' (word 11) read frame 3, its earlier mention (word 7) frame 3: the same frame"
        in (view.notes)
    )


def test_flat_attention_places_no_word_and_a_clip_without_references_has_no_repeats() -> None:
    from memtool.tasks.video.captioning import CaptionEval, attention_peaks, caption_view
    from memtool.tasks.video.data import EOS, Vocabulary
    from memtool.tasks.video.shapes_task import ShapesCaptionTask

    flat = torch.full((1, 3, 4), 0.25)  # mean pooling's attention: no frame stands out
    peaked = torch.tensor([[[0.1, 0.6, 0.2, 0.1], [0.3, 0.3, 0.2, 0.2], [0.0, 0.0, 0.0, 1.0]]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert attention_peaks(flat, mask) == [[None, None, None]]
    assert attention_peaks(peaked, mask) == [[1, None, 3]]  # 0.3 is under 2 / 4 frames
    two_real = torch.tensor([[True, True, False, False]])  # padded frames: a share is 1 / 2
    assert attention_peaks(torch.tensor([[[0.6, 0.4, 0.0, 0.0]]]), two_real) == [[None]]

    vocabulary = Vocabulary.build(["a red square shows up then the square appears"])
    caption = "a red square shows up then the square appears"
    model = _FixedCaptioner([*vocabulary.encode(caption), EOS], [0, 0, 0, 1, 1, 2, 3, 3, 1, 3], frames=4)
    view = caption_view(model, torch.zeros(4, 3, 8, 8), [], "t", vocabulary, CaptionEval())
    assert view.facts["repeats"] == [] and not any(note.startswith("repeat:") for note in view.notes)

    # "appears" said again as "shows up" did: reported as the word both stand for, at the phrase's start
    view = caption_view(
        model,
        torch.zeros(4, 3, 8, 8),
        ["a red square appears"],
        "t",
        vocabulary,
        CaptionEval(),
        ShapesCaptionTask.synonyms,
    )
    assert [(r["word"], r["position"], r["earlier_position"]) for r in view.facts["repeats"]] == [
        ("square", 7, 2),
        ("appears", 8, 3),
    ]
    assert (
        "repeat: 'appears' (word 9) read frame 2, its earlier mention (word 4) frame 2: the same frame"
        in (view.notes)
    )

    # with flat attention (mean pooling's) no frame stands out: the ✗ runs along the repeat's row, as its
    # note says "no one frame", not on whichever frame an argmax tie picks
    model.alphas = torch.full_like(model.alphas, 0.25)
    view = caption_view(
        model, torch.zeros(4, 3, 8, 8), ["a red square appears"], "t", vocabulary, CaptionEval()
    )
    marks = view.panels[0].marks
    assert marks is not None and marks[7] == [True] * 4 and not any(marks[2])
    assert any("repeat: 'square' (word 8) read no one frame" in note for note in view.notes)


def test_inspect_measures_coverage_against_the_runs_own_tau_and_weighs_the_penalty_by_lambda() -> None:
    from memtool.tasks.video.captioning import CaptionEval, caption_view
    from memtool.tasks.video.data import EOS, Vocabulary

    vocabulary = Vocabulary.build(["a red square appears"])
    # 5 written words (4 and <eos>) on 4 frames, attention on frames 1, 1, 2, 3, 3 (0-based 0, 0, 1, 2, 2)
    model = _FixedCaptioner([*vocabulary.encode("a red square appears"), EOS], [0, 0, 1, 2, 2], frames=4)
    model.regularizer = (0.5, 2.0)  # what a run trained with reg_lambda=0.5, reg_tau=2.0 holds
    view = caption_view(model, torch.zeros(4, 3, 8, 8), [], "t", vocabulary, CaptionEval())
    # coverage 2, 1, 2, 0 against τ = 2: gaps 0, 1, 0, 2
    assert view.facts["tau"] == 2.0 and view.facts["coverage_error"] == pytest.approx(3.0)
    assert view.facts["penalty"] == pytest.approx(5.0) and view.facts["regularizer"] == pytest.approx(2.5)
    model.regularizer = (0.0, None)  # λ = 0 (or mean pooling), τ = auto: 5 words / 4 frames
    view = caption_view(model, torch.zeros(4, 3, 8, 8), [], "t", vocabulary, CaptionEval())
    assert view.facts["tau"] == 1.25 and view.facts["regularizer"] == 0.0
    assert view.facts["coverage_error"] == pytest.approx(0.75 + 0.25 + 0.75 + 1.25)


def test_settings_that_leave_no_training_videos_to_draw_are_one_user_error() -> None:
    from memtool.build import build_task
    from memtool.errors import UserError

    raw = yaml.safe_load(SMOKE.read_text())
    # one pair left for training and 16 events: a video must avoid turning red 15 times running
    raw["task"].update(
        colours=["red", "yellow"], shapes=["square"], held_out=[["red", "square"]], frames=16, min_events=16
    )
    raw["task"]["max_events"] = 16
    raw.setdefault("data", {}).update(train_videos=5)
    with pytest.raises(UserError, match="task: train split: could not draw 5 videos"):
        build_task(build_config(raw))


def test_a_caption_cut_by_the_length_limit_says_so() -> None:
    from memtool.tasks.video.captioning import CaptionEval, caption_view
    from memtool.tasks.video.data import EOS, Vocabulary

    vocabulary = Vocabulary.build(["a red square appears"])
    cut = _FixedCaptioner(vocabulary.encode("a red square"), [0, 1, 2], frames=4)  # no <eos>: the limit hit
    view = caption_view(cut, torch.zeros(4, 3, 8, 8), [], "t", vocabulary, CaptionEval(max_words=3))
    assert view.notes[0] == "caption: a red square (stopped at eval.max_words = 3, before <eos>)"
    ended = _FixedCaptioner([*vocabulary.encode("a red square"), EOS], [0, 1, 2, 3], frames=4)
    view = caption_view(ended, torch.zeros(4, 3, 8, 8), [], "t", vocabulary, CaptionEval())
    assert view.notes[0] == "caption: a red square"
