"""The synthetic video generator: consistent events, frames that show them, captions that say them in
order, and a test split of (colour, shape) pairs that training never shows."""

from __future__ import annotations

import random

import pytest
import torch

from memtool.tasks.video.shapes import (
    COLOURS,
    DIRECTIONS,
    DISTRACTOR_GREY,
    SYNONYMS,
    plan_split,
    plan_video,
    render,
)


def _visible(video, colour: str) -> torch.Tensor:
    """Per frame: the centre (row, col) of the pixels of exactly this colour, or NaN."""
    target = torch.tensor(COLOURS[colour]).view(3, 1, 1)
    centres = []
    for frame in video:
        mask = ((frame - target).abs() < 0.02).all(0)
        centres.append(mask.nonzero().float().mean(0) if mask.any() else torch.full((2,), float("nan")))
    return torch.stack(centres)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("equal_events", [False, True])
def test_events_are_consistent_and_cover_every_frame_in_order(seed: int, equal_events: bool) -> None:
    spec = plan_video(8, 4, 2, random.Random(seed), equal_events=equal_events)
    assert spec.events[0].kind == "appears"
    assert spec.events[0].first == 0 and spec.events[-1].last == 7
    for before, after in zip(spec.events, spec.events[1:], strict=False):
        assert after.first == before.last + 1 and after.first <= after.last
    if equal_events:  # four events on eight frames: two each
        assert [event.last - event.first + 1 for event in spec.events] == [2, 2, 2, 2]
    shown: dict[int, tuple[str, str]] = {}
    for event in spec.events:
        if event.kind == "appears":
            assert event.thing not in shown
            shown[event.thing] = (event.colour, event.shape)
            continue
        assert shown[event.thing] == (event.colour, event.shape)  # the object as it looks now
        if event.kind == "turns":
            shown[event.thing] = (event.detail, event.shape)
        if event.kind == "disappears":
            del shown[event.thing]
        assert shown, "something stays on screen"


@pytest.mark.parametrize("seed", range(20))
def test_the_frames_show_each_event_in_its_segment(seed: int) -> None:
    rng = random.Random(seed)
    spec = plan_video(8, 3, 1, rng)  # one object: its colour alone finds it in the frames
    video = render(spec, 8, 32, rng)
    assert video.shape == (8, 3, 32, 32) and video.min() >= 0 and video.max() <= 1
    for event in spec.events:
        now = _visible(video, event.detail if event.kind == "turns" else event.colour)
        if event.kind == "appears":
            assert not torch.isnan(now[event.first]).any()
        if event.kind == "turns":
            assert not torch.isnan(now[event.first]).any()
            assert torch.isnan(_visible(video, event.colour)[event.first]).all()
        if event.kind == "moves":
            start = now[event.first - 1]
            end = now[event.last]
            direction = torch.tensor(DIRECTIONS[event.detail], dtype=torch.float32)
            assert ((end - start) * direction).sum() > 2  # it went that way, by more than 2 pixels


def test_references_say_the_same_events_in_different_words() -> None:
    rng = random.Random(0)
    spec = plan_video(8, 3, 2, rng)
    captions = spec.captions(3, rng)
    assert len(set(captions)) == 3
    for caption in captions:
        position = 0
        for event in spec.events:
            found = caption.find(f"{event.colour} {event.shape}", position)
            assert found >= position, (caption, event)
            position = found + 1
        words = set(caption.split())
        assert words <= {w for ws in SYNONYMS.values() for phrase in ws for w in phrase.split()} | set(
            COLOURS
        ) | {"a", "the", "square", "circle", "triangle"} | set(DIRECTIONS)


def test_held_out_pairs_never_appear_in_training_and_always_in_test() -> None:
    held_out = {("blue", "triangle"), ("green", "circle")}
    train = plan_split(200, 8, (2, 4), 2, held_out, False, random.Random(1))
    test = plan_split(50, 8, (2, 4), 2, held_out, True, random.Random(2))
    assert all(not (spec.pairs & held_out) for spec in train)
    assert all(spec.pairs & held_out for spec in test)
    seen = set().union(*(spec.pairs for spec in train))
    assert {colour for colour, _ in held_out} <= {c for c, _ in seen}  # each part is seen, apart
    assert {shape for _, shape in held_out} <= {s for _, s in seen}


def test_the_same_seed_draws_the_same_videos() -> None:
    a = render(plan_video(8, 3, 2, random.Random(5)), 8, 32, random.Random(6), noise=0.1)
    b = render(plan_video(8, 3, 2, random.Random(5)), 8, 32, random.Random(6), noise=0.1)
    assert torch.equal(a, b)


def test_equal_event_lengths_differ_by_at_most_one_frame() -> None:
    for frames, events in [(8, 3), (7, 4), (16, 5), (5, 5)]:
        spec = plan_video(frames, events, 2, random.Random(0), equal_events=True)
        lengths = [event.last - event.first + 1 for event in spec.events]
        assert sum(lengths) == frames and max(lengths) - min(lengths) <= 1, (frames, events, lengths)


def test_distractors_are_grey_shapes_that_stand_still_and_leave_the_objects_as_they_were() -> None:
    from memtool.tasks.video.shapes import DISTRACTOR_GREY

    spec = plan_video(8, 3, 2, random.Random(3))
    plain = render(spec, 8, 32, random.Random(5))
    busy = render(spec, 8, 32, random.Random(5), distractors=2)
    grey = (busy == DISTRACTOR_GREY).all(1)  # (frames, H, W): grey in every channel
    assert grey.any() and (grey == grey[0]).all()  # present, and the same pixels in every frame
    coloured = (plain.amax(1, keepdim=True) > 0).expand_as(plain)
    assert torch.equal(busy[coloured], plain[coloured])  # objects are drawn over the distractors
    assert (busy[~(coloured | grey.unsqueeze(1))] == 0).all()  # nothing else is drawn


def test_no_two_objects_on_screen_are_ever_the_same_colour_and_shape() -> None:
    """A turn into a colour another object of its shape has would make "the red square" ambiguous."""
    rng = random.Random(0)
    for _ in range(500):  # two colours: a turn collides whenever the other object has the same shape
        spec = plan_video(8, 6, 2, rng, ("red", "yellow"), shapes=("square", "circle"))
        shown: dict[int, tuple[str, str]] = {}
        for event in spec.events:
            if event.kind == "appears" or event.kind == "turns":
                shown[event.thing] = (event.detail if event.kind == "turns" else event.colour, event.shape)
            if event.kind == "disappears":
                del shown[event.thing]
            assert len(set(shown.values())) == len(shown), spec.events


@pytest.mark.parametrize("seed", range(10))
def test_a_slideshow_shows_one_object_per_segment_above_a_progress_bar(seed: int) -> None:
    rng = random.Random(seed)
    spec = plan_video(8, 4, 2, rng, equal_events=True, slideshow=True)
    assert [(event.first, event.last) for event in spec.events] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert all(event.kind == "appears" for event in spec.events)
    for before, after in zip(spec.events, spec.events[1:], strict=False):
        assert (before.colour, before.shape) != (after.colour, after.shape)
    assert spec.captions(3, rng) == [" ".join(f"{e.colour} {e.shape}" for e in spec.events)]
    video = render(spec, 8, 32, rng)
    bar = (video[:, :, 31] == 1).all(1)  # (frames, columns): white in the bottom row
    assert bar.sum(1).tolist() == [4 * (t + 1) for t in range(8)]
    assert (video[:, :, 30:] > 0).any(1).sum((1, 2)).tolist() == bar.sum(1).tolist()  # no object there
    for event in spec.events:
        colours = {
            tuple(round(v, 2) for v in pixel)
            for t in (event.first, event.last)
            for pixel in video[t, :, :30].flatten(1).T.tolist()
            if any(pixel)
        }
        assert colours == {tuple(round(v, 2) for v in COLOURS[event.colour])}  # this object alone


def test_a_slideshows_distractors_stay_off_the_progress_bar() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        spec = plan_video(8, 8, 2, rng, equal_events=True, slideshow=True)
        video = render(spec, 8, 32, rng, distractors=3)
        assert not (video[:, :, 30:] == DISTRACTOR_GREY).any(), seed
