"""The base of every config schema: a leaf module, so tasks and models can use it without importing upward."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

SCALARS = (bool, int, float)
# a run's or a data set's seed: what a generator takes, with room for the restarts' seed + r
Seed = Annotated[int, Field(ge=0, lt=2**32)]


def scalar_kinds(annotation: Any) -> frozenset[type] | None:
    """The scalar types (bool, int, float) a field allows, through ``| None``, unions and constraints
    (``PositiveInt``); None when it also allows anything else (text, lists, literals, sections), which
    pydantic checks as it is."""
    if get_origin(annotation) is Annotated:
        return scalar_kinds(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        kinds = [scalar_kinds(arg) for arg in get_args(annotation) if arg is not type(None)]
        return None if any(kind is None for kind in kinds) else frozenset().union(*kinds)  # type: ignore[arg-type]
    return frozenset({annotation}) if annotation in SCALARS else None


def refuse_silent_cast(value: Any, kinds: frozenset[type] | None) -> None:
    """Refuse the conversions pydantic's lax mode would make quietly: ``true`` as 1, 1 as true, 20.0 as
    20. Text that reads as a number stays allowed: YAML 1.1 reads ``1e-3`` (no dot) as text, and the
    command line's task options (``--task 6``) arrive as text."""
    if kinds is None or value is None:
        return
    if isinstance(value, bool):
        if bool not in kinds:
            raise ValueError(f"should be a {'number' if float in kinds else 'whole number'}, not true/false")
    elif kinds == {bool}:
        raise ValueError("should be true or false")
    elif float not in kinds and isinstance(value, float):
        raise ValueError("should be a whole number")


class Strict(BaseModel):
    """Unknown keys and wrong types are errors; the object is frozen once loaded.

    Lax mode stays on for what YAML and JSON cannot write (a path from text, a tuple from a list: a
    checkpoint's config comes back from JSON), but a scalar must be of its own kind (``refuse_silent_cast``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_silent_casts(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name is not None:
            refuse_silent_cast(value, scalar_kinds(cls.model_fields[info.field_name].annotation))
        return value


class NoOptions(Strict):
    """A schema with nothing in it: the default for options a task does not have."""
