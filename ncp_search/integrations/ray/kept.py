"""Paused trials' models kept in a Ray actor's memory, to resume without a rebuild.

A trial that Tune pauses ends its thread in the middle of ``tune.report``; with
``reuse_actors=True`` its actor (the process) goes on to the next trial. A trial that
Tune resumes normally builds and compiles its model again and restores its checkpoint,
and its first epoch traces the model's functions again: on small models that costs
more than an epoch. If the actor kept the paused model, a resume on that actor trains
on from it. :data:`KEPT` is this process's store: models by Tune trial id, longest
kept first out, within a byte limit, each with the identity of the checkpoint it
matches (its epochs and the random id that ``save_keras`` writes), so a trial whose
checkpoint was replaced (e.g. by PBT's exploit) loads the new one.
``NCPTuneCallback(keep_in_memory_mb=...)`` keeps the model at each report with a
checkpoint; :func:`~ncp_search.integrations.ray.checkpoint.kept_model` gives it back
to the resumed trial; ``NCPScheduler(resume_where_paused=True)`` hands a promoted
trial to Tune when the actor that paused it is the next one reused. The checkpoint is
still written at every pause: a resume elsewhere, or after ``Tuner.restore``, loads
it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np


class KeptModels:
    """Paused trials' models by trial id, each with the checkpoint it matches.

    A model is kept *before* the report that may pause its trial, as a candidate: it
    joins the others (and the byte limit applies) only when this process's next trial
    keeps or takes a model, that is once the report it was kept for has ended its
    trial. A trial that reports on is let go (:meth:`discard`) without having pushed
    out a paused one."""

    def __init__(self) -> None:
        self._kept: OrderedDict[str, tuple[Any, Any, int]] = OrderedDict()
        self._candidate: tuple[str, Any, Any, int, int] | None = None

    def keep(self, trial_id: str, model: Any, state: Any, nbytes: int, limit: int) -> None:
        """Keep ``model`` for ``trial_id``, as it is in the checkpoint ``state``
        (:func:`~ncp_search.integrations.ray.checkpoint.checkpoint_state`), about
        ``nbytes``; the longest kept go once all hold more than ``limit`` bytes (a
        model larger than ``limit`` is not kept)."""
        self._settle()
        self._kept.pop(trial_id, None)
        self._candidate = (trial_id, model, state, int(nbytes), int(limit))

    def take(self, trial_id: str, state: Any) -> Any | None:
        """The model kept for ``trial_id`` if it is in the checkpoint ``state`` the
        trial resumes from (None: no checkpoint, or one without a state), else None;
        either way it is no longer kept."""
        self._settle()
        entry = self._kept.pop(trial_id, None)
        return entry[0] if entry is not None and entry[1] == state else None

    def discard(self, trial_id: str) -> None:
        """Let ``trial_id``'s model go (its trial trains on, or is gone)."""
        if self._candidate is not None and self._candidate[0] == trial_id:
            self._candidate = None
        self._kept.pop(trial_id, None)

    def ids(self) -> list[str]:
        """The trials with a kept model, longest kept first."""
        self._settle()
        return list(self._kept)

    def _settle(self) -> None:
        """The candidate's trial has ended (paused): it joins, within its limit."""
        if self._candidate is None:
            return
        trial_id, model, state, nbytes, limit = self._candidate
        self._candidate = None
        self._kept[trial_id] = (model, state, nbytes)
        while self._kept and sum(entry[2] for entry in self._kept.values()) > limit:
            self._kept.popitem(last=False)

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self.ids()

    def __len__(self) -> int:
        return len(self.ids())


KEPT = KeptModels()
"""This process's kept models (one store per Ray actor)."""


def report_keeping(metrics: Mapping[str, Any], checkpoint: Any, trial_id: str | None,
                   model: Any, size: Callable[[], int], limit: int) -> None:
    """``tune.report(metrics, checkpoint=checkpoint)`` with ``model`` kept for
    ``trial_id`` in :data:`KEPT` while the report runs: if Tune pauses (or stops) the
    trial there, the report ends its thread and the model stays kept, in the state of
    ``checkpoint``; if the trial goes on, it is let go. Nothing is kept when
    ``trial_id`` is None, ``limit`` is 0 or the checkpoint has no state
    (:func:`~ncp_search.integrations.ray.checkpoint.checkpoint_state`); ``size()``,
    the model's bytes, is asked only when it is kept."""
    from ray import tune

    from ncp_search.integrations.ray.checkpoint import checkpoint_state

    keeping = trial_id is not None and limit > 0
    state = checkpoint_state(checkpoint) if keeping else None
    if trial_id is not None and state is not None:
        KEPT.keep(trial_id, model, state, size(), limit)
    tune.report(dict(metrics), checkpoint=checkpoint)
    if trial_id is not None and keeping:
        KEPT.discard(trial_id)


def variable_bytes(variables: Iterable[Any]) -> int:
    """What these Keras variables hold, in bytes."""
    return sum(int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize for v in variables)


def model_bytes(model: Any) -> int:
    """About what a Keras model holds: its weights and its optimizer's state."""
    return variable_bytes(list(model.weights) + list(
        getattr(getattr(model, "optimizer", None), "variables", None) or []))


def megabytes(value: float, name: str) -> int:
    """``value`` MB as bytes (a ValueError naming ``name`` unless a number >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number of MB >= 0, but got {name}={value!r}.")
    return int(float(value) * 2**20)
