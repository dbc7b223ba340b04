"""Captioning data, tensorised once: a vocabulary, videos as one frame tensor with a frame mask, and every
reference caption as a row of word ids pointing at its video.

Training uses every reference of every video (one row each); scoring decodes one caption per video and
compares it with all of that video's references. Frames of raw images are kept as uint8 (a quarter of the
memory of floats) and turned into floats per batch.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from memtool.errors import UserError
from memtool.models.captioner import BOS, EOS, PAD, UNK
from memtool.tasks.video.shapes import COLOURS, SHAPES, plan_split, render

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
assert [SPECIALS.index(s) for s in ("<pad>", "<bos>", "<eos>", "<unk>")] == [PAD, BOS, EOS, UNK]


def tokenize(text: str) -> list[str]:
    """Lower case, punctuation dropped, split on white space: what the COCO scorers expect (their PTB
    tokenizer needs Java; capitals and a final '.' alone took BLEU-4 from 0.64 to 0.0001)."""
    return re.sub(r"[^\w\s]", " ", text.lower()).split()


@dataclass
class Vocabulary:
    words: list[str]  # index → word; the first four are SPECIALS

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        counts = Counter(word for caption in captions for word in tokenize(caption))
        kept = sorted(word for word, count in counts.items() if count >= min_count)
        return cls([*SPECIALS, *kept])

    def __post_init__(self) -> None:
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str) -> list[int]:
        return [self.index.get(word, UNK) for word in tokenize(caption)]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Words up to the first <eos>, specials left out."""
        words = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                words.append(self.words[i])
        return words


@dataclass
class CaptionSplit:
    frames: Tensor  # (videos, K, *frame_shape): uint8 images or float features
    frame_mask: Tensor  # (videos, K) bool
    words: Tensor  # (captions, 1 + T + 1): <bos>, the caption's ids, <eos>, then <pad>
    lengths: Tensor  # (captions,): the caption's words plus its <eos>
    video_of: Tensor  # (captions,): which video a caption describes
    references: list[list[str]]  # per video: its reference captions, tokenised and joined by spaces

    def __len__(self) -> int:
        return len(self.references)

    def to(self, device: torch.device) -> CaptionSplit:
        moved = {
            name: getattr(self, name).to(device)
            for name in ("frames", "frame_mask", "words", "lengths", "video_of")
        }
        return CaptionSplit(**moved, references=self.references)

    def float_frames(self, videos: Tensor) -> Tensor:
        frames = self.frames[videos]
        return frames.float() / 255 if frames.dtype == torch.uint8 else frames

    def rows_of(self, videos: Tensor) -> Tensor:
        """Every caption row of these videos (a video's rows are contiguous, in video order)."""
        first = torch.searchsorted(self.video_of, videos)
        count = torch.searchsorted(self.video_of, videos, right=True) - first
        starts = (first - count.cumsum(0) + count).repeat_interleave(count)
        return starts + torch.arange(int(count.sum()), device=videos.device)

    def caption_batch(self, rows: Tensor) -> dict[str, Tensor]:
        """Teacher-forcing inputs for caption rows, trimmed to the batch's longest caption; each video
        among them is in ``frames`` once and ``video_index`` points the rows at it."""
        longest = int(self.lengths[rows].max())
        words = self.words[rows, : longest + 1]
        videos, video_index = torch.unique(self.video_of[rows], return_inverse=True)
        steps = torch.arange(longest, device=words.device)
        return {
            "frames": self.float_frames(videos),
            "frame_mask": self.frame_mask[videos],
            "video_index": video_index,
            "words": words[:, :-1],  # <bos> and the caption: what the decoder reads
            "word_mask": steps.unsqueeze(0) < self.lengths[rows].unsqueeze(1),
            "targets": words[:, 1:],  # the caption and <eos>: what it must write
        }


def empty_split(frame_shape: tuple[int, ...], dtype: torch.dtype) -> CaptionSplit:
    """A split without videos (a trained run scored on a test set alone)."""
    return CaptionSplit(
        frames=torch.zeros(0, 1, *frame_shape, dtype=dtype),
        frame_mask=torch.zeros(0, 1, dtype=torch.bool),
        words=torch.zeros(0, 2, dtype=torch.long),
        lengths=torch.zeros(0, dtype=torch.long),
        video_of=torch.zeros(0, dtype=torch.long),
        references=[],
    )


def tensorise(
    videos: Sequence[Tensor], captions: Sequence[Sequence[str]], vocabulary: Vocabulary, max_words: int
) -> CaptionSplit:
    """Videos (each (frames, *frame_shape), uint8 or float, any number of frames) and their reference
    captions into one split; captions longer than ``max_words`` words are cut there."""
    most_frames = max(video.shape[0] for video in videos)
    frame_shape = tuple(videos[0].shape[1:])
    frames = torch.zeros(len(videos), most_frames, *frame_shape, dtype=videos[0].dtype)
    frame_mask = torch.zeros(len(videos), most_frames, dtype=torch.bool)
    for i, video in enumerate(videos):
        frames[i, : video.shape[0]] = video
        frame_mask[i, : video.shape[0]] = True
    encoded = [(v, vocabulary.encode(c)[:max_words]) for v, refs in enumerate(captions) for c in refs]
    longest = max(len(ids) for _, ids in encoded)
    words = torch.full((len(encoded), longest + 2), PAD, dtype=torch.long)
    for row, (_, ids) in enumerate(encoded):
        words[row, : len(ids) + 2] = torch.tensor([BOS, *ids, EOS])
    return CaptionSplit(
        frames=frames,
        frame_mask=frame_mask,
        words=words,
        lengths=torch.tensor([len(ids) + 1 for _, ids in encoded]),
        video_of=torch.tensor([v for v, _ in encoded]),
        references=[[" ".join(tokenize(c)) for c in refs] for refs in captions],
    )


def generate_shapes(
    count: int,
    frames: int,
    size: int,
    events: tuple[int, int],
    max_objects: int,
    held_out: set[tuple[str, str]],
    with_held_out: bool,
    references: int,
    noise: float,
    seed: int,
    equal_events: bool = False,
    colours: tuple[str, ...] = tuple(COLOURS),
    shapes: tuple[str, ...] = SHAPES,
    distractors: int = 0,
    slideshow: bool = False,
) -> tuple[list[Tensor], list[list[str]]]:
    """``count`` synthetic videos as uint8 (frames, 3, size, size) and their reference captions."""
    rng = random.Random(seed)
    specs = plan_split(
        count, frames, events, max_objects, held_out, with_held_out, rng, equal_events, colours, shapes,
        slideshow,
    )  # fmt: skip
    videos = [render(spec, frames, size, rng, noise, distractors) for spec in specs]
    videos = [(video * 255).round().to(torch.uint8) for video in videos]
    return videos, [spec.captions(references, rng) for spec in specs]


# -- users' arrays --------------------------------------------------------------------------------------
def read_array(path: Path, where: str) -> np.ndarray:
    """A .npy file's array, or one ``UserError`` naming the file (a .npz or a pickle is not one)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        # numpy reports "pickled data" both for a .npy of Python objects and for any file without the
        # .npy header (a text file, say): tell them apart by the header
        with path.open("rb") as file:
            numpy_file = file.read(6) == b"\x93NUMPY"
        reason = str(error)
        if "pickle" in reason:
            reason = "it holds Python objects" if numpy_file else "no .npy header: save it with numpy.save"
        raise UserError(f"{where}: {path} is not a .npy array ({reason})") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise UserError(f"{where}: {path} is a .npz archive; save one array per file with numpy.save")
    return array


def real_numbers(array: np.ndarray) -> bool:
    return bool(np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer))


def to_float32(array: np.ndarray, path: Path, where: str) -> Tensor:
    """float32 values, or one ``UserError`` for NaN, infinities or values float32 cannot hold."""
    with np.errstate(all="ignore"):
        values = array.astype(np.float64)
        if not np.isfinite(values).all() or np.abs(values).max() > np.finfo(np.float32).max:
            raise UserError(f"{where}: {path} holds NaN, infinite or out-of-range values")
        return torch.from_numpy(values.astype(np.float32))


def even_frames(video: Tensor, most: int | None) -> Tensor:
    """At most ``most`` frames, sampled evenly from first to last."""
    if most is None or len(video) <= most:
        return video
    return video[torch.linspace(0, len(video) - 1, most).round().long()]
