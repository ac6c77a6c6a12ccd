"""Public Taskset learning curves as tables of recorded runs.

The Taskset files (``*.json.gz`` in the folder named by ``NCP_SEARCH_TASKSET``, or
given with ``--folder`` / ``--taskset``; see that folder's README) hold, per
task, a list of Adam configurations with 51 points of train/valid/test **loss**
each (index 0 before training). :func:`convert` turns one file into rows of the
documented table format (``python -m research record``), with two fields that
tell a loss table from an accuracy table::

    {"trial": "c0007", "workload": "<task>", "metric": "val_loss",
     "direction": "minimize",
     "config": {"learning_rate": ..., ..., "index": 7, "mode": "observer"},
     "curve": [{"step": 0, "val_loss": ..., "train_loss": ..., "test_loss": ...}, ...],
     "final_val_loss": ...}

Steps are the indices 0..50 (step 0 is before training, as in recorded tables, so a
replay reports steps 1..50). Diverged runs are kept as they are: a non-finite value
is written as ``null`` (NaN in the table format; the files hold NaN and no
infinities) and huge finite losses stay as recorded. Nothing is filtered or
clipped: a benchmark must meet diverged runs as a real search would.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ncp_search.app.jsonio import strict_json

METRIC = "val_loss"
DIRECTION = "minimize"
ENV = "NCP_SEARCH_TASKSET"
SUFFIX = ".json.gz"
_SPLITS = {"valid": "val_loss", "train": "train_loss", "test": "test_loss"}


def taskset_folder() -> Path | None:
    """The Taskset folder named by ``$NCP_SEARCH_TASKSET``; None when the variable is
    unset or the folder holds no ``*.json.gz`` file."""
    if not os.environ.get(ENV):
        return None
    folder = Path(os.environ[ENV])
    if folder.is_dir() and any(folder.glob(f"*{SUFFIX}")):
        return folder
    return None


def task_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The task files in ``folder``, sorted by name."""
    return sorted(Path(folder).glob(f"*{SUFFIX}"))


def task_name(path: str | os.PathLike[str]) -> str:
    """A short task name from a file name: ``FixedTextRNNClassification_imdb_patch32_
    GRU128_bs128.json.gz`` -> ``taskset_patch32_GRU128_bs128``."""
    stem = Path(path).name[: -len(SUFFIX)] if str(path).endswith(SUFFIX) else Path(path).stem
    stem = stem.replace("FixedTextRNNClassification_", "").replace("imdb_", "")
    return f"taskset_{stem}"


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def convert_entries(entries: Sequence[dict[str, Any]], workload: str) -> list[dict[str, Any]]:
    """Taskset entries (``{"hp": ..., "train": {"loss": [...]}, "valid": ..., "test": ...}``)
    as table rows (floats; NaN where the file has a non-finite value).

    Raises:
        ValueError: for an entry without a ``valid.loss`` list, or with splits of
            different lengths.
    """
    rows = []
    for index, entry in enumerate(entries):
        valid = (entry.get("valid") or {}).get("loss")
        if not isinstance(valid, list) or not valid:
            raise ValueError(f"{workload}: entry {index} has no valid.loss list; a Taskset "
                             "entry holds {'hp', 'train', 'valid', 'test'} with 'loss' lists.")
        series = {}
        for split, key in _SPLITS.items():
            values = (entry.get(split) or {}).get("loss")
            if values is None:
                continue
            if len(values) != len(valid):
                raise ValueError(f"{workload}: entry {index}: {split}.loss has {len(values)} "
                                 f"points but valid.loss has {len(valid)}.")
            series[key] = [_number(v) for v in values]
        curve = [{"step": step, **{key: values[step] for key, values in series.items()}}
                 for step in range(len(valid))]
        rows.append({
            "trial": f"c{index:04d}",
            "workload": workload,
            "metric": METRIC,
            "direction": DIRECTION,
            "config": {**(entry.get("hp") or {}), "index": index, "mode": "observer"},
            "curve": curve,
            "final_val_loss": series[METRIC][-1],
        })
    return rows


def convert(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of one Taskset file (gzipped JSON)."""
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        entries = json.load(handle)  # the files hold bare NaN, which json reads
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a list of entries, got {type(entries).__name__}.")
    return convert_entries(entries, task_name(path))


def write_table(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Write rows as JSON lines (non-finite values as ``null``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(strict_json(row), allow_nan=False) + "\n")


def diverged(rows: Sequence[dict[str, Any]], metric: str = METRIC) -> int:
    """How many rows have a non-finite value of ``metric`` at some step."""
    def bad(value: Any) -> bool:
        return value is None or not math.isfinite(float(value))

    return sum(any(bad(step.get(metric)) for step in row["curve"]) for row in rows)
