"""The "i-Epoch" baseline of Egele et al. (2024) as an Optuna pruner (research side).

Egele, Guyon, Vishwanath and Balaprakash, "Is One Epoch All You Need For
Multi-Fidelity Hyperparameter Optimization?" (ESANN 2023; extended 2024): train
every candidate for ``i`` epochs, then train only the best tenth of them to the end.
In a sequential or asynchronous study the candidates arrive one by one, so this
pruner applies the cut online: at step ``epochs`` a trial continues only if fewer
than ``max(1, ceil(keep * n))`` of the ``n`` trials that have reached that step
(itself included) have a strictly better value there.
"""

from __future__ import annotations

import math

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial


def _first_step_at(trial: FrozenTrial, step: int) -> int | None:
    reached = [s for s in trial.intermediate_values if s >= step]
    return min(reached) if reached else None


class IEpochPruner(BasePruner):
    """Prune at step ``epochs`` every trial outside the best ``keep`` share so far.

    Args:
        epochs: the step (as reported; report epochs from 1 to decide after the
            ``epochs``-th epoch) at which each trial is judged, once.
        keep: the share of trials that continue (0.1: the top tenth).

    Raises:
        ValueError: for ``epochs < 1`` or ``keep`` outside (0, 1].

    NaN and edge cases:
        The decision is made once per trial, at its first report at or past
        ``epochs`` (gapped steps are fine); never before and never again after. A
        trial whose value there is NaN is pruned (a NaN is never in the top share,
        as Optuna's own pruners prune NaN); other trials' NaN values count as worse
        than any number. The first trial to reach the step always continues.
    """

    def __init__(self, epochs: int = 1, keep: float = 0.1) -> None:
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, but got epochs={epochs}.")
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep must be in (0, 1], but got keep={keep}.")
        self.epochs = int(epochs)
        self.keep = float(keep)

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.epochs:
            return False
        at = _first_step_at(trial, self.epochs)
        if at != step:
            return False  # judged at an earlier report already
        value = trial.intermediate_values[step]
        if math.isnan(value):
            return True
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        others = []
        for other in study.get_trials(deepcopy=False):
            if other.number == trial.number:
                continue
            other_at = _first_step_at(other, self.epochs)
            if other_at is not None:
                others.append(other.intermediate_values[other_at])
        allowed = max(1, math.ceil(self.keep * (len(others) + 1)))
        better = sum(1 for v in others if not math.isnan(v) and sign * v > sign * value)
        return better >= allowed
