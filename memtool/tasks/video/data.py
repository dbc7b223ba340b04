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

import torch
from torch import Tensor

from memtool.models.captioner import BOS, EOS, PAD
from memtool.tasks.video.shapes import plan_split, render

UNK = 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
assert SPECIALS.index("<pad>") == PAD and SPECIALS.index("<bos>") == BOS and SPECIALS.index("<eos>") == EOS


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
) -> tuple[list[Tensor], list[list[str]]]:
    """``count`` synthetic videos as uint8 (frames, 3, size, size) and their reference captions."""
    rng = random.Random(seed)
    specs = plan_split(count, frames, events, max_objects, held_out, with_held_out, rng)
    videos = [(render(spec, frames, size, rng, noise) * 255).round().to(torch.uint8) for spec in specs]
    return videos, [spec.captions(references, rng) for spec in specs]
