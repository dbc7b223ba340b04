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

    # optional: ``forward_replicas(batches, generators) -> ModelOutput``, R replicas of the model stepped
    # as one (``train.stack_restarts``): called on ``stack_replicas``'s module, whose parameters carry a
    # leading replica dimension; replica r reads ``batches[r]`` (``forward``'s keyword inputs) and draws
    # any randomness from ``generators[r]`` (None: evaluation, nothing drawn), so that it computes what a
    # model of its own would. The output's tensors are the replicas' stacked (R, ...), each aux loss (R,);
    # the batches may be padded alike, so a smaller batch's rows beyond its size are padding
    # (``replica_output``)

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


# the checkpoint key of a stacked run's last.pt (its replicas' count): it holds no one model
STACKED_REPLICAS = "stacked_replicas"


def can_stack(model_class: Any) -> bool:
    """Whether the model trains restarts stacked (``train.stack_restarts``): it has ``forward_replicas``."""
    return callable(getattr(model_class, "forward_replicas", None))


def stack_replicas(models: list[Any]) -> Any:
    """One module of the models' class whose every parameter and buffer is theirs stacked along a new
    first dimension (the replicas'), under the same names: ``replica_state`` slices replica r back out
    as an ordinary state dict. The models share their configuration; only their weights differ."""
    import copy

    import torch
    from torch import nn

    stacked = copy.deepcopy(models[0])
    parameters = dict(models[0].named_parameters())
    states = [model.state_dict() for model in models]
    for name in states[0]:
        owner_name, _, leaf = name.rpartition(".")
        owner = stacked.get_submodule(owner_name)
        values = torch.stack([state[name].detach() for state in states])
        if name in parameters:
            setattr(owner, leaf, nn.Parameter(values, requires_grad=parameters[name].requires_grad))
        else:
            owner.register_buffer(leaf, values)
    return stacked


def replica_state(stacked: Any, replica: int) -> dict[str, Any]:
    """Replica ``replica``'s weights from ``stack_replicas``'s module: a state dict of the model."""
    return {name: value[replica] for name, value in stacked.state_dict().items()}


def replica_linear(x: Any, layer: Any, replicas: int) -> Any:
    """``x W^T + b`` with ``layer``'s weight (a Linear's, or an embedding table as a tied output layer).
    With ``replicas`` (R > 0, ``forward_replicas``), the weight is (R, out, in) and x holds R equal
    blocks of rows: each block is multiplied by its own replica's weight; 0: an ordinary linear layer."""
    import torch
    from torch import nn

    weight, bias = layer.weight, getattr(layer, "bias", None)
    if not replicas:
        return nn.functional.linear(x, weight, bias)
    blocks = x.reshape(replicas, -1, x.shape[-1])
    if bias is None:
        out = blocks @ weight.transpose(1, 2)
    else:
        out = torch.baddbmm(bias.unsqueeze(1), blocks, weight.transpose(1, 2))
    return out.view(*x.shape[:-1], weight.shape[1])


def replica_output(output: ModelOutput, replica: int, size: int) -> ModelOutput:
    """Replica ``replica``'s part of ``forward_replicas``'s output, cut to its batch's ``size`` examples
    (a trace's other dimensions may still be padded, e.g. memory slots of shorter stories)."""
    return ModelOutput(
        prediction=output.prediction[replica, :size],
        trace={name: value[replica, :size] for name, value in output.trace.items()},
        aux_losses={name: value[replica] for name, value in output.aux_losses.items()},
    )


def start_modes(model_class: Any) -> tuple[str, ...]:
    return tuple(getattr(model_class, "start_modes", ()))


def data_dims(model_class: Any) -> tuple[str, ...]:
    return tuple(getattr(model_class, "data_dims", ()))
