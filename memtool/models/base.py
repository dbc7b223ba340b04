"""What the engine needs from a model: a forward that returns a ``ModelOutput``, sizes the data fixes, and
optionally the modes of a first training phase.

Models are plain ``nn.Module``s registered with ``@register_model(name)``; their constructor's keyword
parameters are the config's ``model`` section (validated against the signature), except ``data_dims``,
which the task supplies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor


@dataclass
class ModelOutput:
    """One forward pass: the prediction, what the model attended to or stored, and auxiliary losses.

    ``trace`` carries the attention or memory trace that ``inspect-memory`` shows, so the pictures read the
    same tensors training produced. ``aux_losses`` are added by the engine to the task's loss, already
    weighted (a regularizer's λ is the model's parameter), and each is logged on its own as
    ``train_<name>``.
    """

    prediction: Tensor  # e.g. (batch, classes) logits, or (batch, time, bits) logits
    trace: dict[str, Tensor] = field(default_factory=dict)
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


@runtime_checkable
class MemoryModel(Protocol):
    """The model side of the contract (an ``nn.Module`` with these members)."""

    # constructor arguments the task's data fixes (vocabulary size, ...): not part of the config
    data_dims: ClassVar[tuple[str, ...]]
    # modes the model can run in during ``train.start_phase`` (e.g. MemN2N's "linear_start"); () for none
    start_modes: ClassVar[tuple[str, ...]]
    # optional: methods ``train.compile`` compiles instead of the whole forward, e.g. a recurrent model's
    # one-step function (compiling a Python loop over time would unroll it into one graph per length)
    compile_parts: ClassVar[tuple[str, ...]]

    def forward(self, **inputs: Tensor) -> ModelOutput: ...

    def set_mode(self, mode: str | None) -> None:
        """Run in ``mode`` (one of ``start_modes``), or normally with None. The engine owns which mode is
        on: it calls this when a phase starts or ends and when a checkpoint is loaded."""
        ...


def compile_model(model: Any) -> list[str]:
    """``torch.compile`` the model in place for ``train.compile``: its ``compile_parts`` (with dynamic
    shapes: batch sizes and lengths vary), or else its forward. Returns what was compiled."""
    import torch

    parts = tuple(getattr(model, "compile_parts", ()))
    for name in parts:
        setattr(model, name, torch.compile(getattr(model, name), dynamic=True))
    if not parts:
        model.compile(dynamic=True)
    return list(parts) or ["forward"]


def start_modes(model_class: Any) -> tuple[str, ...]:
    return tuple(getattr(model_class, "start_modes", ()))


def data_dims(model_class: Any) -> tuple[str, ...]:
    return tuple(getattr(model_class, "data_dims", ()))
