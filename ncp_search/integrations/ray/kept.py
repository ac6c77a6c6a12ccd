"""Paused trials' models kept in a Ray actor's memory, to resume without a rebuild.

A trial that Tune pauses ends its thread in the middle of ``tune.report``; with
``reuse_actors=True`` its actor (the process) goes on to the next trial. A trial that
Tune resumes normally builds and compiles its model again and restores its checkpoint,
and its first epoch traces the model's functions again: on small models that costs
more than an epoch. If the actor kept the paused model, a resume on that actor trains
on from it. :data:`KEPT` is this process's store: models by Tune trial id, longest
kept first out, within a byte limit. ``NCPTuneCallback(keep_in_memory_mb=...)`` keeps
the model at each report with a checkpoint; :func:`kept_model` gives it back to the
resumed trial; ``NCPScheduler(resume_where_paused=True)`` hands a promoted trial to
Tune when the actor that paused it is the next one reused. The checkpoint is still
written at every pause: a resume elsewhere, or after ``Tuner.restore``, loads it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np


class KeptModels:
    """Paused trials' models by trial id, with the epochs each has done."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, tuple[Any, int, int]] = OrderedDict()

    def keep(self, trial_id: str, model: Any, epochs: int, nbytes: int, limit: int) -> None:
        """Keep ``model`` (``epochs`` done, about ``nbytes``) for ``trial_id`` in place
        of what it held; then let the longest kept go until all hold at most
        ``limit`` bytes (a model larger than ``limit`` is not kept)."""
        self._kept.pop(trial_id, None)
        self._kept[trial_id] = (model, int(epochs), int(nbytes))
        while self._kept and sum(entry[2] for entry in self._kept.values()) > limit:
            self._kept.popitem(last=False)

    def take(self, trial_id: str, epochs: int) -> Any | None:
        """The model kept for ``trial_id`` if it has done ``epochs`` (the state the
        trial resumes from), else None; either way it is no longer kept."""
        entry = self._kept.pop(trial_id, None)
        return entry[0] if entry is not None and entry[1] == int(epochs) else None

    def discard(self, trial_id: str) -> None:
        """Let ``trial_id``'s model go (its trial trains on: nothing to resume)."""
        self._kept.pop(trial_id, None)

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._kept

    def __len__(self) -> int:
        return len(self._kept)


KEPT = KeptModels()
"""This process's kept models (one store per Ray actor)."""


def model_bytes(model: Any) -> int:
    """About what a Keras model holds: its weights and its optimizer's state."""
    variables = list(model.weights) + list(getattr(getattr(model, "optimizer", None),
                                                   "variables", None) or [])
    return sum(int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize for v in variables)


def megabytes(value: float, name: str) -> int:
    """``value`` MB as bytes (a ValueError naming ``name`` unless a number >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of MB >= 0, but got {name}={value!r}.")
    return int(float(value) * 2**20)
