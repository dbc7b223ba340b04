import pytest
import torch

from memtool.errors import UserError
from memtool.registry import MODELS, TASKS, Registry, load_all


def test_registering_a_name_twice_is_an_error() -> None:
    registry: Registry[object] = Registry("widget")
    registry.register("a")(object)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a")(int)


def test_unknown_name_lists_the_known_ones() -> None:
    registry: Registry[object] = Registry("widget")
    registry.register("b")(object)
    registry.register("a")(int)
    with pytest.raises(UserError, match="unknown widget 'c'; known widgets: a, b"):
        registry.get("c")


def test_importing_the_packages_registers_every_family_and_task() -> None:
    load_all()
    assert "memn2n" in MODELS
    assert "babi" in TASKS
    assert all(entry.summary for entry in MODELS.entries() + TASKS.entries())


@pytest.mark.parametrize("name", [entry.name for entry in (load_all() or MODELS.entries())])
def test_every_registered_model_runs_forward_and_backward_on_its_task(name: str) -> None:
    from memtool.build import build_task, create_model, model_arguments
    from memtool.config import build_config
    from tests.helpers import tiny_config

    config = build_config(tiny_config(model={"name": name}))
    task = build_task(config)
    model = create_model(name, model_arguments(config, task))
    batch = next(task.batches("train", 4))
    loss, wrong = task.loss(model(**batch.inputs), batch)
    loss.backward()
    assert torch.isfinite(loss) and 0 <= int(wrong) <= 4
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
