"""The one boundary where configs become objects: tasks from their sections, models from plain arguments."""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from memtool.config import RunConfig, build_config, echo_override, override_key, set_override
from memtool.errors import UserError
from memtool.models.base import STACKED_REPLICAS, data_dims
from memtool.registry import MODELS, TASKS, load_all
from memtool.tasks.base import Task


def build_task(config: RunConfig, state: dict[str, Any] | None = None) -> Task:
    """The configured task; ``state`` (from a checkpoint) fixes how it encodes data, e.g. the vocabulary."""
    task_class = TASKS.get(config.task.name)
    return task_class(config.task.params, config.data, seed=config.seed, state=state, evaluation=config.eval)


def model_arguments(config: RunConfig, task: Task) -> dict[str, Any]:
    """Plain constructor arguments: the config's model parameters plus the sizes the task's data fixes."""
    model_class = MODELS.get(config.model.name)
    dims = task.model_dims()
    needed = data_dims(model_class)
    missing = [name for name in needed if name not in dims]
    if missing:
        raise UserError(
            f"model {config.model.name!r} needs {', '.join(missing)}, "
            f"which task {config.task.name!r} does not provide"
        )
    return {**config.model.params.model_dump(), **{name: dims[name] for name in needed}}


def create_model(name: str, arguments: dict[str, Any]) -> nn.Module:
    load_all()
    check_model_size(name, arguments)
    return MODELS.get(name)(**arguments)


# parameters, their gradients and up to two optimizer moments each
TRAINING_COPIES = 4


def check_model_size(name: str, arguments: dict[str, Any]) -> None:
    """Refuse a model that cannot fit this machine's memory before allocating it: built on the meta
    device (shapes, no storage), its parameters are counted in a moment whatever their size."""
    try:
        with torch.device("meta"):
            probe = MODELS.get(name)(**arguments)
    except ValueError as error:  # a model's own check of its arguments together (e.g. NTM shift range)
        raise UserError(f"model: {error} (model {name})") from None
    size = sum(p.numel() * p.element_size() for p in probe.parameters()) * TRAINING_COPIES
    available = physical_memory()
    if available and size > available:
        numbers = sorted(
            (
                (key, value)
                for key, value in arguments.items()
                if isinstance(value, int) and not isinstance(value, bool)
            ),
            key=lambda item: -item[1],
        )
        largest = ", ".join(f"{key}={value}" for key, value in numbers[:3])  # as --set writes them
        raise UserError(
            f"model: {name!r} would need about {size / 2**30:,.1f} GiB to train ({largest}), more than this "
            f"machine's {available / 2**30:,.1f} GiB; lower the size settings of the model or task sections"
        )


def physical_memory() -> int:
    """Bytes of RAM, 0 when the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "device: 'cuda' was asked for, but torch sees no CUDA device; use --device cpu or auto"
        )
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


# what may differ from training in any run's eval or inspection; each task adds its own (``eval_changeable``)
EVAL_CHANGEABLE = ("device", "train.eval_batch_size", "train.threads", "seed", "eval.")


def restore(
    payload: dict[str, Any], overrides: Sequence[str] = (), device: str | None = None
) -> tuple[RunConfig, Task, nn.Module]:
    """Rebuild a checkpoint's config, task and model (in eval mode), applying ``--set`` overrides.

    Only what the data is and how it is read may change; the model and its memory are fixed by training.
    """
    source = payload["path"]
    trained = build_config(payload["config"], source=source)
    changeable = EVAL_CHANGEABLE + tuple(TASKS.get(trained.task.name).eval_changeable)
    asked = copy.deepcopy(payload["config"])  # first what the user asked to change, as written
    for assignment in overrides:
        set_override(asked, assignment)
    _refuse_fixed(changed_keys(payload["config"], asked), changeable, payload["config"], overrides)
    try:
        config = build_config(payload["config"], overrides, source=source, device=device)
    except UserError as error:  # the trained config is valid: an override made it wrong
        if not overrides or str(error).startswith(f"{source} with --set"):  # already says which --set
            raise
        problems = str(error).removeprefix(f"{source}: ")
        given = " ".join(echo_override(item) for item in overrides)
        raise UserError(f"{source} with --set {given}: {problems}") from None
    _refuse_fixed(changed_keys(trained.to_dict(), config.to_dict()), changeable, payload["config"], overrides)
    task = build_task(config, payload["task_state"])
    device = resolve_device(config.device)
    task.to(device)
    return config, task, model_from_checkpoint(payload, device)


def _refuse_fixed(
    changed: list[str], changeable: tuple[str, ...], config: dict[str, Any], overrides: Sequence[str]
) -> None:
    fixed = [key for key in changed if not key.startswith(changeable)]
    if not fixed:
        return
    for assignment in overrides:  # a key the run never had is no change to what training fixed
        _refuse_unknown(config, override_key(assignment))
    raise UserError(
        f"--set {fixed[0]}: fixed by the trained checkpoint; at eval time only "
        f"{', '.join(dict.fromkeys(k.rstrip('.') for k in changeable))} can change"
    )


def _refuse_unknown(config: dict[str, Any], key: str) -> None:
    """A ``--set`` key that the run's resolved config (every key, defaults included) does not have, named
    as such, with the likely key."""
    node: Any = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, dict):  # under a value (a null curriculum, say): validation decides
            return
        if part not in node:
            where = ".".join(parts[:depth])
            close = difflib.get_close_matches(part, [str(k) for k in node], n=1, cutoff=0.75)
            guess = f"; did you mean {'.'.join([*parts[:depth], close[0]])}?" if close else ""
            under = f" under {where!r}" if where else ""
            raise UserError(f"--set {key}: this run's config has no key {part!r}{under}{guess}")
        node = node[part]


def resume_refusal(where: str, saved: dict[str, Any], current: dict[str, Any], changed: list[str]) -> str:
    """Why ``--resume`` refuses a config that differs from the run's: another model or task plainly,
    otherwise the first changed keys."""
    trained = f"{saved['model']['name']} on {saved['task']['name']}"
    asked = f"{current['model']['name']} on {current['task']['name']}"
    if trained != asked:
        return (
            f"{where}: this run trained {trained}, the config is {asked}; resume it with its own "
            "config.yaml, or choose another --out"
        )
    more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
    return f"{where}: cannot resume with a different config; changed: {', '.join(changed[:8])}{more}"


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths at which two nested config dicts differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new))
        return [k for key in keys for k in changed_keys(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [prefix.rstrip(".")]


def model_from_checkpoint(payload: dict[str, Any], device: torch.device) -> nn.Module:
    """The checkpoint's model with its weights and mode (e.g. still in linear start), in eval mode."""
    if payload.get(STACKED_REPLICAS):
        raise UserError(
            f"{payload['path']}: holds {payload[STACKED_REPLICAS]} restarts stacked for training, not one "
            "model; use best.pt, or best-restart-<r>.pt once the run has ended or stopped"
        )
    try:
        model = create_model(payload["model_name"], payload["model_args"])
    except UserError as error:  # arguments a later memtool refuses, or too large for this machine
        raise UserError(f"{payload['path']}: this checkpoint's {error}") from None
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise UserError(
            f"{payload['path']}: weights do not fit model {payload['model_name']!r}: {first}"
        ) from None
    if hasattr(model, "set_mode"):
        model.set_mode(payload.get("mode"))  # e.g. a model saved during its start phase
    return model.to(device).eval()
