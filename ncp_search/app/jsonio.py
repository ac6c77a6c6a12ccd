"""Strict JSON for reports and tables: NaN/inf become ``null``, NumPy scalars plain."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
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


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (none if it does not exist); a truncated
    last line (interrupted write) is ignored."""
    rows: list[dict[str, Any]] = []
    if not Path(path).exists():
        return rows
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                continue  # interrupted while writing the last line
            raise ValueError(f"{path}:{number}: not a JSON object.") from None
    return rows
