"""bAbI question answering as a memtool task: tensorised once, batched without per-example loops."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, field_validator, model_validator
from torch import Tensor, nn

from memtool.cache import cached, content_digest
from memtool.errors import UserError
from memtool.models.base import ModelOutput
from memtool.registry import register_task
from memtool.schema import NoOptions, Seed, Strict
from memtool.tasks.babi import tensors as babi_tensors
from memtool.tasks.babi import text as babi_text
from memtool.tasks.babi.commands import DATA_COMMANDS
from memtool.tasks.babi.generator import GENERATED_TASKS, TASK_NAMES, generate_split
from memtool.tasks.babi.tensors import (
    Split,
    Vocabulary,
    batch_from_split,
    padding_sizes,
    tensorise,
)
from memtool.tasks.babi.text import Story, find_task_files, parse_lines, read_task_file
from memtool.tasks.babi.view import AttentionView
from memtool.tasks.base import (
    Batch,
    EvalResult,
    FailRule,
    Metric,
    Scoring,
    ShardedEvaluation,
    TaskDefaults,
    bucketed_rows,
    part_rows,
    seeded_generator,
    shuffled_rows,
)
from memtool.views import InspectRequest

MOST_STORIES = 100_000  # per task and split: 500k questions, already minutes of preparation
MOST_MEMORY = 100_000  # sentences a question can see; the paper's is 50


class BabiParams(Strict):
    tasks: list[int] | Literal["all"] = "all"  # bAbI task numbers; "all": every task found
    memory_size: int = Field(50, ge=1, le=MOST_MEMORY)  # only the most recent sentences are kept

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_numbers(cls, value: Any) -> Any:
        """One plain-words error for anything but "all" or a non-empty list of task numbers ≥ 1."""
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if value == "all":
            return value
        numbers = isinstance(value, list) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        )
        if not numbers or not value or min(value) < 1:
            raise ValueError('expected "all" or a non-empty list of bAbI task numbers (1, 2, ...)')
        return value


class GeneratorParams(Strict):
    tasks: list[Literal[GENERATED_TASKS]] = Field(default_factory=lambda: list(GENERATED_TASKS))  # type: ignore[valid-type]
    train_stories: int = Field(200, ge=1, le=MOST_STORIES)
    test_stories: int = Field(200, ge=1, le=MOST_STORIES)
    questions_per_story: PositiveInt = 5  # fewer questions: shorter stories, an easier task
    seed: Seed | None = None  # None: data.seed, else the run's seed


class BabiData(Strict):
    source: Literal["files", "generated"] = "files"
    path: str | None = "data/babi/en"  # a directory of qaN_*_train.txt / qaN_*_test.txt
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    validation_split: Literal["random", "tail"] = "random"  # tail: the last 10% of the file, as single-task
    # training batches from pools of this many batches sorted by story length (sentences, then the longest
    # sentence): less padding, so faster steps; 0: a plain shuffle
    length_buckets: int = Field(0, ge=0, strict=True)  # strict: `true` is no pool size
    generator: GeneratorParams = Field(default_factory=GeneratorParams)
    # the validation split's seed (and the generated stories', unless generator.seed says otherwise);
    # None: the run's seed. Restart r of a run is a run with seed + r and this set to the run's seed.
    seed: Seed | None = None

    @model_validator(mode="after")
    def _path_for_files(self) -> BabiData:
        if self.source == "files" and not self.path:
            raise ValueError("data.path is required when data.source is 'files'")
        return self


class BabiInspectOptions(Strict):
    """``memtool inspect-memory RUN --task 2 --example 0``, or a story of your own."""

    task: PositiveInt | None = Field(None, description="only questions of this bAbI task")
    story: Path | None = Field(None, description="a story you wrote, one sentence a line")
    question: str | None = Field(None, description='the question about --story, e.g. "Where is Mary?"')


class BabiEvalOptions(Strict):
    data: Path | None = Field(None, description="score on this bAbI directory (same as --set data.path=DIR)")


ERROR = Metric("error", "error (%)", "err %")
SCORING = Scoring(
    select=ERROR,
    progress=(ERROR,),
    summary=(
        Metric("mean_task_error", "mean task error (%)"),
        Metric("failed_tasks", "failed tasks (error > 5%)"),
    ),
    group_key="per_task",
    group_label="task",
    group_metrics=(ERROR, Metric("loss", "loss"), Metric("examples", "examples", higher_is_better=True)),
    failed=FailRule("error", 5.0, label="error > 5%"),  # the paper's line
)


@register_task("babi")
class BabiTask(ShardedEvaluation, TaskDefaults):
    """bAbI QA: stories, questions, single-token answers; error % per bAbI task (files or generated)."""

    Params = BabiParams
    Data = BabiData
    Eval = NoOptions
    InspectOptions = BabiInspectOptions
    EvalOptions = BabiEvalOptions
    scoring = SCORING
    eval_changeable = ("data.", "task.tasks")
    data_commands = DATA_COMMANDS

    def __init__(
        self,
        params: BabiParams,
        data: BabiData,
        seed: int,
        state: dict[str, Any] | None = None,
        evaluation: Any = None,
    ):
        self.params = params
        self.data = data
        seed = seed if data.seed is None else data.seed
        prepared = self._prepare(seed, state)
        self.task_numbers: list[int] = prepared["task_numbers"]
        self.vocab = Vocabulary(prepared["vocabulary"])
        full_train = Split(**prepared["train"])
        train_rows, valid_rows = self._validation_rows(full_train, seed)
        self.splits = {
            "train": full_train.select(train_rows),
            "valid": full_train.select(valid_rows),
            "test": Split(**prepared["test"]),
        }
        self._sizes: dict[str, Tensor] = {}  # each split's padding_sizes (host), made at first use

    # -- loading -------------------------------------------------------------------------------------
    def _wanted(self, available: Sequence[int]) -> list[int]:
        if self.params.tasks == "all":
            return sorted(available)
        missing = sorted(set(self.params.tasks) - set(available))
        if missing:
            raise UserError(
                f"task.tasks: no data for bAbI task(s) {missing}; available: {sorted(available)} "
                f"(training needs a qaN_*_train.txt file for each)"
            )
        return sorted(self.params.tasks)

    def _prepare(self, seed: int, state: dict[str, Any] | None) -> dict[str, Any]:
        """The tasks, the vocabulary and the train and test splits as tensors. From files, they are read
        from the data cache (``memtool.cache``) when these files were prepared before with the same
        memory size and vocabulary by this code."""
        if self.data.source == "generated":
            return self._tensorised(*self._generated(seed), state)
        train_files, test_files = self._task_files(trained=state is not None)
        key = {  # (task, content) of each file: the task number comes from the file's name, not its bytes
            "train": [(task, content_digest(path)) for path, task in train_files.items()],
            "test": [(task, content_digest(path)) for path, task in test_files.items()],
            "memory_size": self.params.memory_size,
            "vocabulary": state["vocabulary"] if state else None,
        }

        def read() -> dict[str, Any]:
            train = [s for path, task in train_files.items() for s in read_task_file(path, task)]
            return self._tensorised(
                train, [s for p, t in test_files.items() for s in read_task_file(p, t)], state
            )

        return cached("babi", key, read, code=(sys.modules[__name__], babi_text, babi_tensors))

    def _tensorised(
        self, train: list[Story], test: list[Story], state: dict[str, Any] | None
    ) -> dict[str, Any]:
        vocab = Vocabulary(state["vocabulary"]) if state else Vocabulary.build(train)
        splits = {
            name: tensorise(stories, vocab, self.params.memory_size)
            for name, stories in (("train", train), ("test", test))
        }
        return {
            "task_numbers": sorted({story.task for story in train + test}),
            "vocabulary": vocab.words,
            **{name: split.fields() for name, split in splits.items()},
        }

    def _generated(self, seed: int) -> tuple[list[Story], list[Story]]:
        gen = self.data.generator
        data_seed = seed if gen.seed is None else gen.seed
        loaded: dict[str, list[Story]] = {"train": [], "test": []}
        for task in self._wanted(gen.tasks):
            for split, count in (("train", gen.train_stories), ("test", gen.test_stories)):
                lines = generate_split(task, split, count, data_seed, gen.questions_per_story)
                loaded[split] += parse_lines(lines, task, f"<generated task {task} {split}>")
        return loaded["train"], loaded["test"]

    def _task_files(self, trained: bool) -> tuple[dict[Path, int], dict[Path, int]]:
        """The wanted tasks' train and test files, ``{path: task}``. Training takes its tasks from the
        training files; a trained model (its vocabulary given) can be scored on test files alone."""
        directory = Path(self.data.path or "")
        if directory.is_file():
            raise UserError(
                f"data.path: {str(directory)!r} is a file; give the bAbI directory that holds the "
                f"qaN_*_train.txt and qaN_*_test.txt files, e.g. {str(directory.parent)!r}"
            )
        if not directory.is_dir():
            raise UserError(
                f"data.path: bAbI directory {str(directory)!r} not found; "
                "run `memtool data download babi` or pass --set data.path=DIR"
            )
        train_files, test_files = find_task_files(directory, "train"), find_task_files(directory, "test")
        if not train_files and not test_files:
            raise UserError(f"data.path: no qaN_*_train.txt / qaN_*_test.txt files in {str(directory)!r}")
        wanted = self._wanted(sorted(set(train_files) | set(test_files)) if trained else sorted(train_files))
        return (
            {train_files[task]: task for task in wanted if task in train_files},
            {test_files[task]: task for task in wanted if task in test_files},
        )

    def _validation_rows(self, split: Split, seed: int) -> tuple[Tensor, Tensor]:
        """Hold out a fraction of training questions, per bAbI task so every task is validated."""
        train_rows, valid_rows = [], []
        generator = seeded_generator(seed)
        for task in self.task_numbers:
            rows = torch.nonzero(split.tasks == task).squeeze(1)
            held = int(len(rows) * self.data.validation_fraction)
            if self.data.validation_split == "random":
                rows = rows[torch.randperm(len(rows), generator=generator)]
            train_rows.append(rows[: len(rows) - held])
            valid_rows.append(rows[len(rows) - held :])
        if not train_rows:  # no questions at all: the engine says so in one line
            nothing = torch.zeros(0, dtype=torch.long)
            return nothing, nothing
        return torch.cat(train_rows).sort().values, torch.cat(valid_rows).sort().values

    # -- the Task protocol ---------------------------------------------------------------------------
    @classmethod
    def eval_overrides(cls, options: BabiEvalOptions) -> list[str]:
        return [f"data.path={options.data}", "data.source=files"] if options.data is not None else []

    def model_dims(self) -> dict[str, Any]:
        train = self.splits["train"]
        longest = max(int(train.sentence_lengths.max()), int(train.question_lengths.max()))
        return {
            "vocab_size": len(self.vocab),
            "memory_size": self.params.memory_size,
            "sentence_size": longest,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"vocabulary": self.vocab.words}

    def to(self, device: torch.device) -> None:
        self.splits = {name: split.to(device) for name, split in self.splits.items()}

    def _padding_sizes(self, split: str) -> Tensor:
        if split not in self._sizes:
            self._sizes[split] = padding_sizes(self.splits[split])
        return self._sizes[split]

    def split_size(self, split: str) -> int:
        return len(self.splits[split])

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.split_size("train") / batch_size)

    def _epoch_rows(self, batch_size: int, seed: int, start: int) -> Iterator[Tensor]:
        data, sizes = self.splits["train"], self._padding_sizes("train")
        pool = self.data.length_buckets
        if pool:  # the key: memory count, then the story's longest sentence
            keys = sizes[:, 0] * (int(data.sentences.shape[1]) + 1) + sizes[:, 1]
            return bucketed_rows(keys, batch_size, seed, start, pool)
        return shuffled_rows(len(data), batch_size, seed, start)

    def _batch(self, split: str, rows: Tensor) -> Batch:
        """The questions ``rows`` (on the host) of a split, trimmed to their own longest story."""
        data = self.splits[split]
        return batch_from_split(
            data, rows.to(data.answers.device), self._padding_sizes(split)[rows].amax(0).tolist()
        )

    def epoch_batches(self, batch_size: int, seed: int, start: int = 0, epoch: int = 0) -> Iterator[Batch]:
        for rows in self._epoch_rows(batch_size, seed, start):
            yield self._batch("train", rows)

    def replica_batches(
        self, batch_size: int, seeds: list[int], start: int = 0, epoch: int = 0
    ) -> Iterator[list[Batch]]:
        """The R replicas' batches of a step gathered at once, padded to the longest story among them
        (which stacking pads to anyway); one at a time when their sizes differ."""
        for rows in zip(*(self._epoch_rows(batch_size, seed, start) for seed in seeds), strict=True):
            if len({len(part) for part in rows}) > 1:
                yield [self._batch("train", part) for part in rows]
                continue
            batch = self._batch("train", torch.cat(rows))
            parts = {
                name: value.unflatten(0, (len(rows), -1)).unbind() for name, value in batch.inputs.items()
            }
            targets = batch.targets.unflatten(0, (len(rows), -1)).unbind()
            yield [
                Batch({name: value[index] for name, value in parts.items()}, targets[index])
                for index in range(len(rows))
            ]

    def batches(self, split: str, batch_size: int) -> Iterator[Batch]:
        count = len(self.splits[split])
        for start in range(0, count, batch_size):
            yield self._batch(split, torch.arange(start, min(start + batch_size, count)))

    def inspect(self, model: nn.Module, request: InspectRequest) -> AttentionView:
        from memtool.tasks.babi.inspection import inspect_babi  # the view code imports this module

        return inspect_babi(self, model, request)

    def loss(self, output: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        loss = nn.functional.cross_entropy(output.prediction, batch.targets)
        wrong = (output.prediction.argmax(-1) != batch.targets).sum()
        return loss, {"wrong": wrong}

    def replica_loss(self, output: ModelOutput, batches: list[Batch]) -> tuple[Tensor, dict[str, Tensor]]:
        """Every replica's loss and wrong answers in one pass when their batches are the same size (all
        but an epoch's last batch, with length buckets a shorter one)."""
        if len({batch.size for batch in batches}) > 1:
            return super().replica_loss(output, batches)
        logits = output.prediction  # (replicas, batch, vocabulary)
        targets = torch.stack([batch.targets for batch in batches])
        losses = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        wrong = (logits.argmax(-1) != targets).sum(1)
        return losses.view(targets.shape).mean(1), {"wrong": wrong}

    def train_metrics(self, sums: dict[str, float], examples: int) -> dict[str, float]:
        return {"error": 100 * sums.get("wrong", 0.0) / max(examples, 1)}

    def evaluate_part(
        self, model: nn.Module, split: str, batch_size: int, rank: int, world: int
    ) -> tuple[Tensor, Tensor]:
        """Each question's loss and whether it was answered wrong, for this process's rows."""
        rows = part_rows(len(self.splits[split]), rank, world)
        loss, wrong = self._answers(
            model, split, rows, batch_size, lambda inputs: model(**inputs).prediction[None]
        )
        return loss[0], wrong[0]

    def merge_evaluation(self, split: str, parts: list[tuple[Tensor, Tensor]]) -> EvalResult:
        loss = torch.cat([part[0] for part in parts])
        wrong = torch.cat([part[1] for part in parts])
        return self._scores(self.splits[split], loss, wrong)

    def evaluate_replicas(
        self, stacked: nn.Module, replica: Callable[[int], nn.Module], count: int, split: str, batch_size: int
    ) -> list[EvalResult]:
        """Every replica on each batch in one pass of the stacked model."""

        def logits(inputs: dict[str, Tensor]) -> Tensor:
            return stacked.forward_replicas([inputs] * count, None).prediction  # evaluation draws no noise

        data = self.splits[split]
        loss, wrong = self._answers(stacked, split, slice(0, len(data)), batch_size, logits, count)
        return [self._scores(data, loss[index], wrong[index]) for index in range(count)]

    @torch.no_grad()
    def _answers(
        self,
        model: nn.Module,
        split: str,
        rows: slice,
        batch_size: int,
        predict: Callable[[dict[str, Tensor]], Tensor],
        count: int = 1,
    ) -> tuple[Tensor, Tensor]:
        """For each of the ``count`` predictions (count, batch, vocabulary) that ``predict`` gives for a
        batch: the loss of each question of ``rows`` and whether it was answered wrong, (count, rows)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        losses = [torch.zeros(count, 0, device=device)]  # a part may hold no question
        wrongs = [torch.zeros(count, 0, dtype=torch.bool, device=device)]
        for start in range(rows.start, rows.stop, batch_size):
            batch = self._batch(split, torch.arange(start, min(start + batch_size, rows.stop))).to(device)
            logits = predict(batch.inputs)
            targets = batch.targets.expand(count, -1)
            loss = nn.functional.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), reduction="none"
            ).view(targets.shape)
            # an answer word the training data never had can't be predicted: it counts as wrong,
            # but its (unbounded) loss would drown every other number
            losses.append(loss.masked_fill(targets == 0, float("nan")))
            wrongs.append(logits.argmax(-1) != targets)
        model.train(was_training)
        return torch.cat(losses, 1).double().cpu(), torch.cat(wrongs, 1).double().cpu()

    @staticmethod
    def _scores(data: Split, loss: Tensor, wrong: Tensor) -> EvalResult:
        """Metrics and per-task groups from each question's loss and whether it was answered wrong."""
        if len(data) == 0:
            empty = {"error": float("nan"), "loss": float("nan"), "examples": 0}
            return EvalResult(empty, {}, SCORING.group_key)
        tasks = data.tasks.cpu()
        groups = {}
        for task in sorted(set(tasks.tolist())):
            rows = tasks == task
            groups[str(task)] = {
                "error": 100 * wrong[rows].mean().item(),
                "loss": loss[rows].nanmean().item(),
                "examples": int(rows.sum()),
            }
        metrics = {"error": 100 * wrong.mean().item(), "loss": loss.nanmean().item(), "examples": len(data)}
        if data.unknown_words:
            metrics["unknown_words"] = data.unknown_words  # tokens the training vocabulary lacks
        if len(groups) > 1:
            metrics["mean_task_error"] = sum(g["error"] for g in groups.values()) / len(groups)
            metrics["failed_tasks"] = sum(g["error"] > 5.0 for g in groups.values())
        return EvalResult(metrics, groups, SCORING.group_key)


__all__ = ["TASK_NAMES", "BabiTask", "Split", "Vocabulary", "batch_from_split", "padding_sizes", "tensorise"]
