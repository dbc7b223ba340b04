"""Video captioning on synthetic shape videos (generated, seeded): one caption per video, scored with
BLEU-1..4, ROUGE-L and CIDEr-D against every reference, the repeated-word rate and the attention's
coverage error.

The test split shows (colour, shape) pairs that no training video shows, so a model must read the frames
rather than recall captions. Validation comes from the training distribution and picks ``best.pt`` by
CIDEr-D.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from memtool.errors import UserError
from memtool.models.base import ModelOutput
from memtool.models.captioner import PAD, attention_penalty
from memtool.registry import register_task
from memtool.schema import Strict
from memtool.tasks.base import Batch, EvalResult, Metric, Scoring, TaskDefaults, shuffled_rows
from memtool.tasks.video.data import CaptionSplit, Vocabulary, generate_shapes, tensorise
from memtool.tasks.video.metrics import caption_scores, excess_words, repeat_rate
from memtool.tasks.video.shapes import COLOURS, SHAPES
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
        Metric("bleu1", "BLEU-1", higher_is_better=True, decimals=3),
        BLEU4,
        Metric("rouge_l", "ROUGE-L", higher_is_better=True, decimals=3),
        REPEATS,
        COVERAGE,
    ),
    examples_noun="captions",
    train_progress=(WORD_ACCURACY,),  # BLEU and CIDEr-D need decoding: validation only
)


class ShapesParams(Strict):
    frames: int = Field(8, ge=2, le=64)  # frames per video
    size: int = Field(32, ge=16, le=128)  # frame height and width in pixels
    min_events: int = Field(2, ge=1, le=16)
    max_events: int = Field(4, ge=1, le=16)
    max_objects: int = Field(2, ge=1, le=4)  # objects on screen at once
    held_out: list[tuple[str, str]] = Field(  # (colour, shape) pairs only the test split shows
        default_factory=lambda: [("blue", "triangle"), ("green", "circle")]
    )
    references: int = Field(3, ge=1, le=20)  # reference captions per video
    noise: float = Field(0.05, ge=0, le=1)  # uniform pixel noise, a distractor
    max_words: int = Field(40, ge=2, le=200)  # longer captions are cut here

    @model_validator(mode="after")
    def _consistent(self) -> ShapesParams:
        if self.min_events > self.max_events:
            raise ValueError(f"min_events {self.min_events} is above max_events {self.max_events}")
        if self.max_events > self.frames:
            raise ValueError(
                f"max_events {self.max_events} needs at least as many frames (got {self.frames})"
            )
        for colour, shape in self.held_out:
            if colour not in COLOURS or shape not in SHAPES:
                raise ValueError(
                    f"held_out: ({colour}, {shape}) is no pair of a colour in {', '.join(COLOURS)} and a "
                    f"shape in {', '.join(SHAPES)}"
                )
        return self


class ShapesData(Strict):
    train_videos: int = Field(2000, ge=1, le=200_000)
    valid_videos: int = Field(200, ge=1, le=20_000)
    test_videos: int = Field(200, ge=1, le=20_000)
    seed: int | None = None  # None: the run's seed


class CaptionEval(Strict):
    beam_size: int = Field(1, ge=1, le=20)  # 1: greedy decoding
    max_words: int = Field(25, ge=1, le=200)  # words a generated caption may have before <eos>


@register_task("shapes_captions")
class ShapesCaptionTask(TaskDefaults):
    """Captioning synthetic videos of coloured shapes whose events happen in order (generated, seeded)."""

    Params = ShapesParams
    Data = ShapesData
    Eval = CaptionEval
    scoring = SCORING
    eval_changeable = ("data.", "eval.")

    def __init__(
        self,
        params: ShapesParams,
        data: ShapesData,
        seed: int,
        state: dict[str, Any] | None = None,
        evaluation: CaptionEval | None = None,
    ) -> None:
        self.params, self.data = params, data
        self.evaluation = evaluation or CaptionEval()
        base = seed if data.seed is None else data.seed
        held_out = {tuple(pair) for pair in params.held_out}
        made = {}
        for offset, (split, count, with_held_out) in enumerate(
            (
                ("train", data.train_videos, False),
                ("valid", data.valid_videos, False),
                ("test", data.test_videos, bool(held_out)),
            )
        ):
            made[split] = generate_shapes(
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
            )
        words = state["vocabulary"] if state else None
        self.vocabulary = (
            Vocabulary(words) if words else Vocabulary.build(c for refs in made["train"][1] for c in refs)
        )
        self.splits: dict[str, CaptionSplit] = {
            name: tensorise(videos, captions, self.vocabulary, params.max_words)
            for name, (videos, captions) in made.items()
        }

    # -- data -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary.words}

    def model_dims(self) -> dict[str, Any]:
        frame_shape = list(self.splits["train"].frames.shape[2:])
        return {"vocab_size": len(self.vocabulary), "frame_shape": frame_shape}

    def to(self, device: torch.device) -> None:
        self.splits = {name: split.to(device) for name, split in self.splits.items()}

    def split_size(self, split: str) -> int:
        return len(self.splits[split]) if split != "train" else len(self.splits["train"].words)

    @staticmethod
    def _batch(split: CaptionSplit, rows: Tensor) -> Batch:
        inputs = split.caption_batch(rows)
        targets = inputs.pop("targets")
        return Batch(inputs, targets)

    def _videos_per_batch(self, batch_size: int) -> int:
        """Videos per training batch: all of a video's references train together, its frames encoded
        once, so a batch holds about ``batch_size`` captions."""
        return max(1, round(batch_size / self.params.references))

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.splits["train"]) / self._videos_per_batch(batch_size))

    def epoch_batches(self, batch_size: int, seed: int, start: int = 0, epoch: int = 0) -> Iterator[Batch]:
        split = self.splits["train"]
        for videos in shuffled_rows(len(split), self._videos_per_batch(batch_size), seed, start):
            yield self._batch(split, split.rows_of(videos.to(split.words.device)))

    def batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        data = self.splits[split]
        for first in range(0, len(data.words), batch_size):
            rows = torch.arange(first, min(first + batch_size, len(data.words)), device=data.words.device)
            yield self._batch(data, rows)

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

    def captions(self, model: nn.Module, split: str, batch_size: int) -> tuple[list[str], Tensor, Tensor]:
        """One generated caption per video of the split (tokenised text), its word ids and attention."""
        data = self.splits[split]
        texts, ids, attention = [], [], []
        for first in range(0, len(data), batch_size):
            videos = torch.arange(first, min(first + batch_size, len(data)), device=data.frame_mask.device)
            words, alphas = model.generate(
                data.float_frames(videos),
                data.frame_mask[videos],
                self.evaluation.max_words,
                self.evaluation.beam_size,
            )
            texts += [" ".join(self.vocabulary.decode(row)) for row in words.tolist()]
            ids.append(
                nn.functional.pad(words, (0, self.evaluation.max_words + 1 - words.shape[1]), value=PAD)
            )
            attention.append(
                nn.functional.pad(alphas, (0, 0, 0, self.evaluation.max_words + 1 - alphas.shape[1]))
            )
        return texts, torch.cat(ids), torch.cat(attention)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str, batch_size: int) -> EvalResult:
        model.eval()
        data = self.splits[split]
        if len(data) == 0:
            return EvalResult({"loss": math.nan, "examples": 0, "cider": math.nan})
        total, words = 0.0, 0.0
        for batch in self.batches(split, batch_size):
            loss, counts = self.loss(model(**batch.inputs), batch)
            total += loss.item() * counts["words"].item()
            words += counts["words"].item()
        texts, ids, attention = self.captions(model, split, batch_size)
        metrics = {"loss": total / max(words, 1.0), "examples": len(data)}
        metrics.update(caption_scores(texts, data.references))
        metrics["repeat_rate"] = repeat_rate(texts, data.references)
        written = ids != PAD  # each caption's words and its <eos>
        _, error = attention_penalty(attention, data.frame_mask, written, tau=None)
        metrics["coverage_error"] = error.mean().item()
        return EvalResult(metrics)

    # -- inspection -------------------------------------------------------------------------------------
    def inspect(self, model: nn.Module, request: InspectRequest) -> HeatmapView:
        """The caption of one video: words × frames attention, each frame's total against τ."""
        data = self.splits[request.split]
        if request.example >= len(data):
            raise UserError(
                f"--example: the {request.split} split has {len(data)} videos (0–{len(data) - 1})"
            )
        model.eval()
        video = torch.tensor([request.example], device=data.frame_mask.device)
        frame_mask = data.frame_mask[video]
        words, alphas = model.generate(
            data.float_frames(video), frame_mask, self.evaluation.max_words, self.evaluation.beam_size
        )
        length = int((words[0] != PAD).sum())
        shown = [self.vocabulary.words[i] for i in words[0, :length].tolist()]
        frames = int(frame_mask.sum())
        alpha = alphas[0, :length, :frames].cpu()
        references = data.references[request.example]
        caption = " ".join(self.vocabulary.decode(words[0].tolist()))
        repeated = excess_words(shown, references)
        written = torch.ones(1, length, dtype=torch.bool)
        penalty, error = attention_penalty(
            alphas[:, :length, :frames].cpu(), frame_mask[:, :frames].cpu(), written, None
        )
        tau = length / frames
        coverage = alpha.sum(0).tolist()
        columns = [f"frame {i + 1}" for i in range(frames)]
        panels = [
            Heatmap(
                "attention α_t^i (words × frames; ✗: a word said more often than any reference says it)",
                shown,
                columns,
                alpha.tolist(),
                [[flag] * frames for flag in repeated],
                (0.0, 1.0),
            ),
            Heatmap(  # from 0, so near-uniform coverage looks near uniform
                f"Σ_t α_t^i against τ = {tau:.2f}",
                ["Σ_t α", "τ"],
                columns,
                [coverage, [tau] * frames],
                value_range=(0.0, max(2 * tau, *coverage)),
            ),
        ]
        notes = [
            f"caption: {caption or '(empty)'}",
            *(f"reference: {r}" for r in references),
            f"regularizer Σ_i (τ − Σ_t α_t^i)² = {penalty.item():.3f}; "
            f"coverage error Σ_i |τ − Σ_t α| = {error.item():.3f}",
        ]
        title = f"shape video {request.example} of the {request.split} split · {frames} frames"
        pictures = data.float_frames(video)[0, :frames]
        strips = [frame_strip(pictures, columns)] if pictures.dim() == 4 else []
        return HeatmapView(title=title, panels=panels, notes=notes, strips=strips)


def frame_strip(frames: Tensor, labels: list[str]) -> ImageStrip:
    """A video's (K, 3, H, W) frames in [0, 1] as the picture strip above its attention grid."""
    pictures = frames.permute(0, 2, 3, 1).clamp(0, 1).mul(1000).round().div(1000)
    return ImageStrip("the frames", labels, pictures.cpu().tolist())
