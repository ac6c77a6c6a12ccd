"""Ray Tune's ASHA rule as an Optuna pruner (research side), for the budget benchmark.

The issue's first target compares NCP's ASHA with "ASHA (Ray, grace 1, rf 3)", and
Optuna's SuccessiveHalvingPruner is a different rule (with fewer than ``rf`` trials
at a rung it keeps only the best one). This pruner replays the decision rule of
Tune's ``AsyncHyperBandScheduler`` with one bracket, as its documentation and the
paper (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys
2020) state it, inside real Optuna studies, so that both meet the same trials in
the same order:

- rungs at ``grace * rf**k`` below ``max_t`` (grace 1, rf 3, max_t 20: 1, 3, 9);
- at a trial's first report at or past a rung, the cutoff is the
  ``100 * (1 - 1/rf)`` percentile of the values the *other* trials recorded at that
  rung (NaN values ignored); the trial stops when its value is below the cutoff,
  an empty rung continues; the trial's value is recorded either way;
- the value compared is the raw reported value at that step (no prediction).

Written from that description, not from Ray's source. A NaN value is never below a
cutoff, so a diverged trial continues (as Tune's ASHA does).
"""

from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState


def _first_step_at(trial: FrozenTrial, step: float) -> int | None:
    reached = [s for s in trial.intermediate_values if s >= step]
    return min(reached) if reached else None


class RayASHAPruner(BasePruner):
    """Tune's asynchronous successive halving rule on the raw values.

    Args:
        max_t: the last step of a complete trial (rungs lie below it).
        grace: the first rung, in steps as reported (report epochs from 1).
        reduction_factor: keep the best ``1/reduction_factor`` at each rung (> 1).

    Raises:
        ValueError: for ``grace < 1``, ``reduction_factor <= 1`` or ``max_t < grace``.
    """

    def __init__(self, max_t: int, grace: int = 1, reduction_factor: float = 3.0) -> None:
        if grace < 1 or reduction_factor <= 1 or max_t < grace:
            raise ValueError("RayASHAPruner needs grace >= 1, reduction_factor > 1 and "
                             f"max_t >= grace, but got grace={grace}, reduction_factor="
                             f"{reduction_factor}, max_t={max_t}.")
        self.rf = float(reduction_factor)
        self.rungs: list[float] = []
        milestone = float(grace)
        while milestone < max_t:
            self.rungs.append(milestone)
            milestone *= self.rf

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        reached = [r for r in self.rungs if r <= step]
        if not reached or _first_step_at(trial, reached[-1]) != step:
            return False  # before the first rung, or recorded at this rung already
        rung = reached[-1]
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        recorded = []
        for other in study.get_trials(deepcopy=False):
            if other.number == trial.number or other.state == TrialState.FAIL:
                continue
            at = _first_step_at(other, rung)
            if at is not None:
                recorded.append(sign * float(other.intermediate_values[at]))
        finite = [v for v in recorded if not math.isnan(v)]
        if not finite:
            return False
        cutoff = float(np.percentile(finite, 100.0 * (1.0 - 1.0 / self.rf)))
        value = sign * float(trial.intermediate_values[step])
        return bool(value < cutoff)
