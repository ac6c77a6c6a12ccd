"""Optuna pruner that decides from each trial's predicted final value.

Usage::

    study = optuna.create_study(direction="maximize", pruner=ncp_search.NCPPruner())

and report ``beta_eff`` (and the probe terms) next to the metric each epoch, with
:class:`ncp_search.NCPCallback` (Keras) or :func:`ncp_search.report_beta_eff`.

This module only translates: a ``FrozenTrial`` becomes a
:class:`~ncp_search.core.history.TrialHistory`, the study becomes a
:class:`~ncp_search.core.policy.StudyView` (:mod:`ncp_search.integrations.optuna.index`),
and the :class:`~ncp_search.core.policy.Policy` decides. Everything it reads lives in
the study's storage (intermediate values and user attributes), so it works unchanged
with in-memory, RDB and Journal storages and with several workers.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Sequence
from typing import Any

from ncp_search.core import rules
from ncp_search.core.history import REPORTED_SERIES
from ncp_search.core.policy import Policy, Verdict, build_policy
from ncp_search.core.predictors import missing_inputs
from ncp_search.integrations.optuna._optuna import BasePruner, FrozenTrial, StudyDirection, optuna
from ncp_search.integrations.optuna.index import (
    BETA_ATTR,
    HISTORY_ATTR,
    PREDICTION_ATTR,
    TERMS_ATTR,
    OptunaView,
    StudyState,
    trial_history,
)
from ncp_search.integrations.optuna.predicted import PredictedStudy, predicted_view

_ALL_SETTINGS = ("percentile", "n_startup_trials", "n_warmup_steps", "interval_steps", "kappa",
                 "reduction_factor", "min_resource", "first_step")


class NCPPruner(BasePruner):
    """Prune a trial whose predicted final value is poor.

    The decision is a policy's (:mod:`ncp_search.core.policy`, where the guards and
    their order are written once for every host):

    - ``rule="asha"`` (default, the budget benchmark's pick):
      :class:`~ncp_search.core.policy.AshaPolicy`, successive halving on the
      predictions with rungs after ``min_resource * reduction_factor**k`` epochs;
    - ``rule="percentile"`` (the default in 0.1):
      :class:`~ncp_search.core.policy.PercentilePolicy`, the ``percentile`` of the
      completed finals and the other trials' latest predictions;
    - ``policy=``: any ready policy object (then pass no rule settings).

    Args:
        percentile, n_startup_trials, n_warmup_steps, interval_steps, kappa: the
            percentile rule's settings (defaults 50, 5, 2, 1, 0); passing one with
            ``rule="asha"`` is a ValueError (it would be ignored).
        max_step: the step a complete trial reports last: extrapolating predictors
            predict the value there, ASHA's rungs lie below it, and no trial is
            pruned at or after it. Default: the largest last step of the completed
            trials (no last-step guard then).
        predictor: a name from :data:`ncp_search.core.predictors.PREDICTORS` this
            pruner can feed (default ``"best"``).
        rule: ``"asha"`` (default) or ``"percentile"``.
        reduction_factor: ASHA keeps the best ``1/reduction_factor`` at each rung (> 1).
        min_resource: the epochs before ASHA's first rung (>= 1).
        first_step: the step at which a trial reports its first epoch: 0 (default)
            for Keras' epoch index, as :class:`ncp_search.NCPCallback`, the sweeps and
            Optuna's Keras callback report it; 1 when epochs are counted from 1.
        incumbent_alpha: also prune when the conformal upper bound at this level of
            the trial's final is below the best completed final; ``None`` (default)
            turns the test off.
        prune_diverged: prune at once when the latest value is NaN or infinite
            (default True, as Optuna's built-in pruners do).
        base: run this built-in Optuna pruner on the predicted finals instead of the
            raw intermediate values (needs the prediction history that
            :func:`ncp_search.report_beta_eff` stores); the policy is then not used.
        policy: a ready :class:`~ncp_search.core.policy.Policy`.

    Raises:
        ValueError: for an argument out of range or a predictor it cannot feed.
        TypeError: for a ``base`` or ``policy`` of the wrong type.

    NaN and edge cases:
        See :mod:`ncp_search.core.policy`: a NaN or infinite latest value prunes
        (unless ``prune_diverged=False``; never at or after ``max_step``); otherwise
        fail open without reports, in warm-up, with too few completed trials, when
        the prediction is not a number, or when a ``beta_eff`` predictor gets no
        ``beta_eff``/probe terms (warned once). Failed trials are left out; a
        minimised objective is handled by flipping its sign once.
    """

    FEEDS = REPORTED_SERIES

    def __init__(
        self,
        percentile: float | None = None,
        n_startup_trials: int | None = None,
        n_warmup_steps: int | None = None,
        interval_steps: int | None = None,
        *,
        max_step: int | None = None,
        predictor: str = "best",
        kappa: float | None = None,
        rule: str = "asha",
        reduction_factor: float = 3.0,
        min_resource: int = 1,
        first_step: int = 0,
        incumbent_alpha: float | None = None,
        prune_diverged: bool = True,
        base: BasePruner | None = None,
        policy: Policy | None = None,
    ) -> None:
        if base is not None and not isinstance(base, BasePruner):
            raise TypeError(f"base must be an optuna pruner, but got {type(base).__name__}.")
        if policy is None:
            if first_step not in (0, 1):
                raise ValueError("first_step must be 0 (epochs reported from 0) or 1 (from 1), "
                                 f"but got first_step={first_step!r}.")
            policy = build_policy(
                rule, "NCPPruner", percentile=percentile, n_startup_trials=n_startup_trials,
                n_warmup_steps=n_warmup_steps, interval_steps=interval_steps, kappa=kappa,
                max_step=max_step, predictor=predictor, reduction_factor=reduction_factor,
                min_resource=min_resource, first_step=first_step,
                incumbent_alpha=incumbent_alpha, prune_diverged=prune_diverged,
                feeds=self.FEEDS)
        elif not isinstance(policy, Policy):
            raise TypeError(f"policy must be an ncp_search Policy, but got "
                            f"{type(policy).__name__}.")
        self.policy = policy
        self.base = base
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._states: dict[tuple[str, float], StudyState] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_states"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # The 0.1/0.2 attributes (pruner.rule, pruner.percentile, ...): read-only views
        # of the policy's settings.
        if name in ("rule", "predictor", "max_step", "incumbent_alpha", "prune_diverged",
                    *_ALL_SETTINGS) and "policy" in self.__dict__:
            return self.settings()[name]
        raise AttributeError(name)

    def settings(self) -> dict[str, Any]:
        """This pruner's class and its policy's settings as JSON values: what
        :func:`ncp_search.report_beta_eff` stores as the study user attribute
        ``ncp_pruner``; settings the policy does not have are ``None``."""
        own = self.policy.settings()
        return {"class": type(self).__name__, **dict.fromkeys(_ALL_SETTINGS), **own,
                "base": None if self.base is None else type(self.base).__name__}

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _view(self, study: optuna.study.Study, trial: FrozenTrial) -> OptunaView:
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        key = (study.study_name, sign)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self._states[key] = StudyState(self.policy, sign)
        return OptunaView(state, lambda: study.get_trials(deepcopy=False), trial.number)

    def _verdict(self, study: optuna.study.Study, trial: FrozenTrial) -> Verdict:
        view = self._view(study, trial)
        history = trial_history(trial, view.sign)
        step = trial.last_step
        reported = None if step is None else trial.intermediate_values[step]
        verdict = self.policy.decide(history, view, reported=reported)
        self._warn_missing(trial, verdict.missing)
        return verdict

    def _warn_missing(self, trial: FrozenTrial, missing: Sequence[str]) -> None:
        if missing:
            self._warn_once(
                "inputs", f"trial {trial.number} reports no {', '.join(missing)}, which "
                f"predictor={self.policy.predictor.name!r} needs; not pruning (report with "
                "NCPCallback or report_beta_eff(..., terms=...)).")

    def predict_final(self, study: optuna.study.Study, trial: FrozenTrial,
                      completed: Any = None) -> float:
        """The trial's predicted final value, in the objective's own units (NaN if
        none). ``completed`` is accepted for compatibility and not needed."""
        view = self._view(study, trial)
        sign = view.sign
        history = trial_history(trial, sign)
        missing = missing_inputs(self.policy.predictor, history) if len(history) else []
        self._warn_missing(trial, missing)
        value = math.nan if missing else self.policy.predict(history, view)
        return sign * value if math.isfinite(value) else math.nan

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        if self.base is not None:
            if HISTORY_ATTR not in trial.user_attrs and trial.intermediate_values:
                self._warn_once(
                    "history", f"trial {trial.number} has no predicted finals (report with "
                    "report_beta_eff / NCPCallback); the base pruner sees raw values.")
            return self.base.prune(PredictedStudy(study), predicted_view(trial))  # type: ignore[arg-type]
        return self.decide(study, trial).stop

    def decide(self, study: optuna.study.Study, trial: FrozenTrial) -> rules.Decision:
        """The decision for ``trial`` at its latest step, with the reason (what
        :meth:`prune` returns as ``decision.stop``)."""
        return self._verdict(study, trial).decision


__all__ = ["BETA_ATTR", "HISTORY_ATTR", "PREDICTION_ATTR", "TERMS_ATTR", "NCPPruner",
           "PredictedStudy", "predicted_view", "trial_history"]
