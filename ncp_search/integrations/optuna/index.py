"""What NCPPruner reads of a study: trial histories, the finished trials indexed once,
and the :class:`~ncp_search.core.policy.StudyView` a policy decides on.

A trial that has finished (complete, pruned or failed) never changes again, so
whatever the pruner derives from it (its final, its value at an ASHA rung, its
last prediction) is computed once. :class:`StudyIndex` walks the study's trials
(numbered 0, 1, 2, ... in the order they were created) from a *frontier*: every
trial below it has finished and been indexed, so a decision at 10,000 trials
looks only at the few trials created or finished since the last one, not at all
of them (the prune() latency target: within 1.5x of MedianPruner, whose own cost
is mostly the storage read both pruners share).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from ncp_search.core.history import TrialHistory, as_number
from ncp_search.core.policy import PREDICTION_SERIES, Policy

BETA_ATTR = "ncp_beta_eff"  # {step: beta_eff}
TERMS_ATTR = "ncp_probe_terms"  # {step: {series name: value}} (probe terms, train_loss)
PREDICTION_ATTR = "ncp_predicted_final"  # {"step": s, "value": v} (the latest)
HISTORY_ATTR = "ncp_predicted_history"  # {step: predicted final}


def trial_history(trial: FrozenTrial, sign: float) -> TrialHistory:
    """A frozen trial as a :class:`TrialHistory` (metric made "higher is better" by
    ``sign``): its intermediate values at their own steps, ``beta_eff``, the probe
    terms and the predictions stored by :func:`ncp_search.report_beta_eff`, and its
    final value if it is complete."""
    series: dict[str, dict[Any, Any]] = {"beta_eff": trial.user_attrs.get(BETA_ATTR) or {}}
    for step, terms in (trial.user_attrs.get(TERMS_ATTR) or {}).items():
        if isinstance(terms, dict):
            for name, value in terms.items():
                series.setdefault(name, {})[step] = value
    predictions = trial.user_attrs.get(HISTORY_ATTR)
    if isinstance(predictions, dict):
        series[PREDICTION_SERIES] = {s: sign * as_number(v) for s, v in predictions.items()}
    final = trial.value if trial.state == TrialState.COMPLETE and trial.values else None
    return TrialHistory.from_reports(trial.intermediate_values, sign=sign, series=series,
                                     final=final)


def first_step_at(trial: FrozenTrial, rung: float) -> int | None:
    """The trial's first reported step at or past ``rung`` (None if none)."""
    reached = [s for s in trial.intermediate_values if s >= rung]
    return min(reached) if reached else None

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

RungValue = Callable[[FrozenTrial, float], float]
"""A finished trial's value at a rung (NaN if it never reached the rung)."""


class StudyIndex:
    """The finished trials of one study (one objective sign), indexed once each.

    Attributes:
        completed: the complete trials, in the order they were indexed.
        pruned: the pruned trials, likewise.
        finals: the finite final values of ``completed`` ("higher is better").
        max_last_step: the largest last reported step of a complete trial (None
            while none has one).
    """

    def __init__(self, sign: float, latest_prediction: Callable[[FrozenTrial], float],
                 rung_value: RungValue) -> None:
        self.sign = sign
        self._latest_prediction = latest_prediction
        self._rung_value = rung_value
        self._clear()

    def _clear(self) -> None:
        self._frontier = 0
        self._seen: set[int] = set()  # finished trials indexed at or past the frontier
        self.completed: list[FrozenTrial] = []
        self.pruned: list[FrozenTrial] = []
        self.finals: list[float] = []
        self.pruned_predictions: list[float] = []
        self.max_last_step: int | None = None
        self._rungs: dict[float, list[float]] = {}

    def update(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """Index the trials that finished since the last call; return the trials
        that have not finished (running or waiting), which the caller reads afresh."""
        if any(trials[i].number != i for i in (0, len(trials) - 1) if trials):
            # Not numbered by position (should not happen with Optuna's storages):
            # forget everything and index every trial again, without a frontier.
            self._clear()
            live = []
            for trial in trials:
                if trial.state in FINISHED:
                    self._add(trial)
                else:
                    live.append(trial)
            return live
        live = []
        for position in range(self._frontier, len(trials)):
            trial = trials[position]
            if trial.state not in FINISHED:
                live.append(trial)
                continue
            if trial.number not in self._seen:
                self._seen.add(trial.number)
                self._add(trial)
        while self._frontier < len(trials) and trials[self._frontier].state in FINISHED:
            self._seen.discard(trials[self._frontier].number)
            self._frontier += 1
        return live

    def _add(self, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE:
            self.completed.append(trial)
            if trial.values:
                final = self.sign * as_number(trial.value)
                if math.isfinite(final):
                    self.finals.append(final)
            if trial.last_step is not None:
                self.max_last_step = (trial.last_step if self.max_last_step is None
                                      else max(self.max_last_step, trial.last_step))
        elif trial.state == TrialState.PRUNED:
            self.pruned.append(trial)
            self.pruned_predictions.append(self._latest_prediction(trial))
        else:
            return  # a failed trial contributes nothing
        for rung, values in self._rungs.items():
            values.append(self._rung_value(trial, rung))

    def rung_values(self, rung: float) -> list[float]:
        """The finished (complete or pruned) trials' values at ``rung``; computed
        for all of them the first time a rung is asked for, then kept up to date
        by :meth:`update`."""
        if rung not in self._rungs:
            self._rungs[rung] = [self._rung_value(t, rung)
                                 for t in self.completed + self.pruned]
        return self._rungs[rung]


class StudyState:
    """One pruner's memory of one study (one objective sign): the index of finished
    trials, the completed trials' histories and the running trials' rung values, all
    derived from storage and kept only because finished trials never change."""

    def __init__(self, policy: Policy, sign: float) -> None:
        self.policy = policy
        self.sign = sign
        self.lock = threading.RLock()  # n_jobs > 1: threads share the pruner
        self.index = StudyIndex(sign, self._latest_prediction, self._value_at_rung)
        self._histories: tuple[int, dict[Hashable, TrialHistory]] = (-1, {})
        self._running: dict[tuple[int, int], float] = {}  # (number, step) -> rung value

    def _latest_prediction(self, trial: FrozenTrial) -> float:
        return self.sign * as_number((trial.user_attrs.get(PREDICTION_ATTR) or {}).get("value"))

    def _value_at_rung(self, trial: FrozenTrial, rung: float) -> float:
        at = first_step_at(trial, rung)
        return math.nan if at is None else self.value_at_step(trial, at)

    def value_at_step(self, trial: FrozenTrial, at: int) -> float:
        """The trial's prediction at its step ``at``: the stored one, else the policy's
        from its curve up to there."""
        stored = (trial.user_attrs.get(HISTORY_ATTR) or {}).get(str(at))
        if stored is not None:
            return self.sign * as_number(stored)
        return self.policy.value_at(trial_history(trial, self.sign), at, _Horizon(self.index))

    def running_value_at_rung(self, trial: FrozenTrial, rung: float) -> float:
        """:meth:`value_at_step` of a running trial at ``rung``, kept once it is a number
        (the value at a reported step does not change)."""
        at = first_step_at(trial, rung)
        if at is None:
            return math.nan
        with self.lock:
            cached = self._running.get((trial.number, at))
        if cached is not None:
            return cached
        value = self.value_at_step(trial, at)
        if math.isfinite(value):
            with self.lock:
                self._running[(trial.number, at)] = value
        return value

    def completed_histories(self) -> dict[Hashable, TrialHistory]:
        """The completed trials' histories by number (rebuilt when one completes)."""
        with self.lock:
            count, histories = self._histories
            completed = list(self.index.completed)
        if count == len(completed):
            return histories
        histories = {t.number: trial_history(t, self.sign)
                     for t in sorted(completed, key=lambda t: t.number)}
        with self.lock:
            self._histories = (len(completed), histories)
        return histories


class _Horizon:
    """The part of a view :meth:`Policy.value_at` reads: the horizon."""

    def __init__(self, index: StudyIndex) -> None:
        self._index = index

    def max_last_step(self) -> float | None:
        return self._index.max_last_step


class OptunaView:
    """The other trials of an Optuna study as a policy reads them; the storage is read
    once, on first use (a decision made by a guard reads nothing).

    Failed trials are out (the index skips them); the running trials are read afresh.
    """

    def __init__(self, state: StudyState, trials: Callable[[], Sequence[FrozenTrial]],
                 number: int) -> None:
        self._state = state
        self._trials = trials
        self._number = number
        self._running: list[FrozenTrial] | None = None

    @property
    def sign(self) -> float:
        """+1 for a maximised objective, -1 for a minimised one."""
        return self._state.sign

    def _live(self) -> list[FrozenTrial]:
        if self._running is None:
            trials = self._trials()
            with self._state.lock:
                live = self._state.index.update(trials)
            self._running = [t for t in live
                             if t.state == TrialState.RUNNING and t.number != self._number]
        return self._running

    def finals(self) -> Sequence[float]:
        self._live()
        with self._state.lock:
            return list(self._state.index.finals)

    def completed(self) -> Mapping[Hashable, TrialHistory]:
        self._live()
        return self._state.completed_histories()

    def latest_predictions(self) -> Sequence[float]:
        running = self._live()
        with self._state.lock:
            values = list(self._state.index.pruned_predictions)
        sign = self._state.sign
        return values + [sign * as_number((t.user_attrs.get(PREDICTION_ATTR) or {})
                                          .get("value")) for t in running]

    def rung_values(self, rung: float) -> Sequence[float]:
        running = self._live()
        with self._state.lock:
            values = list(self._state.index.rung_values(rung))
        return values + [self._state.running_value_at_rung(t, rung) for t in running]

    def max_last_step(self) -> float | None:
        self._live()
        return self._state.index.max_last_step
