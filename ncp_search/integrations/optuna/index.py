"""What NCPPruner knows about a study's finished trials, kept up to date cheaply.

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
from collections.abc import Callable, Sequence

from optuna.trial import FrozenTrial, TrialState

from ncp_search.core.history import as_number

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
