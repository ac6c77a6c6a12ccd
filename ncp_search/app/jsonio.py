"""Strict JSON for reports and tables: NaN/inf become ``null``, NumPy scalars plain;
files written atomically (a temporary file in the same folder, renamed into place),
so a reader or a kill never sees half a file."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

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
    """Write ``strict_json(value)`` to ``path`` atomically."""
    with atomic_write(path) as handle:
        json.dump(strict_json(value), handle, indent=indent, allow_nan=False)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[TextIO]:
    """A text handle whose content replaces ``path`` in one rename once the block
    ends without an error (flushed to disk first); on an error, or a kill, ``path``
    keeps its old content and the temporary file is removed (or, after a kill, left
    as a hidden ``.<name>.<pid>.tmp``)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
