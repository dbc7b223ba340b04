"""The family contract, checked for every registered model/task pair (the example plugin included) on a
tiny smoke config: the output type, forward and backward with a gradient for every parameter, the task's
declared metrics, and an exact resume after a crash."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from memtool.build import build_task, create_model, model_arguments
from memtool.checkpoint import load_checkpoint
from memtool.config import build_config
from memtool.engine import train
from memtool.models.base import ModelOutput
from memtool.optim import build_optimizer, clip_gradients
from memtool.registry import MODELS, TASKS, load_all
from memtool.tasks.base import training_metrics
from memtool.train_state import SilentObserver
from tests.helpers import same_metrics

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_CONFIG = ROOT / "examples" / "parity" / "config.yaml"


def _smoke_configs() -> dict[str, tuple[dict[str, Any], str]]:
    """Name → (raw config, source path). The plugin's own config is made tiny here."""
    found = {}
    for path in sorted((ROOT / "tests" / "smoke").glob("*.yaml")):
        found[path.stem] = (yaml.safe_load(path.read_text()), str(path))
    if PLUGIN_CONFIG.exists():
        raw = yaml.safe_load(PLUGIN_CONFIG.read_text())
        raw["device"] = "cpu"
        raw["train"] = {**raw.get("train", {}), "epochs": 2, "threads": 1}
        raw["data"] = {**raw.get("data", {}), "train_examples": 64, "test_examples": 16}
        found["parity-plugin"] = (raw, str(PLUGIN_CONFIG))
    return found


SMOKE = _smoke_configs()


def _config(name: str, **train: Any):
    raw, source = SMOKE[name]
    raw = {**raw, "train": {**raw.get("train", {}), **train}}
    return build_config(raw, source=source)


def test_every_registered_model_and_task_has_a_smoke_config() -> None:
    for name in SMOKE:
        _config(name)  # loads plugins named in imports:
    load_all()
    pairs = {(c.model.name, c.task.name) for c in (_config(name) for name in SMOKE)}
    assert {entry.name for entry in MODELS.entries()} <= {model for model, _ in pairs}
    assert {entry.name for entry in TASKS.entries()} <= {task for _, task in pairs}


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_forward_backward_every_parameter_gets_a_gradient(name: str) -> None:
    config = _config(name)
    task = build_task(config)
    model = create_model(config.model.name, model_arguments(config, task))
    batch = next(task.epoch_batches(4, seed=0))
    output = model(**batch.inputs)
    assert isinstance(output, ModelOutput)
    loss, counts = task.loss(output, batch)
    total = loss + sum(output.aux_losses.values())
    assert loss.ndim == 0 and torch.isfinite(total)
    total.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{parameter_name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, f"{parameter_name} got a zero gradient"
    metrics = task.train_metrics({k: float(v) for k, v in counts.items()}, batch.size)
    assert {m.name for m in training_metrics(task.scoring)} <= set(metrics)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_evaluation_reports_the_declared_metrics(name: str) -> None:
    config = _config(name)
    task = build_task(config)
    model = create_model(config.model.name, model_arguments(config, task)).eval()
    result = task.evaluate(model, "test", 16)
    assert {"loss", "examples", task.scoring.select.name} <= set(result.metrics)
    assert result.metrics["examples"] == task.split_size("test") > 0
    assert math.isfinite(result.metrics[task.scoring.select.name])


@pytest.mark.parametrize("name", sorted(SMOKE))
@pytest.mark.parametrize("world", [2, 3, 40])
def test_the_parts_of_an_evaluation_merge_into_the_whole(name: str, world: int) -> None:
    """What evaluating under DDP rests on: N processes score their parts of a split, and the merged
    result is the one process's (40 parts: most of them hold no example)."""
    config = _config(name)
    task = build_task(config)
    torch.manual_seed(0)
    model = create_model(config.model.name, model_arguments(config, task)).eval()
    for split in ("valid", "test"):
        whole = task.evaluate(model, split, 4)
        parts = [task.evaluate_part(model, split, 4, rank, world) for rank in range(world)]
        merged = task.merge_evaluation(split, parts)
        assert same_metrics(merged.metrics, whole.metrics, rel=1e-5), (merged.metrics, whole.metrics)
        assert merged.groups.keys() == whole.groups.keys()
        for group, metrics in whole.groups.items():
            assert same_metrics(merged.groups[group], metrics, rel=1e-5)


class CrashAt(SilentObserver):
    """Dies like a SIGKILL would: abruptly, without the engine saving anything."""

    def __init__(self, step: int) -> None:
        self.step = step

    def stepped(self, state, loss) -> None:
        if state.step == self.step:
            raise SystemExit("killed")


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_a_crashed_run_resumes_to_the_uninterrupted_result(name: str, tmp_path: Path) -> None:
    config = _config(name, checkpoint_every_steps=1)
    whole = train(config, tmp_path / "whole")
    with pytest.raises(SystemExit):
        train(config, tmp_path / "crashed", observer=CrashAt(step=whole.steps - 1))
    resumed = train(config, tmp_path / "crashed", resume=True)
    for file in ("best.pt", "last.pt"):
        a = load_checkpoint(tmp_path / "whole" / file)["model_state"]
        b = load_checkpoint(tmp_path / "crashed" / file)["model_state"]
        assert all(torch.equal(a[key], b[key]) for key in a), file
    assert same_metrics(resumed.test.metrics, whole.test.metrics)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_every_pair_inspects_as_a_table_json_and_a_figure(name: str, tmp_path: Path) -> None:
    from dataclasses import asdict

    from rich.console import Console

    from memtool import jsonio, render
    from memtool.figures import save_png, view_figure
    from memtool.views import InspectRequest

    pytest.importorskip("matplotlib")
    config = _config(name)
    task = build_task(config)
    model = create_model(config.model.name, model_arguments(config, task)).eval()
    view = task.inspect(model, InspectRequest("test", 0, None))
    console = Console(record=True, width=200, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render.view_renderable(view))
    assert len(console.export_text().splitlines()) > 3
    assert json.loads(jsonio.dumps(asdict(view)))  # a non-empty JSON object
    save_png(view_figure(view), tmp_path / "view.png")
    assert (tmp_path / "view.png").stat().st_size > 1000


@pytest.mark.parametrize("name", sorted(SMOKE))
@pytest.mark.parametrize("world", [2, 3])
def test_a_batchs_parts_weighted_by_their_shares_give_its_loss_and_gradient(name: str, world: int) -> None:
    """What data-parallel training rests on: DDP averages the processes' gradients of their parts."""
    config = _config(name)
    task = build_task(config)
    torch.manual_seed(0)
    model = create_model(config.model.name, model_arguments(config, task)).eval()  # no dropout, no noise
    batch = next(task.epoch_batches(5, seed=0))

    def loss_and_gradient(part: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        output = model(**part.inputs)
        loss = task.loss(output, part)[0] + sum(output.aux_losses.values())
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    whole, whole_grads = loss_and_gradient(batch)
    parts = [task.shard(batch, rank, world) for rank in range(world)]
    assert sum(part.size for part, _ in parts) == batch.size
    assert math.isclose(sum(share for _, share in parts), 1.0, rel_tol=1e-9)
    total, grads = torch.zeros(()), [torch.zeros_like(g) for g in whole_grads]
    for part, share in parts:
        if part.size == 0:
            continue
        loss, part_grads = loss_and_gradient(part)
        total += share * loss
        grads = [g + share * p for g, p in zip(grads, part_grads, strict=True)]
    assert torch.allclose(total, whole, atol=1e-5)
    for got, want in zip(grads, whole_grads, strict=True):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_every_pair_trains_under_bf16_autocast(name: str, tmp_path: Path) -> None:
    """``train.precision: bf16`` (here on the CPU): finite losses, float32 weights, a scored run."""
    summary = train(_config(name, precision="bf16", max_steps=3), tmp_path / "run")
    assert summary.steps == 3 and math.isfinite(summary.test.metrics["loss"])
    state = load_checkpoint(tmp_path / "run" / "best.pt")["model_state"]
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_a_training_step_makes_nothing_off_the_models_device(name: str) -> None:
    """The CUDA path's placement, checked without a GPU: the model and the batch on the ``meta`` device
    (shapes, no data), the step as the engine runs it (forward, the task's loss and the model's own
    losses, backward, clipping, the optimizer). A tensor the step made on the CPU instead of on the
    model's device would meet a meta tensor and fail, as it would meet a CUDA tensor on a GPU."""
    config = _config(name)
    task = build_task(config)
    model = create_model(config.model.name, model_arguments(config, task)).to("meta")
    parameters = list(model.parameters())
    optimizer = build_optimizer(config.train, parameters)
    batch = next(task.epoch_batches(4, seed=0)).to(torch.device("meta"))
    output = model(**batch.inputs)
    loss, counts = task.loss(output, batch)
    total = loss + sum(output.aux_losses.values())
    total.backward()
    clip_gradients(parameters, 1.0, config.train.clip_mode, 0.5)
    optimizer.step()
    assert total.device.type == "meta" and all(c.device.type == "meta" for c in counts.values())
    assert all(p.device.type == "meta" and p.grad.device.type == "meta" for p in parameters)
