"""Name → component registries for model families and tasks.

A family or task registers itself beside its definition (``@register_model("memn2n")``); the config's
``model.name`` / ``task.name`` picks it. Importing ``memtool.models`` and ``memtool.tasks`` fills the
registries.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from memtool.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    target: T
    summary: str


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(target: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = inspect.getdoc(target) or ""
            self._entries[name] = Entry(name, target, doc.splitlines()[0] if doc else "")
            return target

        return decorator

    def get(self, name: str) -> T:
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UserError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}")
        return self._entries[name].target

    def entries(self) -> list[Entry[T]]:
        return [self._entries[name] for name in sorted(self._entries)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries


MODELS: Registry[Any] = Registry("model")
TASKS: Registry[Any] = Registry("task")
register_model = MODELS.register
register_task = TASKS.register


def load_all() -> None:
    """Import every family and task so that they register themselves."""
    import memtool.models
    import memtool.tasks  # noqa: F401
