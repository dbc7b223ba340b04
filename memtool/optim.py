"""Optimisation pieces of the training loop: the optimizer from its config, the learning-rate schedule as a
pure function of the state, and gradient clipping."""

from __future__ import annotations

import torch
from torch import nn

from memtool.config import OPTIMIZERS, TrainConfig
from memtool.train_state import MAIN, TrainState


def build_optimizer(config: TrainConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """``train.optimizer``'s torch class with its keyword arguments (validated against it at config load)."""
    constructor = getattr(torch.optim, OPTIMIZERS[config.optimizer.name])
    # one multi-tensor update per step, not one per weight (torch takes it by default only on CUDA)
    arguments = {"foreach": True, **config.optimizer.arguments}
    return constructor(parameters, lr=config.lr, **arguments)


def learning_rate(config: TrainConfig, state: TrainState) -> float:
    """The start phase's own rate, then ``lr`` decayed by ``factor`` every ``every_epochs`` main epochs."""
    if state.phase != MAIN and config.start_phase is not None:
        return config.start_phase.lr or config.lr
    if config.lr_decay is None:
        return config.lr
    return config.lr * config.lr_decay.factor ** (state.main_epochs // config.lr_decay.every_epochs)


def clip_gradients(
    parameters: list[nn.Parameter],
    max_norm: float | None,
    mode: str = "per_matrix",
    max_value: float | None = None,
    replicas: bool = False,
) -> None:
    """Clamp each gradient element to ±``max_value``, then rescale so the norm is at most ``max_norm``.

    ``per_matrix``: each weight on its own, Frobenius norm (the MemN2N authors clip each matrix alone;
    global clipping loses bAbI task 15). ``per_matrix_spectral``: each matrix by its largest singular
    value, which is what ``norm(grad)`` computes in MATLAB. ``global``: all together. By value: the NTM
    implementations clip each element to ±10. ``replicas``: the parameters carry a leading replica
    dimension (``train.stack_restarts``), and each replica's slice is clipped as its own model would be.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    if max_value is not None:
        torch._foreach_clamp_min_(grads, -max_value)
        torch._foreach_clamp_max_(grads, max_value)
    if max_norm is None:
        return
    if replicas:
        _clip_replicas(grads, max_norm, mode)
        return
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)
        return
    norms = torch._foreach_norm(grads)
    if mode == "per_matrix_spectral":
        norms = [
            spectral_if_over(g, norm, max_norm) if g.ndim == 2 else norm
            for g, norm in zip(grads, norms, strict=True)
        ]
    # every matrix's scale in three ops, not three per matrix: a step's ops are its cost on small models
    scales = (max_norm / (torch.stack(norms) + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, list(scales.unbind()))


def spectral_if_over(
    matrix: torch.Tensor, norm: torch.Tensor, max_norm: float, sync_free: bool | None = None
) -> torch.Tensor:
    """The spectral norm of a (..., rows, columns) gradient where its Frobenius ``norm`` is over the cap,
    else ``norm`` (spectral ≤ Frobenius: under the cap by Frobenius, it is under by spectral too). On
    the host the comparison decides whether to compute the costlier norm at all; on a GPU reading the
    comparison back would make the step wait for the device, so both are computed and ``where`` picks
    (``sync_free`` chooses the path, by default from the device)."""
    over = norm > max_norm
    if sync_free if sync_free is not None else matrix.device.type != "cpu":
        return torch.where(over, torch.linalg.matrix_norm(matrix, ord=2), norm)
    return torch.linalg.matrix_norm(matrix, ord=2) if bool(over.any()) else norm


def _clip_replicas(grads: list[torch.Tensor], max_norm: float, mode: str) -> None:
    """``clip_gradients``'s norms per replica: over every dimension but the first. (A replica's
    spectral norm is taken whenever one replica's matrix is over the cap, which changes nothing.)"""
    # each (replicas,); reshape, not flatten(1): a scalar weight is one number per replica
    norms = [torch.linalg.vector_norm(g.reshape(len(g), -1), dim=1) for g in grads]
    if mode == "global":  # as clip_grad_norm_: the norm of the matrices' norms
        total = torch.linalg.vector_norm(torch.stack(norms), dim=0)
        norms = [total] * len(grads)
    elif mode == "per_matrix_spectral":
        norms = [
            spectral_if_over(g, norm, max_norm) if g.ndim == 3 else norm
            for g, norm in zip(grads, norms, strict=True)
        ]
    scales = (max_norm / (torch.stack(norms) + 1e-6)).clamp(max=1.0)  # (matrices, replicas)
    for grad, scale in zip(grads, scales.unbind(), strict=True):
        grad.mul_(scale.view(-1, *[1] * (grad.dim() - 1)))
