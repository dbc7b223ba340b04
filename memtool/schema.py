"""The base of every config schema: a leaf module, so tasks and models can use it without importing upward."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys and wrong types are errors; the object is frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class NoOptions(Strict):
    """A schema with nothing in it: the default for options a task does not have."""
