"""Strict JSON out: NaN and infinities (e.g. the error of an empty split) become null, never ``NaN``."""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    """``json.dumps`` that any JSON parser (jq, JavaScript) accepts."""
    return json.dumps(finite(value), allow_nan=False, **options)
