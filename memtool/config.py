"""Typed run configuration: YAML → validated, frozen objects, with ``--set key.path=value`` overrides.

Every mistake is reported at load, before training starts, as one line naming the file, the field and the
value. Model parameters are checked against the registered model's constructor; task and data parameters
against the task's own schemas.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import re
import reprlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from memtool.errors import UserError
from memtool.models.base import data_dims, start_modes
from memtool.registry import MODELS, TASKS, load_all, load_imports
from memtool.schema import Seed, Strict, refuse_silent_cast

OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adadelta": "Adadelta"}


class LrDecay(Strict):
    every_epochs: PositiveInt
    factor: float = Field(0.5, gt=0, le=1)


class StartPhase(Strict):
    """A first phase with its own constant learning rate, during which the model runs in one of the modes
    it declares (``start_modes``); for MemN2N, linear start (the softmax removed from the memory layers)."""

    mode: str
    epochs: PositiveInt  # the most epochs the phase lasts
    lr: PositiveFloat | None = None  # None: train.lr
    until_plateau: bool = False  # end earlier, once validation loss stops falling
    patience: PositiveInt = 1


# CUDA-graph capture, differentiable steps and fused kernels change what a step is: not for configs
UNSUPPORTED_OPTIMIZER_ARGUMENTS = {"capturable", "differentiable", "fused"}


class OptimizerConfig(BaseModel):
    """A torch optimizer by name plus its keyword arguments, checked against the real constructor.

    ``train.lr`` is the learning rate; everything else (``momentum``, ``alpha``, ``betas``, ``eps``,
    ``weight_decay``, ...) goes here: ``optimizer: {name: rmsprop, momentum: 0.9, alpha: 0.95}``.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal[tuple(OPTIMIZERS)] = "sgd"  # type: ignore[valid-type]

    @property
    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _fits_the_constructor(self) -> OptimizerConfig:
        import torch

        constructor = getattr(torch.optim, OPTIMIZERS[self.name])
        accepted = set(inspect.signature(constructor.__init__).parameters) - {"self", "params", "lr"}
        accepted -= UNSUPPORTED_OPTIMIZER_ARGUMENTS
        unknown = sorted(set(self.arguments) - accepted)
        if "lr" in unknown:
            raise ValueError("the learning rate is train.lr, not an optimizer argument")
        if unknown:
            raise ValueError(
                f"{self.name} takes no argument {unknown[0]!r} here; it takes: {', '.join(sorted(accepted))}"
            )
        parameters = inspect.signature(constructor.__init__).parameters
        for key, value in self.arguments.items():  # torch would take true as 1 for a momentum
            default = parameters[key].default
            kinds = frozenset({bool}) if isinstance(default, bool) else frozenset({int, float})
            if isinstance(default, (int, float)):
                try:
                    refuse_silent_cast(value, kinds)
                except ValueError as error:
                    raise ValueError(f"{key} {error}") from None
        try:  # torch checks the values itself (ranges, types): ask it, on a throwaway parameter
            constructor([torch.nn.Parameter(torch.zeros(1))], lr=0.1, **self.arguments)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.name}: {error}") from None
        return self


class TrainConfig(Strict):
    batch_size: PositiveInt = 32
    epochs: PositiveInt = 10  # epochs after the start phase
    max_steps: PositiveInt | None = None  # a cap on optimizer steps; overrides epochs when reached first
    lr: PositiveFloat = 0.01
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    lr_decay: LrDecay | None = None
    loss_reduction: Literal["mean", "sum"] = "mean"  # sum: the loss summed over a batch (MemN2N authors)
    clip_norm: PositiveFloat | None = 40.0
    # per_matrix: each weight's Frobenius norm; per_matrix_spectral: each matrix's largest singular value
    # (MATLAB's norm()); global: all gradients together
    clip_mode: Literal["per_matrix", "per_matrix_spectral", "global"] = "per_matrix"
    clip_value: PositiveFloat | None = None  # clamp every gradient element to ±clip_value (before clip_norm)
    start_phase: StartPhase | None = None
    restarts: PositiveInt = 1  # train this many times (seed, seed+1, ...) and keep the best on validation
    # train the restarts at once, as replicas of one model stepped together (models with
    # forward_replicas; each restart still computes what it would alone): pays where a step is op-bound
    stack_restarts: bool = False
    eval_every_steps: PositiveInt | None = None  # also validate every N steps, not only at epoch ends
    stop_at_target: bool = False  # end a restart once validation reaches the task's target (converged)
    eval_batch_size: PositiveInt = 512
    checkpoint_every_steps: PositiveInt | None = None
    checkpoint_every_seconds: PositiveFloat = 30.0
    threads: PositiveInt | None = None  # torch intra-op threads; None keeps torch's default
    # torch.compile the model for training (the NTM: its step function); the first steps of each new
    # shape pay the compile time (about 1-2 minutes on 2 cores), see docs/PERFORMANCE.md
    compile: bool = False
    # bf16: the training forward pass and loss under torch.autocast to bfloat16 (CUDA, or a CPU with bf16
    # arithmetic); weights, gradients, the optimizer and evaluation stay float32
    precision: Literal["fp32", "bf16"] = "fp32"
    tensorboard: bool = False  # also write TensorBoard event files into the run directory

    @field_validator("optimizer", mode="before")
    @classmethod
    def _name_alone(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class Section(BaseModel):
    """A ``model``/``task`` section: a registered name plus that component's validated parameters."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    name: str
    params: Any


@dataclass(frozen=True)
class RunConfig:
    seed: int
    device: Literal["auto", "cpu", "cuda"]
    model: Section
    task: Section
    data: Any  # the task's Data schema instance
    train: TrainConfig
    eval: Any = None  # the task's Eval schema instance
    imports: tuple[str, ...] = ()  # plugin modules, paths made absolute
    source: str = "<config>"
    overrides: tuple[str, ...] = ()  # the --set KEY=VALUE it was built with

    def located(self, problem: str) -> str:
        """``problem`` ("model: shift_range 200 ...") found after loading, e.g. by the model's own checks
        of its arguments together, prefixed like a load error: the file, and the --set it is about."""
        return f"{self.source}{_from_set([problem], self.overrides)}: {problem}"

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, every default filled in, ready to write as YAML and load again."""
        resolved: dict[str, Any] = {"imports": list(self.imports)} if self.imports else {}
        resolved |= {
            "seed": self.seed,
            "device": self.device,
            "model": {"name": self.model.name, **self.model.params.model_dump(mode="json")},
            "task": {"name": self.task.name, **self.task.params.model_dump(mode="json")},
            "data": self.data.model_dump(mode="json"),
            "train": self.train.model_dump(mode="json"),
        }
        evaluation = self.eval.model_dump(mode="json") if self.eval is not None else {}
        if evaluation:
            resolved["eval"] = evaluation
        return resolved


class _Top(Strict):
    imports: list[str] = Field(default_factory=list)  # modules or .py files that register models/tasks
    seed: Seed = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: dict[str, Any]
    task: dict[str, Any]
    data: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)  # validated by the task's own Eval schema


_SIGNATURE_SCHEMAS: dict[type, type[BaseModel]] = {}


def constructor_schema(cls: type) -> type[BaseModel]:
    """A pydantic schema of a model class's keyword parameters, minus the sizes its task supplies.

    The constructor is the single source of truth for names, types and defaults (torchtune validates
    configs against the real constructor the same way).
    """
    if cls not in _SIGNATURE_SCHEMAS:
        supplied = set(data_dims(cls))
        hints = inspect.get_annotations(cls.__init__, eval_str=True)
        fields: dict[str, Any] = {}
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            variadic = parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            if name == "self" or name in supplied or variadic:
                continue
            default = ... if parameter.default is inspect.Parameter.empty else parameter.default
            fields[name] = (hints.get(name, Any), default)  # unannotated: any value
        _SIGNATURE_SCHEMAS[cls] = create_model(f"{cls.__name__}Params", __base__=Strict, **fields)
    return _SIGNATURE_SCHEMAS[cls]


# keys of memtool 0.1's configs, and where they went
RENAMED = {
    "train.warmup": "renamed to train.start_phase, e.g. {mode: linear_start, epochs: 30, lr: 0.005}",
    "train.momentum": "moved to train.optimizer, e.g. optimizer: {name: sgd, momentum: 0.9}",
}


def _stacking_problems(train: TrainConfig, model_name: str) -> list[str]:
    """What ``train.stack_restarts`` cannot do: every replica steps at every step in the same phase."""
    from memtool.models.base import can_stack

    problems = []
    if not can_stack(MODELS.get(model_name)):
        problems.append(
            f"train.stack_restarts: model {model_name!r} cannot stack its restarts (it has no "
            "forward_replicas); set it to false to train them one after another"
        )
    reasons = {  # the stacked replicas step together, always all of them, in one phase
        "train.start_phase.until_plateau": (
            train.start_phase is not None and train.start_phase.until_plateau,
            "each restart would leave its start phase at an epoch of its own",
        ),
        "train.stop_at_target": (train.stop_at_target, "each restart would stop at a step of its own"),
        "train.compile": (train.compile, "the stacked step (forward_replicas) is not compiled"),
    }
    problems += [
        f"train.stack_restarts: cannot be combined with {key} ({why}); turn one of them off"
        for key, (on, why) in reasons.items()
        if on
    ]
    return problems


def _from_set(problems: list[str], overrides: Sequence[str]) -> str:
    """`` with --set KEY=VALUE`` when a problem is about a key an override set: the file is not at fault."""
    given = [item for item in overrides if any(_is_about(problem, item) for problem in problems)]
    return f" with --set {' '.join(echo_override(item) for item in given)}" if given else ""


def _is_about(problem: str, assignment: str) -> bool:
    """Whether ``problem`` ("where: what") is about the key ``assignment`` sets: it is where the problem
    is, or inside it, or the problem names the whole dotted key ("cannot be combined with
    train.compile"). A check of several keys together speaks for their section ("task: min_length 30
    is above max_length 20"): there the key's own name and the value it was given must both be named,
    so that a list of what a section accepts does not count."""
    key, value = override_key(assignment), assignment.partition("=")[2].strip()
    if problem.startswith((f"{key}:", f"{key}.", f"{key}[")):
        return True
    where, colon, what = problem.partition(": ")
    if not colon:
        return False
    if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", what):
        return True
    if not key.startswith(f"{where}."):
        return False
    name = key.removeprefix(f"{where}.").partition(".")[0]
    return bool(
        value
        and re.search(rf"\b{re.escape(name)}\b", what)
        and any(re.search(rf"(?<![\w.]){re.escape(v)}(?![\w.])", what) for v in _spellings(value))
    )


def _spellings(value: str) -> set[str]:
    """How a message may print an override's value: as given, and for a number as Python prints it
    (``+200`` as 200, ``-1`` as -1.0 once a float, ``1e-3`` as 0.001)."""
    spellings = {value}
    try:
        number = parse_yaml(value)
    except yaml.YAMLError:
        return spellings
    if isinstance(number, (int, float)) and not isinstance(number, bool):
        spellings |= {str(number), str(float(number))}
        if float(number).is_integer():
            spellings.add(str(int(number)))
    return spellings


def config_leaves(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"task.frames": "8", "model.attention": '"soft"', ...}``: every leaf of a nested config by its
    dotted key, each value as JSON, so configs can be compared and their differences named."""
    found: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            found.update(config_leaves(value, f"{prefix}{key}."))
        else:
            found[f"{prefix}{key}"] = json.dumps(value)
    return found


def override_key(assignment: str) -> str:
    """The dotted key a ``--set KEY=VALUE`` assigns."""
    return assignment.partition("=")[0].strip()


def echo_override(item: str, width: int = 60) -> str:
    """A ``--set KEY=VALUE`` as the user gave it, cut to ``width`` characters: an error line stays short."""
    return item if len(item) <= width else item[: width - 1] + "…"


def _format_error(prefix: str, error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors():
        location = ""
        for part in (prefix, *item["loc"]):  # list positions as [i]: eval.sizes[0][1], not eval.sizes.0.1
            if isinstance(part, int):
                location += f"[{part}]"
            elif part != "":
                location += f".{part}" if location else str(part)
        if location in RENAMED and item["type"] == "extra_forbidden":
            lines.append(f"{location}: {RENAMED[location]}")
            continue
        value = item.get("input")
        shown = "" if item["type"] == "missing" or isinstance(value, dict) else f" (got {shorten(value)})"
        lines.append(f"{location}: {item['msg'].removeprefix('Value error, ')}{shown}")
    return lines


_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 3, 6, 6, 50, 50


def shorten(value: Any, width: int = 60) -> str:
    """``repr`` of a value the user gave, cut to ``width`` characters without ever walking all of it
    (an alias bomb's value has billions of items): an error line stays one short line."""
    text = _SHORT.repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def set_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``key.path=value`` override; the value is parsed as YAML (``3``, ``true``, ``[1, 2]``)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. train.lr=0.005")
    try:
        value = parse_yaml(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    if not all(parts):
        raise UserError(f"--set {assignment!r}: empty name in the key path {key.strip()!r}")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"--set {assignment!r}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


MOST_CONFIG_BYTES = 1 << 20  # a config is a page of settings, not data
MOST_ALIASES = 100  # YAML aliases (*name) in one document: enough for reuse, too few for an alias bomb


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML lets the last silently win) and alias bombs."""

    aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MOST_ALIASES:
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"more than {MOST_ALIASES} aliases (*name); is it an alias bomb?",
                    event.start_mark,
                )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (the last would silently win)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 reads 1e-8 as a string (it wants 1.0e-8); every config means a number
_ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML as memtool reads it: safe types, no duplicate keys, a bounded number of aliases."""
    return yaml.load(text, Loader=_ConfigLoader)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    if path.stat().st_size > MOST_CONFIG_BYTES:
        raise UserError(f"{path}: {path.stat().st_size:,} bytes is too large for a config (at most 1 MiB)")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and start and mark and start.line != mark.line:  # e.g. an unclosed [ lines earlier
            problem += f" ({context} that starts at line {start.line + 1}, column {start.column + 1})"
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    if not isinstance(raw, dict):
        raise UserError(
            f"{path}: expected a mapping of sections (model, task, data, train), got {shorten(raw)}"
        )
    return raw


def _with_suggestion(problem: str, fields: dict[str, set[str]]) -> str:
    """``model.memory_size: Extra inputs ...`` → ``...; did you mean task.memory_size?`` (the key in
    another section), or ``model.controler_size`` → ``model.controller_size`` (a typo of its own)"""
    location, _, message = problem.partition(": ")
    section, _, key = location.partition(".")
    if not message.startswith("Extra inputs") or "." in key:
        return problem
    guesses = [f"{home}.{key}" for home, names in fields.items() if home != section and key in names]
    if not guesses:  # a typo of one of its own section's keys: controler_size
        close = difflib.get_close_matches(key, sorted(fields.get(section, ())), n=2, cutoff=0.75)
        guesses = [f"{section}.{name}" for name in close]
    return f"{problem}; did you mean {' or '.join(guesses)}?" if guesses else problem


def load_config(path: Path, overrides: Sequence[str] = (), **top_level: Any) -> RunConfig:
    """Read a YAML file, apply ``--set`` overrides and top-level flags (seed, device), validate."""
    raw = read_yaml(path)
    return build_config(raw, overrides, source=str(path), **top_level)


def build_config(
    raw: dict[str, Any], overrides: Sequence[str] = (), source: str = "<config>", **top_level: Any
) -> RunConfig:
    load_all()
    raw = copy.deepcopy(raw)
    for assignment in overrides:
        set_override(raw, assignment)
    raw.update({key: value for key, value in top_level.items() if value is not None})

    problems: list[str] = []
    try:
        top = _Top.model_validate(raw)
    except ValidationError as error:
        lines = _format_error("", error)
        raise UserError(f"{source}{_from_set(lines, overrides)}: " + "; ".join(lines)) from None
    base = Path(source).parent if source != "<config>" else Path.cwd()
    imports = tuple(load_imports(top.imports, base))

    def component(section: str, registry: Any, values: dict[str, Any]) -> Section | None:
        name = values.get("name")
        if not isinstance(name, str):
            problems.append(
                f"{section}.name: required, one of {', '.join(e.name for e in registry.entries())}"
            )
            return None
        if name not in registry:
            known = ", ".join(e.name for e in registry.entries())
            problems.append(f"{section}.name: unknown {registry.kind} {name!r}; known: {known}")
            return None
        target = registry.get(name)
        schema = constructor_schema(target) if registry is MODELS else target.Params
        params = {key: value for key, value in values.items() if key != "name"}
        try:
            return Section(name=name, params=schema.model_validate(params))
        except ValidationError as error:
            problems.extend(_format_error(section, error))
            return None

    model = component("model", MODELS, top.model)
    task = component("task", TASKS, top.task)
    data = evaluation = None
    if task is not None:
        task_class = TASKS.get(task.name)
        for section, schema, values in (
            ("data", task_class.Data, top.data),
            ("eval", task_class.Eval, top.eval),
        ):
            try:
                validated = schema.model_validate(values)
            except ValidationError as error:
                problems.extend(_format_error(section, error))
                continue
            if section == "data":
                data = validated
            else:
                evaluation = validated
    train = None
    try:
        train = TrainConfig.model_validate(top.train)
    except ValidationError as error:
        problems.extend(_format_error("train", error))
    if train is not None and train.start_phase is not None and model is not None:
        modes = start_modes(MODELS.get(model.name))
        if train.start_phase.mode not in modes:
            has = f"its modes: {', '.join(modes)}" if modes else "it has none"
            problems.append(
                f"train.start_phase.mode: model {model.name!r} has no mode {train.start_phase.mode!r}; {has}"
            )
    if train is not None and train.stack_restarts and train.restarts > 1 and model is not None:
        problems += _stacking_problems(train, model.name)
    if problems:
        fields = {"train": set(TrainConfig.model_fields)}
        if isinstance(top.model.get("name"), str) and top.model["name"] in MODELS:
            fields["model"] = set(constructor_schema(MODELS.get(top.model["name"])).model_fields)
        if isinstance(top.task.get("name"), str) and top.task["name"] in TASKS:
            task_class = TASKS.get(top.task["name"])
            fields |= {
                "task": set(task_class.Params.model_fields),
                "data": set(task_class.Data.model_fields),
                "eval": set(task_class.Eval.model_fields),
            }
        told = _from_set(problems, overrides)
        raise UserError(f"{source}{told}: " + "; ".join(_with_suggestion(p, fields) for p in problems))
    return RunConfig(
        top.seed, top.device, model, task, data, train, evaluation, imports, source, tuple(overrides)
    )
