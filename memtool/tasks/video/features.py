"""Captioning your own videos from precomputed per-frame features, in the common MSVD / MSR-VTT layout:
a folder with one ``<video id>.npy`` array (frames × feature dim) per video, and a JSON of captions.

The captions JSON may be either of:

- ``{"videos": [{"id": "vid1", "split": "train", "captions": ["a man is cooking", ...]}, ...]}``
- MSR-VTT's ``videodatainfo.json``: ``{"videos": [{"video_id": "video0", "split": "train"}, ...],
  "sentences": [{"video_id": "video0", "caption": "a man is cooking"}, ...]}``

Splits are ``train``, ``valid`` (also ``val``, ``validate``, ``validation``) and ``test``. Features are
loaded and tensorised once; videos longer than ``data.max_frames`` are sampled evenly down to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from memtool.errors import UserError
from memtool.registry import register_task
from memtool.schema import Strict
from memtool.tasks.video.captioning import CaptionInspectOptions, CaptionTask
from memtool.tasks.video.data import (
    CaptionSplit,
    Vocabulary,
    empty_split,
    even_frames,
    read_array,
    real_numbers,
    tensorise,
    to_float32,
    tokenize,
)

SPLIT_NAMES = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "validate": "valid",
    "validation": "valid",
    "test": "test",
}


class FeatureParams(Strict):
    max_words: int = Field(30, ge=2, le=200)  # longer captions are cut here
    min_word_count: int = Field(1, ge=1)  # rarer training words become <unk>


class FeatureData(Strict):
    features: str = "data/features"  # a folder of <video id>.npy arrays, (frames, feature dim) each
    captions: str = "data/features/captions.json"  # the videos' splits and reference captions
    max_frames: int | None = Field(None, ge=1, le=10_000)  # None: every frame


def read_caption_file(path: Path) -> dict[str, tuple[str, list[str]]]:
    """Video id → (split, its captions), from either accepted JSON layout; a ``UserError`` names what is
    wrong otherwise."""
    where = f"data.captions: {path}"
    if not path.is_file():
        raise UserError(f"{where}: no such file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("videos"), list):
        raise UserError(f'{where}: expected an object with a "videos" list')
    videos: dict[str, tuple[str, list[str]]] = {}
    for index, entry in enumerate(raw["videos"]):
        entry = entry if isinstance(entry, dict) else {}
        # MSR-VTT's entries carry both a numeric "id" and the "video_id" its sentences and files use
        name = entry["video_id"] if "video_id" in entry else entry.get("id")
        split = entry.get("split")
        if not isinstance(name, str) or not isinstance(split, str):
            raise UserError(f'{where}: videos[{index}] needs a string "id" (or "video_id") and a "split"')
        if not name or any(part in name for part in ("/", "\\", "..")):
            raise UserError(f"{where}: videos[{index}] has id {name!r}; an id names a file in data.features")
        if name in videos:
            raise UserError(f"{where}: videos[{index}] repeats the id {name!r}")
        if split.lower() not in SPLIT_NAMES:
            raise UserError(
                f"{where}: videos[{index}] ({name}) has split {split!r}; use train, valid or test"
            )
        split = split.lower()
        captions = entry.get("captions", [])
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise UserError(f'{where}: videos[{index}] ({name}): "captions" must be a list of strings')
        videos[name] = (SPLIT_NAMES[split], list(captions))
    for index, sentence in enumerate(raw.get("sentences", [])):
        name = sentence.get("video_id") if isinstance(sentence, dict) else None
        caption = sentence.get("caption") if isinstance(sentence, dict) else None
        if not isinstance(name, str) or not isinstance(caption, str):
            raise UserError(f'{where}: sentences[{index}] needs a string "video_id" and "caption"')
        if name not in videos:
            raise UserError(f"{where}: sentences[{index}] describes {name!r}, which no video entry lists")
        videos[name][1].append(caption)
    for name, (_, captions) in videos.items():
        if not captions:
            raise UserError(f"{where}: video {name!r} has no caption")
        for caption in captions:
            if not tokenize(caption):
                raise UserError(f"{where}: video {name!r} has a caption without a word: {caption!r}")
    return videos


def load_features(folder: Path, name: str, max_frames: int | None) -> Tensor:
    """One video's (frames, dim) float features, sampled evenly down to ``max_frames``."""
    path = folder / f"{name}.npy"
    if not path.is_file():
        raise UserError(f"data.features: {path} not found (every video in the captions file needs one)")
    array = read_array(path, "data.features")
    if array.ndim != 2 or 0 in array.shape or not real_numbers(array):
        raise UserError(
            f"data.features: {path} has shape {array.shape} of {array.dtype}; expected (frames, dim) "
            "real numbers, at least one of each"
        )
    return even_frames(to_float32(array, path, "data.features"), max_frames)


class FeatureInspectOptions(CaptionInspectOptions):
    video: Path | None = Field(
        None, description="caption your own clip: a .npy of per-frame features (K, D), D as in the run's data"
    )


@register_task("video_features")
class FeatureCaptionTask(CaptionTask):
    """Captioning users' videos from per-frame feature arrays and a JSON of reference captions."""

    Params = FeatureParams
    InspectOptions = FeatureInspectOptions
    Data = FeatureData

    params: FeatureParams
    data: FeatureData

    def load(self, seed: int, state: dict[str, Any] | None) -> dict[str, CaptionSplit]:
        params, data = self.params, self.data
        folder = Path(data.features)
        if not folder.is_dir():
            raise UserError(
                f"data.features: folder {str(folder)!r} not found (a relative path is read from the current "
                "folder; --set data.features=DIR names another)"
            )
        listed = read_caption_file(Path(data.captions))
        made: dict[str, tuple[list[Tensor], list[list[str]]]] = {
            s: ([], []) for s in ("train", "valid", "test")
        }
        first: tuple[str, int] | None = None  # a video and its feature dim: every other must match it
        for name, (split, captions) in sorted(listed.items()):
            features = load_features(folder, name, data.max_frames)
            first = first or (name, features.shape[1])
            if features.shape[1] != first[1]:
                raise UserError(
                    f"data.features: video {name!r} has {features.shape[1]} features a frame, video "
                    f"{first[0]!r} has {first[1]}; the arrays' feature dims differ: use one extractor"
                )
            made[split][0].append(features)
            made[split][1].append(captions)
        trained = (state or {}).get("feature_dim")  # the dim the run's model reads
        if trained is not None and first and first[1] != trained:
            raise UserError(
                f"data.features: the arrays have dim {first[1]}; this run was trained on {trained}"
            )
        needed = ("test",) if state else ("train", "valid", "test")  # a trained run can score test alone
        for split in needed:
            if not made[split][0]:
                raise UserError(
                    f"data.captions: {data.captions} lists no {split} video; each split needs one"
                )
        feature_dim: int = trained if trained is not None else first[1]  # type: ignore[index]
        words = state["vocabulary"] if state else None
        self.vocabulary = (
            Vocabulary(words)
            if words
            else Vocabulary.build((c for refs in made["train"][1] for c in refs), params.min_word_count)
        )
        return {
            split: tensorise(videos, captions, self.vocabulary, params.max_words)
            if videos
            else empty_split((feature_dim,), torch.float32)
            for split, (videos, captions) in made.items()
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "feature_dim": self.frame_shape[0]}

    def user_video(self, video: Tensor) -> Tensor:
        return even_frames(video, self.data.max_frames)  # as training saw its videos
