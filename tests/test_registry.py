import pytest

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
