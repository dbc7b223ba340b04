"""Video captioning on synthetic shape videos (generated, seeded): one caption per video, scored with
BLEU-1..4, ROUGE-L and CIDEr-D against every reference, the repeated-word rate and the attention's
coverage error.

The test split shows (colour, shape) pairs that no training video shows, so a model must read the frames
rather than recall captions (``data.test_pairs: seen`` draws it from the training distribution instead).
Validation comes from the training distribution and picks ``best.pt`` by CIDEr-D.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from memtool.cache import cached
from memtool.errors import UserError
from memtool.registry import register_task
from memtool.schema import Seed, Strict
from memtool.tasks.video import data as video_data
from memtool.tasks.video import shapes as shapes_generator
from memtool.tasks.video.captioning import CaptionInspectOptions, CaptionTask
from memtool.tasks.video.data import CaptionSplit, Vocabulary, generate_shapes, tensorise
from memtool.tasks.video.shapes import COLOURS, SHAPES, SYNONYMS

GENERATOR_CODE = (shapes_generator, video_data)  # the cache's entries change with this code
DEFAULT_HELD_OUT = (("blue", "triangle"), ("green", "circle"))


class ShapesParams(Strict):
    frames: int = Field(8, ge=2, le=64)  # frames per video
    size: int = Field(32, ge=16, le=128)  # frame height and width in pixels
    min_events: int = Field(2, ge=1, le=16)
    max_events: int = Field(4, ge=1, le=16)
    max_objects: int = Field(2, ge=1, le=4)  # objects on screen at once
    # the vocabulary's colours and shapes, from those the generator draws (the default: all of them)
    colours: list[str] = Field(default_factory=lambda: list(COLOURS), min_length=2)
    shapes: list[str] = Field(default_factory=lambda: list(SHAPES), min_length=1)
    # (colour, shape) pairs only the test split shows; by default those of DEFAULT_HELD_OUT in the vocabulary
    held_out: list[tuple[str, str]] = Field(default_factory=lambda: list(DEFAULT_HELD_OUT))
    references: int = Field(3, ge=1, le=20)  # reference captions per video
    noise: float = Field(0.05, ge=0, le=1)  # uniform pixel noise, a distractor
    distractors: int = Field(0, ge=0, le=8)  # grey shapes standing still in every frame, never mentioned
    max_words: int = Field(40, ge=2, le=200)  # longer captions are cut here
    # random: events last random runs of frames (a colour change may take one frame of eight); equal: as
    # even as the frames allow, nearer to where uniform coverage (the regularizer's τ = auto) is right
    event_lengths: Literal["random", "equal"] = "random"
    # events: shapes appear, move, turn and disappear, told with synonyms and connectives; slideshow: one
    # object per event, each replacing the last, named in order ("red square green circle"), a progress
    # bar in the bottom row; with equal event lengths, uniform coverage is exactly the right attention
    layout: Literal["events", "slideshow"] = "events"

    @model_validator(mode="before")
    @classmethod
    def _default_held_out_within_the_vocabulary(cls, data: Any) -> Any:
        """Unless held_out is given, the default pairs whose colour and shape the vocabulary has: a
        smaller vocabulary (task.colours, task.shapes) needs no held_out of its own."""
        if isinstance(data, dict) and "held_out" not in data:
            colours, shapes = data.get("colours", list(COLOURS)), data.get("shapes", list(SHAPES))
            if isinstance(colours, list) and isinstance(shapes, list):
                held = [pair for pair in DEFAULT_HELD_OUT if pair[0] in colours and pair[1] in shapes]
                data = {**data, "held_out": held}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ShapesParams:
        if self.min_events > self.max_events:
            raise ValueError(f"min_events {self.min_events} is above max_events {self.max_events}")
        if self.max_events > self.frames:
            raise ValueError(
                f"max_events {self.max_events} needs at least as many frames (got {self.frames})"
            )
        for name, chosen, known in (("colours", self.colours, COLOURS), ("shapes", self.shapes, SHAPES)):
            unknown = [value for value in chosen if value not in known]
            if unknown:
                raise ValueError(f"{name}: {unknown[0]!r} is not one of {', '.join(known)}")
            if len(set(chosen)) != len(chosen):
                raise ValueError(f"{name}: {chosen} names one twice")
        colours, shapes = ", ".join(self.colours), ", ".join(self.shapes)
        for colour, shape in self.held_out:
            if colour not in self.colours or shape not in self.shapes:
                raise ValueError(
                    f"held_out: ({colour}, {shape}) is no pair of a colour in {colours} "
                    f"and a shape in {shapes} (hold out pairs of these, or none: held_out: [])"
                )
        pairs = len(self.colours) * len(self.shapes)
        if len({tuple(pair) for pair in self.held_out}) >= pairs:
            raise ValueError(
                f"held_out holds all {pairs} (colour, shape) pairs: training videos would show none"
            )
        if pairs < self.max_objects:  # objects on screen at once differ in colour or shape
            raise ValueError(
                f"max_objects {self.max_objects}: {colours} and {shapes} make only {pairs} objects"
            )
        return self


class ShapesData(Strict):
    train_videos: int = Field(2000, ge=1, le=200_000)
    valid_videos: int = Field(200, ge=1, le=20_000)
    test_videos: int = Field(200, ge=1, le=20_000)
    seed: Seed | None = None  # None: the run's seed
    # held_out: every test video shows a held-out pair (composition); seen: none does, fresh videos of the
    # training distribution, so that errors of attention are not mixed with errors of composition
    # (`memtool eval RUN --set data.test_pairs=seen`)
    test_pairs: Literal["held_out", "seen"] = "held_out"


class ShapesInspectOptions(CaptionInspectOptions):
    video: Path | None = Field(
        None,
        description="caption your own clip: a .npy of frames (K, 3, H, W) or (K, H, W, 3), uint8 or "
        "floats in [0, 1], H and W the run's image size",
    )


@register_task("shapes_captions")
class ShapesCaptionTask(CaptionTask):
    """Captioning synthetic videos of coloured shapes whose events happen in order (generated, seeded)."""

    Params = ShapesParams
    InspectOptions = ShapesInspectOptions
    Data = ShapesData
    video_noun = "shape video"
    synonyms: ClassVar[dict[str, str]] = {
        variant: word for word, variants in SYNONYMS.items() for variant in variants if variant != word
    }

    params: ShapesParams
    data: ShapesData

    def load(self, seed: int, state: dict[str, Any] | None) -> dict[str, CaptionSplit]:
        base = seed if self.data.seed is None else self.data.seed  # the videos' seed
        made = cached("shapes", self._generation(base), lambda: self._generate(base), code=GENERATOR_CODE)
        words = state["vocabulary"] if state else None
        self.vocabulary = (
            Vocabulary(words) if words else Vocabulary.build(c for refs in made["train"][1] for c in refs)
        )
        return {
            name: tensorise(videos, captions, self.vocabulary, self.params.max_words)
            for name, (videos, captions) in made.items()
        }

    def _generation(self, base: int) -> dict[str, Any]:
        """Everything the generated videos depend on: the cache's key for them."""
        return {"task": self.params.model_dump(mode="json"), "data": {**self.data.model_dump(), "seed": base}}

    def _generate(self, base: int) -> dict[str, Any]:
        """The splits' videos, as one uint8 tensor each (seconds of drawing: cached), and their captions."""
        params, data = self.params, self.data
        held_out = {tuple(pair) for pair in params.held_out}
        made: dict[str, Any] = {}
        for offset, (split, count, with_held_out) in enumerate(
            (
                ("train", data.train_videos, False),
                ("valid", data.valid_videos, False),
                ("test", data.test_videos, bool(held_out) and data.test_pairs == "held_out"),
            )
        ):
            try:
                videos, captions = generate_shapes(
                    count,
                    params.frames,
                    params.size,
                    (params.min_events, params.max_events),
                    params.max_objects,
                    held_out,  # type: ignore[arg-type]
                    with_held_out,
                    params.references,
                    params.noise,
                    seed=base * 3 + offset,
                    equal_events=params.event_lengths == "equal",
                    colours=tuple(params.colours),
                    shapes=tuple(params.shapes),
                    distractors=params.distractors,
                    slideshow=params.layout == "slideshow",
                )
            except ValueError as error:  # the settings leave too few videos to draw from
                raise UserError(f"task: {split} split: {error}") from None
            made[split] = (torch.stack(videos), captions)
        return made
