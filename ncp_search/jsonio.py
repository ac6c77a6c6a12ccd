"""Strict JSON for reports and tables: NaN/inf become ``null``, NumPy scalars plain."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np


def strict_json(value: Any) -> Any:
    """``value`` with non-finite floats replaced by ``None`` and NumPy scalars unwrapped."""
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_json(value: Any, path: str | os.PathLike[str], indent: int = 1) -> None:
    """Write ``strict_json(value)`` to ``path``."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(strict_json(value), handle, indent=indent, allow_nan=False)
