"""What every captioning task shares, whatever its videos are: batches of reference captions, the caption
loss, decoding and scoring (BLEU-1..4, ROUGE-L and CIDEr-D against every reference, the repeated-word
rate, the attention's coverage error) and the inspection of one video, from a split or from a user's file.

A captioning task only has to fill ``self.vocabulary``, ``self.splits`` (train, valid and test
``CaptionSplit``s) and ``self.evaluation``, and say what its videos are called.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from memtool.errors import UserError
from memtool.models.base import ModelOutput
from memtool.models.captioner import EOS, PAD, attention_penalty
from memtool.schema import Strict
from memtool.tasks.base import (
    Batch,
    EvalResult,
    Metric,
    Scoring,
    ShardedEvaluation,
    TaskDefaults,
    part_rows,
    shuffled_rows,
)
from memtool.tasks.video.data import CaptionSplit, Vocabulary, read_array, real_numbers, to_float32
from memtool.tasks.video.metrics import (
    caption_scorers,
    caption_scores,
    repeat_metrics,
    said_again,
)
from memtool.views import Heatmap, HeatmapView, ImageStrip, InspectRequest

CIDER = Metric("cider", "CIDEr-D", "CIDEr", higher_is_better=True, decimals=3)
BLEU4 = Metric("bleu4", "BLEU-4", "B4", higher_is_better=True, decimals=3)
REPEATS = Metric("repeat_rate", "captions repeating a word (%)", "rep%", decimals=1)
COVERAGE = Metric("coverage_error", "coverage error Σ_i |τ − Σ_t α|", "cov", decimals=3)
WORD_ACCURACY = Metric("word_accuracy", "next-word accuracy (%)", "acc%", higher_is_better=True)
SCORING = Scoring(
    select=CIDER,
    progress=(CIDER, BLEU4, REPEATS),
    summary=(
        *(Metric(f"bleu{n}", f"BLEU-{n}", higher_is_better=True, decimals=3) for n in (1, 2, 3)),
        BLEU4,
        Metric("rouge_l", "ROUGE-L", higher_is_better=True, decimals=3),
        REPEATS,
        Metric("repeat_same_frame", "repeats read from the earlier mention's frame (%)", decimals=1),
        Metric("mention_same_frame", "re-mentions read from the earlier mention's frame (%)", decimals=1),
        COVERAGE,
    ),
    examples_noun="captions",
    train_progress=(WORD_ACCURACY,),  # BLEU and CIDEr-D need decoding: validation only
)
MOST_FRAMES = 10_000  # a --video longer than this is refused rather than decoded for minutes


class CaptionEval(Strict):
    beam_size: int = Field(1, ge=1, le=20)  # 1: greedy decoding
    max_words: int = Field(25, ge=1, le=200)  # words a generated caption may have before <eos>


class CaptionInspectOptions(Strict):
    """``--video``; each task says what its clips are (``memtool list`` shows the description)."""

    video: Path | None = Field(None, description="caption your own clip: a .npy shaped like the run's videos")


class CaptionTask(ShardedEvaluation, TaskDefaults):
    """A video captioning task over tensorised splits; subclasses make the splits."""

    Eval = CaptionEval
    InspectOptions = CaptionInspectOptions
    scoring = SCORING
    eval_changeable = ("data.", "eval.")
    video_noun = "video"  # how inspect titles one of the task's videos
    # phrase → the word it stands for, when references say one thing in several words ("shows up" for
    # "appears"): a caption that says "appears" twice where references paraphrase it repeats nothing
    synonyms: ClassVar[dict[str, str]] = {}

    vocabulary: Vocabulary
    frame_shape: list[int]  # one frame's shape: (3, H, W) pictures or (D,) features
    evaluation: CaptionEval

    def __init__(
        self,
        params: Any,
        data: Any,
        seed: int,
        state: dict[str, Any] | None = None,
        evaluation: CaptionEval | None = None,
    ) -> None:
        self.params, self.data = params, data
        caption_scorers()  # a missing scorer fails now, not after the first epoch of training
        self.evaluation = evaluation or CaptionEval()
        self._seed, self._state = seed, state
        self._splits: dict[str, CaptionSplit] | None = None
        self._device: torch.device | None = None
        if state and "vocabulary" in state and "frame_shape" in state:
            # a trained run: the model's sizes come from the checkpoint, and the videos are made or read
            # only when a split is used, so captioning a user's clip needs neither the data nor the wait
            self.vocabulary = Vocabulary(state["vocabulary"])
            self.frame_shape = list(state["frame_shape"])
        else:
            self.splits  # noqa: B018 -- training (or an older checkpoint) needs the vocabulary now

    @property
    def splits(self) -> dict[str, CaptionSplit]:
        """The tensorised splits, made (or read) at first use."""
        if self._splits is None:
            splits = self.load(self._seed, self._state)
            self.frame_shape = list(splits["train"].frames.shape[2:])
            self._splits = splits if self._device is None else self._moved(splits, self._device)
        return self._splits

    def load(self, seed: int, state: dict[str, Any] | None) -> dict[str, CaptionSplit]:
        """The splits; fills ``self.vocabulary`` (from ``state`` when a trained run is rebuilt)."""
        raise NotImplementedError

    # -- data -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary.words, "frame_shape": self.frame_shape}

    def model_dims(self) -> dict[str, Any]:
        return {"vocab_size": len(self.vocabulary), "frame_shape": self.frame_shape}

    def user_video(self, video: Tensor) -> Tensor:
        """A user's clip (K, *frame_shape) made ready as training's videos were (e.g. sampled)."""
        return video

    @staticmethod
    def _moved(splits: dict[str, CaptionSplit], device: torch.device) -> dict[str, CaptionSplit]:
        return {name: split.to(device) for name, split in splits.items()}

    def to(self, device: torch.device) -> None:
        self._device = device
        if self._splits is not None:
            self._splits = self._moved(self._splits, device)

    def split_size(self, split: str) -> int:
        return len(self.splits[split])  # videos, in every split (training reads all their captions)

    @staticmethod
    def _batch(split: CaptionSplit, rows: Tensor) -> Batch:
        inputs = split.caption_batch(rows)
        targets = inputs.pop("targets")
        return Batch(inputs, targets)

    def _videos_per_batch(self, batch_size: int) -> int:
        """Videos per training batch: all of a video's references train together, its frames encoded
        once, so a batch holds about ``batch_size`` captions."""
        train = self.splits["train"]
        references = len(train.words) / max(len(train), 1)
        return max(1, round(batch_size / references))

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.splits["train"]) / self._videos_per_batch(batch_size))

    def epoch_batches(self, batch_size: int, seed: int, start: int = 0, epoch: int = 0) -> Iterator[Batch]:
        split = self.splits["train"]
        for videos in shuffled_rows(len(split), self._videos_per_batch(batch_size), seed, start):
            yield self._batch(split, split.rows_of(videos.to(split.words.device)))

    def batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        return self._caption_batches(self.splits[split], slice(0, len(self.splits[split].words)), batch_size)

    def _caption_batches(self, data: CaptionSplit, rows: slice, batch_size: int) -> Iterator[Batch]:
        """The caption rows ``rows`` of a split in batches, in order."""
        for first in range(rows.start, rows.stop, batch_size):
            chosen = torch.arange(first, min(first + batch_size, rows.stop), device=data.words.device)
            yield self._batch(data, chosen)

    def shard(self, batch: Batch, rank: int, world: int) -> tuple[Batch, float]:
        """A part of the batch's videos with all their captions (a video's frames stay on one process);
        its share is of the batch's real words, which the caption loss and the regularizer average over."""
        inputs = batch.inputs
        videos = part_rows(inputs["frames"].shape[0], rank, world)
        index = inputs["video_index"]
        rows = (index >= videos.start) & (index < videos.stop)
        part = {name: inputs[name][videos] for name in ("frames", "frame_mask")}
        part["video_index"] = index[rows] - videos.start
        part.update({name: inputs[name][rows] for name in ("words", "word_mask")})
        words = int(inputs["word_mask"].sum())
        return Batch(part, batch.targets[rows]), int(part["word_mask"].sum()) / max(words, 1)

    # -- metrics ----------------------------------------------------------------------------------------
    def loss(self, output: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy per real word (the caption's words and its <eos>), averaged over the batch's
        words; counts: right next words and real words."""
        logits, targets = output.prediction, batch.targets
        real = batch.inputs["word_mask"]
        per_word = nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        loss = (per_word * real).sum() / real.sum().clamp_min(1)
        right = ((logits.argmax(-1) == targets) & real).sum()
        return loss, {"right_words": right, "words": real.sum()}

    def train_metrics(self, sums: dict[str, float], examples: int) -> dict[str, float]:
        return {"word_accuracy": 100.0 * sums.get("right_words", 0.0) / max(sums.get("words", 0.0), 1.0)}

    def captions(
        self, model: nn.Module, data: CaptionSplit, videos: slice, batch_size: int
    ) -> tuple[list[str], Tensor, Tensor]:
        """One generated caption per video of ``videos`` (tokenised text), its word ids and attention,
        (videos, max_words + 1) and (videos, max_words + 1, K), on the host."""
        texts, ids, attention = [], [], []
        longest = self.evaluation.max_words + 1
        frames = data.frame_mask.shape[1]
        device = data.frame_mask.device
        ids.append(torch.zeros(0, longest, dtype=torch.long, device=device))  # a part may hold no video
        attention.append(torch.zeros(0, longest, frames, device=device))
        for first in range(videos.start, videos.stop, batch_size):
            chosen = torch.arange(first, min(first + batch_size, videos.stop), device=device)
            words, alphas = model.generate(
                data.float_frames(chosen),
                data.frame_mask[chosen],
                self.evaluation.max_words,
                self.evaluation.beam_size,
            )
            texts += [" ".join(self.vocabulary.decode(row)) for row in words.tolist()]
            ids.append(nn.functional.pad(words, (0, longest - words.shape[1]), value=PAD))
            attention.append(nn.functional.pad(alphas, (0, 0, 0, longest - alphas.shape[1])))
        return texts, torch.cat(ids).cpu(), torch.cat(attention).float().cpu()

    @torch.no_grad()
    def evaluate_part(
        self, model: nn.Module, split: str, batch_size: int, rank: int, world: int
    ) -> dict[str, Any]:
        """This process's part of the split: the caption loss summed over its part of the reference
        captions (teacher forcing), and the captions it generates for its part of the videos."""
        model.eval()
        data = self.splits[split]
        total, words = 0.0, 0.0
        for batch in self._caption_batches(data, part_rows(len(data.words), rank, world), batch_size):
            loss, counts = self.loss(model(**batch.inputs), batch)
            total += loss.item() * counts["words"].item()
            words += counts["words"].item()
        texts, ids, attention = self.captions(model, data, part_rows(len(data), rank, world), batch_size)
        tau = regularizer_settings(model)[1]
        return {"loss": total, "words": words, "texts": texts, "ids": ids, "attention": attention, "tau": tau}

    def merge_evaluation(self, split: str, parts: list[dict[str, Any]]) -> EvalResult:
        """The scores of every video's caption against its references: BLEU, ROUGE-L and CIDEr-D over
        the whole split (CIDEr-D's document frequencies are the split's), repeats, coverage."""
        data = self.splits[split]
        if len(data) == 0:
            return EvalResult({"loss": math.nan, "examples": 0, "cider": math.nan})
        total = sum(part["loss"] for part in parts)
        words = sum(part["words"] for part in parts)
        texts = [text for part in parts for text in part["texts"]]
        ids = torch.cat([part["ids"] for part in parts])
        attention = torch.cat([part["attention"] for part in parts])
        frame_mask = data.frame_mask.cpu()
        metrics = {"loss": total / max(words, 1.0), "examples": len(data)}
        metrics.update(caption_scores(texts, data.references))
        peaks = attention_peaks(attention, frame_mask)
        captions = [text.split() for text in texts]
        metrics.update(repeat_metrics(captions, data.references, peaks, self.synonyms))
        written = ids != PAD  # each caption's words and its <eos>
        _, error = attention_penalty(attention, frame_mask, written, parts[0]["tau"])
        metrics["coverage_error"] = error.mean().item()
        return EvalResult(metrics)

    # -- inspection -------------------------------------------------------------------------------------
    def inspect(self, model: nn.Module, request: InspectRequest) -> HeatmapView:
        """The caption of one video (a split's, or ``--video FILE``): words × frames attention, each
        frame's total against τ, the frames themselves when they are pictures."""
        options = request.options or CaptionInspectOptions()
        model.eval()
        if options.video is not None:
            if request.example != 0 or request.split != "test":
                raise UserError("--video: captions your clip; --example and --split pick a video of the data")
            shape = tuple(self.frame_shape)
            frames = self.user_video(load_user_video(options.video, shape))
            title = f"{options.video.name} · {len(frames)} frame{'s' if len(frames) != 1 else ''}"
            return caption_view(model, frames, [], title, self.vocabulary, self.evaluation, self.synonyms)
        data = self.splits[request.split]
        if request.example >= len(data):
            raise UserError(
                f"--example: the {request.split} split has {len(data)} videos (0–{len(data) - 1})"
            )
        video = torch.tensor([request.example], device=data.frame_mask.device)
        count = int(data.frame_mask[video].sum())
        frames = data.float_frames(video)[0, :count]
        title = f"{self.video_noun} {request.example} of the {request.split} split · {count} frames"
        references = data.references[request.example]
        return caption_view(model, frames, references, title, self.vocabulary, self.evaluation, self.synonyms)


@torch.no_grad()
def caption_view(
    model: nn.Module,
    frames: Tensor,
    references: list[str],
    title: str,
    vocabulary: Vocabulary,
    evaluation: CaptionEval,
    synonyms: dict[str, str] | None = None,
) -> HeatmapView:
    """Caption one video's real frames (K, *frame_shape) and show where each word looked."""
    device = next(model.parameters()).device
    frame_mask = torch.ones(1, len(frames), dtype=torch.bool, device=device)
    words, alphas = model.generate(
        frames.unsqueeze(0).to(device), frame_mask, evaluation.max_words, evaluation.beam_size
    )
    length = int((words[0] != PAD).sum())
    shown = [vocabulary.words[i] for i in words[0, :length].tolist()]
    count = len(frames)
    alpha = alphas[0, :length, :count].cpu()
    caption = " ".join(vocabulary.decode(words[0].tolist()))
    peaks = attention_peaks(alpha.unsqueeze(0), frame_mask.cpu())[0]
    # without references (--video) nothing is flagged as a repeat; a flagged word always has an earlier
    # mention, so said_again's repeats are every flag
    repeats = [again for again in said_again(shown, references, synonyms) if again.repeat and references]
    repeat_positions = {again.position for again in repeats}
    repeated = [position in repeat_positions for position in range(length)]
    written = torch.ones(1, length, dtype=torch.bool)
    reg_lambda, reg_tau = regularizer_settings(model)
    penalty, error = attention_penalty(alpha.unsqueeze(0), frame_mask.cpu(), written, reg_tau)
    tau = length / count if reg_tau is None else reg_tau
    regularizer = reg_lambda * penalty.item()  # the caption's term before the loss's per-word mean
    coverage = alpha.sum(0).tolist()
    columns = [f"frame {i + 1}" for i in range(count)]
    flag_note = (
        "; ✗: a word said more often than any reference says it, on the frame it looked at most"
        " (along its row where no frame stands out)"
        if references
        else ""
    )
    panels = [
        Heatmap(
            f"attention α_t^i (words × frames{flag_note})",
            shown,
            columns,
            alpha.tolist(),
            # a repeat is marked on its peak frame, or along its row where no frame stands out
            [
                [flag and peak in (frame, None) for frame in range(count)]
                for flag, peak in zip(repeated, peaks, strict=True)
            ],
            (0.0, 1.0),
        ),
        Heatmap(  # from 0, so near-uniform coverage looks near uniform
            f"Σ_t α_t^i against τ = {tau:.2f}",
            ["Σ_t α", "τ"],
            columns,
            [coverage, [tau] * count],
            value_range=(0.0, max(2 * tau, *coverage)),
            show_values=True,
        ),
    ]
    unfinished = length > 0 and words[0, length - 1].item() != EOS  # cut by the length limit
    notes = [
        f"caption: {caption or '(empty)'}"
        + (f" (stopped at eval.max_words = {evaluation.max_words}, before <eos>)" if unfinished else ""),
        *(f"reference: {r}" for r in references),
        f"regularizer λ Σ_i (τ − Σ_t α_t^i)² = {reg_lambda:g} × {penalty.item():.3f} = {regularizer:.3f}; "
        f"coverage error Σ_i |τ − Σ_t α| = {error.item():.3f}",
        *(
            f"repeat: {r.word!r} (word {r.position + 1}) read {frame_name(peaks[r.position])}, "
            f"its earlier mention (word {r.earlier + 1}) {frame_name(peaks[r.earlier])}"
            + (
                ": the same frame"
                if peaks[r.earlier] is not None and peaks[r.position] == peaks[r.earlier]
                else ""
            )
            for r in repeats
        ),
    ]
    strips = [frame_strip(frames, columns)] if frames.dim() == 4 else []
    facts = {
        "caption": caption,
        "references": list(references),
        "tau": tau,
        "reg_lambda": reg_lambda,
        "penalty": penalty.item(),  # Σ_i (τ − Σ_t α_t^i)²
        "regularizer": regularizer,  # λ times the penalty
        "coverage_error": error.item(),
        "repeated_words": [word for word, flag in zip(shown, repeated, strict=True) if flag],
        "repeats": [  # where each repeat and its earlier mention looked (0-based word and frame)
            {
                "word": r.word,
                "position": r.position,
                "frame": peaks[r.position],
                "earlier_position": r.earlier,
                "earlier_frame": peaks[r.earlier],
            }
            for r in repeats
        ],
    }
    return HeatmapView(title=title, panels=panels, notes=notes, strips=strips, facts=facts)


def regularizer_settings(model: nn.Module) -> tuple[float, float | None]:
    """The λ and τ (None: auto) the run trained with, so eval and inspect measure coverage against the
    target the regularizer pushed towards."""
    return getattr(model, "regularizer", (0.0, None))


def attention_peaks(attention: Tensor, frame_mask: Tensor) -> list[list[int | None]]:
    """Per caption and written word, the frame with the most attention, or None where no frame stands
    out: a peak must hold at least twice a uniform share (2 / the video's real frames), so flat
    attention (and mean pooling's) places no word and an argmax tie on it decides nothing.
    attention (V, words, frames), frame_mask (V, frames)."""
    top, frame = attention.max(-1)
    frames = frame_mask.sum(-1, keepdim=True).clamp_min(1)
    clear = top >= 2.0 / frames
    return [
        [f if ok else None for f, ok in zip(row, flags, strict=True)]
        for row, flags in zip(frame.tolist(), clear.tolist(), strict=True)
    ]


def frame_name(frame: int | None) -> str:
    """A word's peak frame as the inspect notes say it (1-based, as the columns are labelled)."""
    return "no one frame" if frame is None else f"frame {frame + 1}"


def frame_strip(frames: Tensor, labels: list[str]) -> ImageStrip:
    """A video's (K, 3, H, W) frames in [0, 1] as the picture strip above its attention grid."""
    # in float64: a float32 0.2 prints as 0.20000000298023224 in --json, four times the characters
    pictures = frames.permute(0, 2, 3, 1).double().clamp(0, 1).mul(1000).round().div(1000)
    return ImageStrip("the frames", labels, pictures.cpu().tolist())


def load_user_video(path: Path, frame_shape: tuple[int, ...]) -> Tensor:
    """A user's clip from a ``.npy`` as float frames shaped like the run's: (K, *frame_shape). Pictures
    may be channels-last, uint8 (scaled to [0, 1]) or floats in [0, 1]; features are any real numbers.
    Anything else is one ``UserError``."""
    where = "--video"
    if not path.is_file():
        raise UserError(f"{where} {path}: no such file")
    array = read_array(path, where)
    pictures = len(frame_shape) == 3
    if not real_numbers(array) or (pictures and array.dtype != np.uint8 and array.dtype.kind != "f"):
        kinds = "uint8 or floats in [0, 1]" if pictures else "real numbers"
        raise UserError(f"{where}: {path} holds values of type {array.dtype}; this run's videos are {kinds}")
    given = tuple(array.shape)
    if pictures and array.ndim == 4 and array.shape[1:] != frame_shape and array.shape[-1] == frame_shape[0]:
        array = array.transpose(0, 3, 1, 2)  # (K, H, W, C) → (K, C, H, W)
    if array.ndim != len(frame_shape) + 1 or tuple(array.shape[1:]) != frame_shape:
        expected = "(K, " + ", ".join(map(str, frame_shape)) + ")"
        if pictures:
            expected += f" or (K, {frame_shape[1]}, {frame_shape[2]}, {frame_shape[0]})"
        raise UserError(f"{where}: {path} has shape {given}; this run's videos are {expected}")
    if not 1 <= len(array) <= MOST_FRAMES:
        raise UserError(f"{where}: {path} has {len(array)} frames; give 1 to {MOST_FRAMES}")
    video = to_float32(np.ascontiguousarray(array), path, where)
    if pictures and array.dtype == np.uint8:
        video = video / 255
    elif pictures and (video.min() < 0 or video.max() > 1):
        raise UserError(
            f"{where}: {path} holds floats from {video.min().item():g} to {video.max().item():g}; "
            "pictures are floats in [0, 1] or uint8 0-255"
        )
    return video
