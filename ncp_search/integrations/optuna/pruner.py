"""Optuna pruner that decides from each trial's predicted final value.

Usage::

    study = optuna.create_study(direction="maximize", pruner=ncp_search.NCPPruner(n_steps=20))

and report ``beta_eff`` next to the metric each epoch, with
:class:`ncp_search.NCPCallback` (Keras) or :func:`ncp_search.report_beta_eff`.

Everything the pruner reads lives in the study's storage (intermediate values and
user attributes), so it works unchanged with in-memory, RDB and Journal storages
and with several workers.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from typing import Any

import numpy as np

try:
    import optuna
    from optuna.pruners import BasePruner
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState
except ImportError as error:  # pragma: no cover - exercised without optuna only
    raise ImportError(
        "ncp_search.NCPPruner needs Optuna: pip install 'ncp-search[optuna]'"
    ) from error

from ncp_search.core.predictors import (
    PREDICTORS,
    SCORE_ONLY,
    feature_matrix,
    fit_cross_trial,
    is_cross_trial,
    predict,
    uses_beta,
)

logger = logging.getLogger(__name__)

BETA_ATTR = "ncp_beta_eff"
PREDICTION_ATTR = "ncp_predicted_final"
HISTORY_ATTR = "ncp_predicted_history"


def predicted_view(trial: FrozenTrial) -> FrozenTrial:
    """The trial with its intermediate values replaced by its predicted finals at
    each step (steps without a prediction keep their raw value)."""
    history = trial.user_attrs.get(HISTORY_ATTR)
    if not history:
        return trial
    values = dict(trial.intermediate_values)
    for step, value in history.items():
        if value is not None and int(step) in values:
            values[int(step)] = float(value)
    return FrozenTrial(
        number=trial.number, state=trial.state, value=trial.value if trial.values else None,
        datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
        params=trial.params, distributions=trial.distributions, user_attrs=trial.user_attrs,
        system_attrs=trial.system_attrs, intermediate_values=values, trial_id=trial._trial_id,
    )


class PredictedStudy:
    """A view of a study whose trials report predicted finals instead of raw values,
    handed to a built-in pruner (``NCPPruner(base=...)``). Everything else is the
    real study's."""

    def __init__(self, study: optuna.study.Study) -> None:
        self._wrapped = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [predicted_view(t) for t in self._wrapped.get_trials(deepcopy=deepcopy,
                                                                    states=states)]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


def trial_run(trial: FrozenTrial, sign: float) -> dict[str, Any]:
    """A frozen trial as a run of the recorded-table format (metric made "higher is
    better" by ``sign``)."""
    betas = trial.user_attrs.get(BETA_ATTR, {})
    curve = [{"step": 0, "val_accuracy": None}]
    for step in sorted(trial.intermediate_values):
        value = trial.intermediate_values[step]
        beta = betas.get(str(step))
        curve.append(
            {
                "step": step + 1,
                "val_accuracy": sign * value if value is not None else float("nan"),
                "beta_eff": float("nan") if beta is None else float(beta),
            }
        )
    final = trial.value if trial.state == TrialState.COMPLETE else None
    return {
        "trial": str(trial.number),
        "curve": curve,
        "final_val_accuracy": float("nan") if final is None else sign * final,
    }


class NCPPruner(BasePruner):
    """Prune a trial whose predicted final value is worse than a percentile of the others.

    The reference is the ``percentile`` of (i) the final values of the completed
    trials and (ii) the latest predicted finals of the running and pruned trials
    (stored by :class:`ncp_search.NCPCallback` / :func:`ncp_search.report_beta_eff`).

    Args:
        percentile: keep trials predicted to land in the best ``percentile`` percent
            (50 is a median rule), 0..100.
        n_startup_trials: no pruning until this many trials have completed.
        n_warmup_steps: no pruning before this many reports (steps ``0 .. n-1``).
        interval_steps: check every this many steps after warm-up (>= 1).
        n_steps: the number of steps a complete trial runs (needed by extrapolating
            predictors such as ``pow3``); default: the longest completed trial.
        predictor: a name from :data:`ncp_search.core.predictors.PREDICTORS`.
        kappa: decide on ``mean + kappa * spread`` where ``spread`` is the standard
            deviation of the completed trials' errors between their last stored
            prediction and their final value (``kappa > 0`` prunes less eagerly).
            0 decides on the mean.
        base: run this built-in Optuna pruner (Median, Percentile,
            SuccessiveHalving, Hyperband, Patient, ...) on the predicted finals
            instead of the raw intermediate values; the percentile rule above is
            then not used. Needs the prediction history that
            :func:`ncp_search.report_beta_eff` stores.

    NaN and edge cases:
        Fail open (never prune) with fewer than ``n_startup_trials`` completed
        trials, before ``n_warmup_steps``, without reports, when the prediction is
        NaN, or when a ``beta_eff`` predictor gets no ``beta_eff`` (warned once).
        A minimised objective (error) is handled by flipping its sign once, here.
    """

    def __init__(
        self,
        percentile: float = 50.0,
        n_startup_trials: int = 5,
        n_warmup_steps: int = 2,
        interval_steps: int = 1,
        *,
        n_steps: int | None = None,
        predictor: str = "best",
        kappa: float = 0.0,
        base: BasePruner | None = None,
    ) -> None:
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], but got percentile={percentile}.")
        if n_startup_trials < 0:
            raise ValueError(
                "n_startup_trials must be non-negative, but got "
                f"n_startup_trials={n_startup_trials}."
            )
        if n_warmup_steps < 0:
            raise ValueError(
                f"n_warmup_steps must be non-negative, but got n_warmup_steps={n_warmup_steps}."
            )
        if interval_steps < 1:
            raise ValueError(
                f"interval_steps must be >= 1, but got interval_steps={interval_steps}."
            )
        if n_steps is not None and n_steps < 1:
            raise ValueError(f"n_steps must be >= 1, but got n_steps={n_steps}.")
        if predictor not in PREDICTORS or predictor in SCORE_ONLY:
            usable = sorted(set(PREDICTORS) - set(SCORE_ONLY))
            raise ValueError(f"predictor must be one of {usable}, but got predictor={predictor!r}.")
        if not math.isfinite(kappa):
            raise ValueError(f"kappa must be finite, but got kappa={kappa}.")
        self.percentile = float(percentile)
        self.n_startup_trials = int(n_startup_trials)
        self.n_warmup_steps = int(n_warmup_steps)
        self.interval_steps = int(interval_steps)
        self.n_steps = n_steps
        self.predictor = predictor
        self.kappa = float(kappa)
        if base is not None and not isinstance(base, BasePruner):
            raise TypeError(f"base must be an optuna pruner, but got {type(base).__name__}.")
        self.base = base
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._models: dict[tuple[int, tuple[int, ...]], Any] = {}
        self._finals: tuple[tuple[str, int, float], list[float]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_models"] = {}
        state["_finals"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _warn_once(self, key: str, message: str) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    @staticmethod
    def _sign(study: optuna.study.Study) -> float:
        return 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0

    def predict_final(
        self,
        study: optuna.study.Study,
        trial: FrozenTrial,
        completed: list[FrozenTrial] | None = None,
    ) -> float:
        """The trial's predicted final value, in the objective's own units (NaN if none).

        ``completed`` (the study's completed trials) saves a storage read when the
        caller already has them."""
        if not trial.intermediate_values:
            return float("nan")
        sign = self._sign(study)
        run = trial_run(trial, sign)
        if uses_beta(self.predictor) and not trial.user_attrs.get(BETA_ATTR):
            self._warn_once(
                "beta",
                f"trial {trial.number} reports no beta_eff but predictor={self.predictor!r} "
                "needs it; not pruning (use NCPCallback or report_beta_eff).",
            )
            return float("nan")
        k = len(run["curve"]) - 1
        total = self.n_steps or 0
        if is_cross_trial(self.predictor) or self.n_steps is None:
            if completed is None:
                completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if self.n_steps is None:
                total = max([len(t.intermediate_values) for t in completed] + [k])
        if is_cross_trial(self.predictor):
            scores = [self._cross_trial_score(run, k, total, completed or [], sign)]
        else:
            scores = predict(self.predictor, [run], k, total, last_only=True)
        value = float(scores[-1])
        return sign * value if math.isfinite(value) else float("nan")

    def _cross_trial_score(
        self, run: dict[str, Any], k: int, total: int, completed: list[FrozenTrial], sign: float
    ) -> float:
        """Cross-trial prediction; the fitted model is cached per (k, set of completed
        trials that reached step k), so it is refitted only when a trial completes."""
        peers = [t for t in completed if len(t.intermediate_values) >= k]
        key = (k, tuple(sorted(t.number for t in peers)))
        with self._lock:
            fitted = self._models.get(key, False)
        if fitted is False:
            chosen = PREDICTORS[self.predictor]
            fitted = fit_cross_trial(
                chosen.featurize,  # type: ignore[attr-defined]
                [trial_run(t, sign) for t in peers],
                k,
                residual=chosen.residual,  # type: ignore[attr-defined]
            )
            with self._lock:
                self._models = {kk: v for kk, v in self._models.items() if kk[0] != k}
                self._models[key] = fitted
        last = float(predict("last", [run], k, total, last_only=True)[0])
        if fitted is None:
            return last
        chosen = PREDICTORS[self.predictor]
        value = fitted.predict(feature_matrix(chosen.featurize, [run], k)[0])  # type: ignore[attr-defined]
        return value + last if chosen.residual else value  # type: ignore[attr-defined]

    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        if self.base is not None:
            if HISTORY_ATTR not in trial.user_attrs and trial.intermediate_values:
                self._warn_once(
                    "history",
                    f"trial {trial.number} has no predicted finals (report with "
                    "report_beta_eff / NCPCallback); the base pruner sees raw values.",
                )
            return self.base.prune(PredictedStudy(study), predicted_view(trial))  # type: ignore[arg-type]
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        if (step - self.n_warmup_steps) % self.interval_steps:
            return False
        trials = study.get_trials(deepcopy=False)  # one storage read for everything below
        completed = [t for t in trials if t.state == TrialState.COMPLETE]
        if len(completed) == 0 or len(completed) < self.n_startup_trials:
            return False
        predicted = self.predict_final(study, trial, completed)
        if math.isnan(predicted):
            return False
        sign = self._sign(study)
        others = list(self._completed_finals(study.study_name, completed, sign))
        for other in trials:
            if other.state not in (TrialState.RUNNING, TrialState.PRUNED):
                continue
            value = other.user_attrs.get(PREDICTION_ATTR, {}).get("value")
            if other.number != trial.number and value is not None and math.isfinite(value):
                others.append(sign * value)
        reference = float(np.percentile(others, 100.0 - self.percentile))
        return sign * predicted + self.kappa * self._spread(completed, sign) < reference

    def _completed_finals(
        self, study_name: str, completed: list[FrozenTrial], sign: float
    ) -> list[float]:
        """Signed final values of the completed trials, cached by study and count (a
        completed trial never changes, so the count identifies the set)."""
        key = (study_name, len(completed), sign)
        with self._lock:
            cached = self._finals
        if cached is not None and cached[0] == key:
            return cached[1]
        finals = [sign * t.value for t in completed if t.value is not None]
        with self._lock:
            self._finals = (key, finals)
        return finals

    def _spread(self, completed: list[FrozenTrial], sign: float) -> float:
        if self.kappa == 0.0:
            return 0.0
        errors = [
            sign * (t.value - t.user_attrs[PREDICTION_ATTR]["value"])
            for t in completed
            if t.value is not None and PREDICTION_ATTR in t.user_attrs
            and t.user_attrs[PREDICTION_ATTR].get("value") is not None
        ]
        return float(np.std(errors)) if len(errors) >= 2 else 0.0
