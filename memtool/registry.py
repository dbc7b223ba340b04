"""Name → component registries for model families and tasks, and the plugins that add to them.

A family or task registers itself beside its definition (``@register_model("name")``); the config's
``model.name`` / ``task.name`` picks it. ``load_all`` imports every module of ``memtool.models`` and
``memtool.tasks`` and every installed ``memtool.plugins`` entry point; a config's ``imports:`` loads a
user's own modules the same way (``load_imports``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
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


PLUGIN_GROUP = "memtool.plugins"
_loaded = False


def load_all() -> None:
    """Import every model and task module and every installed plugin, once, so that they register."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package_name in ("memtool.models", "memtool.tasks"):
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name != "base":
                importlib.import_module(f"{package_name}.{module.name}")
    for plugin in entry_points(group=PLUGIN_GROUP):
        try:
            plugin.load()
        except Exception as error:  # a broken third-party plugin must say which one it is
            raise UserError(f"plugin {plugin.name!r} ({plugin.value}) failed to load: {error}") from None


def load_imports(imports: Sequence[str], base: Path) -> list[str]:
    """Import a config's ``imports:``: module names, or ``.py`` paths relative to ``base`` (the config's
    folder). Returns them resolved (paths made absolute), as the run's config records them."""
    resolved = []
    for item in imports:
        if not isinstance(item, str) or not item:
            raise UserError(f"imports: expected module names or .py paths, got {item!r:.60}")
        if item.endswith(".py") or "/" in item or "\\" in item or (base / item).is_file():
            resolved.append(str(_import_file(item, (base / item).resolve())))
            continue
        try:
            importlib.import_module(item)
        except ImportError as error:
            raise UserError(f"imports: module {item!r} cannot be imported: {error}") from None
        except Exception as error:  # the user's own code: say which module, in one line
            raise UserError(
                f"imports: module {item!r} failed to load: {type(error).__name__}: {error}"
            ) from None
        resolved.append(item)
    return resolved


def _import_file(item: str, path: Path) -> Path:
    if path.suffix != ".py":
        raise UserError(f"imports: {item!r}: a path must name a .py file")
    if not path.is_file():
        raise UserError(
            f"imports: {item!r}: no such file ({path}); if the plugin moved, pass its new path: "
            "--set 'imports=[/new/path/plugin.py]'"
        )
    if _already_imported(path):  # e.g. also installed as an entry point: its names are registered
        return path
    name = f"memtool_plugin_{path.stem}_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's own code: say which file, in one line
        del sys.modules[name]
        raise UserError(f"imports: {item!r} failed to load: {type(error).__name__}: {error}") from None
    return path


def _already_imported(path: Path) -> bool:
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve() == path:
            return True
    return False
