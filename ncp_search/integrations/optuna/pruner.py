"""Optuna pruner that decides from each trial's predicted final value.

Usage::

    study = optuna.create_study(direction="maximize", pruner=ncp_search.NCPPruner())

and report ``beta_eff`` (and the probe terms) next to the metric each epoch, with
:class:`ncp_search.NCPCallback` (Keras) or :func:`ncp_search.report_beta_eff`.

This module only translates: a ``FrozenTrial`` becomes a
:class:`~ncp_search.core.history.TrialHistory` (:func:`trial_history`), the
prediction comes from :mod:`ncp_search.core.predictors` and the decision from
:mod:`ncp_search.core.rules`. Everything it reads lives in the study's storage
(intermediate values and user attributes), so it works unchanged with in-memory,
RDB and Journal storages and with several workers.
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from typing import Any

try:
    import optuna
    from optuna.pruners import BasePruner
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState
except ImportError as error:  # pragma: no cover - exercised without optuna only
    raise ImportError(
        "ncp_search.NCPPruner needs Optuna: pip install 'ncp-search[optuna]'"
    ) from error

from ncp_search.core import rules
from ncp_search.core.history import REPORTED_SERIES, TrialHistory, as_number
from ncp_search.core.predictors import (
    CrossTrialModel,
    best_so_far,
    check_feedable,
    fit_cross_trial,
    missing_inputs,
    predict_final,
)
from ncp_search.integrations.optuna.index import StudyIndex

logger = logging.getLogger(__name__)

BETA_ATTR = "ncp_beta_eff"  # {step: beta_eff}
TERMS_ATTR = "ncp_probe_terms"  # {step: {series name: value}} (probe terms, train_loss)
PREDICTION_ATTR = "ncp_predicted_final"  # {"step": s, "value": v} (the latest)
HISTORY_ATTR = "ncp_predicted_history"  # {step: predicted final}


def trial_history(trial: FrozenTrial, sign: float) -> TrialHistory:
    """A frozen trial as a :class:`TrialHistory` (metric made "higher is better" by
    ``sign``): its intermediate values at their own steps, ``beta_eff`` and the
    probe terms stored by :func:`ncp_search.report_beta_eff`, and its final value
    if it is complete."""
    series: dict[str, dict[Any, Any]] = {"beta_eff": trial.user_attrs.get(BETA_ATTR) or {}}
    for step, terms in (trial.user_attrs.get(TERMS_ATTR) or {}).items():
        if isinstance(terms, dict):
            for name, value in terms.items():
                series.setdefault(name, {})[step] = value
    final = trial.value if trial.state == TrialState.COMPLETE and trial.values else None
    return TrialHistory.from_reports(trial.intermediate_values, sign=sign, series=series,
                                     final=final)


def predicted_view(trial: FrozenTrial) -> FrozenTrial:
    """The trial with its intermediate values replaced by its predicted finals at
    each step (steps without a prediction keep their raw value)."""
    history = trial.user_attrs.get(HISTORY_ATTR)
    if not history:
        return trial
    values = dict(trial.intermediate_values)
    for step, value in history.items():
        number = as_number(value)
        if math.isfinite(number) and int(step) in values:
            values[int(step)] = number
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


class NCPPruner(BasePruner):
    """Prune a trial whose predicted final value is poor.

    Two rules (``rule=``), both in :mod:`ncp_search.core.rules`:

    - ``"asha"`` (default, the budget benchmark's pick: docs/budget/):
      asynchronous successive halving on the predictions: rungs after
      ``min_resource * reduction_factor**k`` epochs (at steps ``first_step - 1 +
      min_resource * reduction_factor**k``) below ``max_step``; at the first
      report at or past a rung, prune when the prediction is below the
      ``100 * (1 - 1/reduction_factor)`` percentile of the predictions the other
      trials had there (read from their stored prediction history, or computed
      from their curves). An empty rung continues; no start-up trials needed.
    - ``"percentile"`` (the default in 0.1): prune when the prediction is below
      the ``percentile`` of (i) the final values of the completed trials and
      (ii) the latest predicted finals of the running and pruned trials (stored by
      :class:`ncp_search.NCPCallback` / :func:`ncp_search.report_beta_eff`).

    Either rule can add the conformal incumbent test (``incumbent_alpha``, see
    :func:`ncp_search.core.rules.incumbent_rule`).

    Args:
        percentile: for the percentile rule, keep trials predicted to land in the
            best ``percentile`` percent (50, the default, is a median rule), 0..100.
        n_startup_trials: percentile rule: no pruning until this many trials have
            completed (default 5; at least one always).
        n_warmup_steps: percentile rule: no pruning at steps below this (steps as
            reported; default 2).
        interval_steps: percentile rule (default 1): check at the first report of
            every ``interval_steps`` steps after warm-up (>= 1); strided or gapped
            steps are fine.
        max_step: the step a complete trial reports last: extrapolating predictors
            such as ``pow3`` predict the value there, ASHA's rungs lie below it, and
            no trial is pruned at or after it (it has used its budget; pruning would
            only hide its final). Default: the largest last step of the completed
            trials (no last-step guard then).
        predictor: a name from :data:`ncp_search.core.predictors.PREDICTORS` that
            this pruner can feed (``ncp_two_batch`` needs a second probe batch no
            reporting helper stores; ``tse`` is a score, not a value).
        kappa: percentile rule (default 0): decide on ``prediction + kappa *
            spread``, where ``spread`` is the standard deviation of ``final -
            prediction`` over completed trials, each prediction taken at the step
            being decided (``kappa > 0`` prunes less eagerly).
        rule: ``"asha"`` (default) or ``"percentile"``. ``percentile``,
            ``n_startup_trials``, ``n_warmup_steps``, ``interval_steps`` and ``kappa``
            belong to the percentile rule: passing one with ``rule="asha"`` is a
            ValueError (it would be ignored; the rungs say when ASHA decides).
        reduction_factor: ASHA keeps the best ``1/reduction_factor`` at each rung (> 1).
        min_resource: the epochs before ASHA's first rung (>= 1).
        first_step: the step at which a trial reports its first epoch: 0 (default)
            for Keras' epoch index, as :class:`ncp_search.NCPCallback`, the sweeps and
            Optuna's own Keras callback report it; 1 when epochs are counted from 1.
            It places the rungs (with the default, after epochs 1, 3, 9, ... whatever
            the counting); a mismatch moves every rung one epoch (measured: 12-19%
            more epochs for 0-based steps read as 1-based, docs/budget/).
        incumbent_alpha: also prune when even the conformal upper bound at level
            ``incumbent_alpha`` of the trial's final is below the best completed
            final; ``None`` (default) turns the test off.
        prune_diverged: prune a trial at once when its latest reported value is NaN
            or infinite (:func:`ncp_search.core.rules.diverged_rule`), as Optuna's
            built-in pruners do; default True (the budget benchmark: on Taskset's
            TS IRNN, 0.10 of the epochs against 0.29 when diverged trials run on,
            same regret). False lets them run to their end, unjudged.
        base: run this built-in Optuna pruner (Median, Percentile,
            SuccessiveHalving, Hyperband, Patient, ...) on the predicted finals
            instead of the raw intermediate values; the percentile rule above is
            then not used. Needs the prediction history that
            :func:`ncp_search.report_beta_eff` stores.

    Raises:
        ValueError: for an argument out of range or a predictor it cannot feed.

    NaN and edge cases:
        A NaN or infinite latest value prunes the trial (unless
        ``prune_diverged=False``; never at or after ``max_step``). Otherwise fail
        open (never prune) with fewer than ``n_startup_trials`` completed
        trials, before ``n_warmup_steps``, without reports, when the prediction is
        not a number,
        or when a ``beta_eff`` predictor gets no ``beta_eff``/probe terms (warned
        once). Completed trials with a non-finite final are left out of the
        reference. A minimised objective is handled by flipping its sign once,
        in :func:`trial_history`.
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
    ) -> None:
        given = rules.rule_settings(
            rule, "NCPPruner", reduction_factor=reduction_factor,
            incumbent_alpha=incumbent_alpha, percentile=percentile,
            n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps,
            interval_steps=interval_steps, kappa=kappa)
        if max_step is not None and max_step < 0:
            raise ValueError(f"max_step must be >= 0, but got max_step={max_step}.")
        if min_resource < 1:
            raise ValueError(f"min_resource must be >= 1, but got min_resource={min_resource}.")
        if first_step not in (0, 1):
            raise ValueError("first_step must be 0 (epochs reported from 0) or 1 (from 1), "
                             f"but got first_step={first_step!r}.")
        if base is not None and not isinstance(base, BasePruner):
            raise TypeError(f"base must be an optuna pruner, but got {type(base).__name__}.")
        self._predictor = check_feedable(predictor, self.FEEDS, "NCPPruner")
        self.percentile = given["percentile"]
        self.n_startup_trials = int(given["n_startup_trials"])
        self.n_warmup_steps = int(given["n_warmup_steps"])
        self.interval_steps = int(given["interval_steps"])
        self.max_step = max_step
        self.predictor = predictor
        self.kappa = given["kappa"]
        self.rule = rule
        self.reduction_factor = float(reduction_factor)
        self.min_resource = int(min_resource)
        self.first_step = int(first_step)
        self.incumbent_alpha = incumbent_alpha
        self.prune_diverged = bool(prune_diverged)
        self.base = base
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._models: dict[tuple[float, tuple[int, ...]], CrossTrialModel | None] = {}
        self._peers: tuple[tuple[str, int, float], list[TrialHistory]] | None = None
        # (study, trial number, rung step) -> a running trial's value there.
        self._rung_cache: dict[tuple[str, int, int], float] = {}
        self._indexes: dict[tuple[str, float], StudyIndex] = {}
        self._incumbent_cache: tuple[Any, list[float], list[float]] = (None, [], [])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_models"] = {}
        state["_peers"] = None
        state["_rung_cache"] = {}
        state["_indexes"] = {}
        state["_incumbent_cache"] = (None, [], [])
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

    def settings(self) -> dict[str, Any]:
        """This pruner's class and settings as JSON values: what
        :func:`ncp_search.report_beta_eff` stores as the study user attribute
        ``ncp_pruner``, with ``uses_beta_eff`` (whether the predictor reads anything
        the probe measures) and ``base`` (the class name of ``base``, or ``None``)."""
        return {
            "class": type(self).__name__,
            "rule": self.rule,
            "predictor": self.predictor,
            "uses_beta_eff": self._predictor.uses_beta_eff,
            "percentile": self.percentile,
            "n_startup_trials": self.n_startup_trials,
            "n_warmup_steps": self.n_warmup_steps,
            "interval_steps": self.interval_steps,
            "max_step": self.max_step,
            "kappa": self.kappa,
            "reduction_factor": self.reduction_factor,
            "min_resource": self.min_resource,
            "first_step": self.first_step,
            "incumbent_alpha": self.incumbent_alpha,
            "prune_diverged": self.prune_diverged,
            "base": None if self.base is None else type(self.base).__name__,
        }

    # ---------------------------------------------------------------- prediction
    def predict_final(
        self,
        study: optuna.study.Study,
        trial: FrozenTrial,
        completed: list[FrozenTrial] | None = None,
    ) -> float:
        """The trial's predicted final value, in the objective's own units (NaN if none).

        ``completed`` (the study's completed trials) saves a storage read when the
        caller already has them."""
        sign = self._sign(study)
        history = trial_history(trial, sign)
        if not len(history):
            return math.nan
        missing = missing_inputs(self._predictor, history)
        if missing:
            self._warn_once(
                "inputs",
                f"trial {trial.number} reports no {', '.join(missing)}, which predictor="
                f"{self.predictor!r} needs; not pruning (report with NCPCallback or "
                "report_beta_eff(..., terms=...)).",
            )
            return math.nan
        needs_peers = self._predictor.cross_trial or (
            self._predictor.needs_horizon and self.max_step is None)
        peers: list[TrialHistory] = []
        if needs_peers:
            if completed is None:
                completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            peers = self._completed_histories(study.study_name, completed, sign)
        horizon = (float(self.max_step) if self.max_step is not None
                   else max([p.last_step for p in peers if len(p)] + [history.last_step]))
        model: CrossTrialModel | None | bool = False
        if self._predictor.cross_trial:
            model = self._cross_trial_model(history.last_step, peers)
        value = predict_final(self._predictor, history, horizon=horizon, peers=peers,
                              model=model)
        return sign * value if math.isfinite(value) else math.nan

    def _completed_histories(
        self, study_name: str, completed: list[FrozenTrial], sign: float
    ) -> list[TrialHistory]:
        """Histories of the completed trials, cached by study and count (a completed
        trial never changes, so the count identifies the set)."""
        key = (study_name, len(completed), sign)
        with self._lock:
            cached = self._peers
        if cached is not None and cached[0] == key:
            return cached[1]
        histories = [trial_history(t, sign) for t in sorted(completed, key=lambda t: t.number)]
        with self._lock:
            self._peers = (key, histories)
        return histories

    def _cross_trial_model(
        self, step: float, peers: list[TrialHistory]
    ) -> CrossTrialModel | None:
        """The cross-trial model at ``step``, cached per (step, completed trials that
        reached it): refitted only when a trial completes."""
        reached = tuple(i for i, p in enumerate(peers)
                        if p.is_complete and len(p) and p.last_step >= step)
        key = (step, reached)
        with self._lock:
            if key in self._models:
                return self._models[key]
        model = fit_cross_trial(self._predictor, peers, step)
        with self._lock:
            self._models = {k: v for k, v in self._models.items() if k[0] != step}
            self._models[key] = model
        return model

    # ---------------------------------------------------------------- decision
    def prune(self, study: optuna.study.Study, trial: FrozenTrial) -> bool:
        if self.base is not None:
            if HISTORY_ATTR not in trial.user_attrs and trial.intermediate_values:
                self._warn_once(
                    "history",
                    f"trial {trial.number} has no predicted finals (report with "
                    "report_beta_eff / NCPCallback); the base pruner sees raw values.",
                )
            return self.base.prune(PredictedStudy(study), predicted_view(trial))  # type: ignore[arg-type]
        return self.decide(study, trial).stop

    def decide(self, study: optuna.study.Study, trial: FrozenTrial) -> rules.Decision:
        """The decision for ``trial`` at its latest step, with the reason (what
        :meth:`prune` returns as ``decision.stop``)."""
        step = trial.last_step
        if step is None:
            return rules.Decision(False, "no_reports")
        if self.max_step is not None and step >= self.max_step:
            return rules.Decision(False, "last_step")
        if self.prune_diverged:
            diverged = rules.diverged_rule(trial.intermediate_values[step])
            if diverged.stop:
                return diverged
        trials = study.get_trials(deepcopy=False)  # one storage read for everything below
        sign = self._sign(study)
        index, live = self._index(study, trials, sign)
        completed = index.completed
        last = self.max_step if self.max_step is not None else index.max_last_step
        if self.rule == "asha":
            decision = self._asha(study, trial, index, live, sign, last)
        else:
            decision = self._percentile(study, trial, index, live, sign)
        if decision.stop or self.incumbent_alpha is None:
            return decision
        if decision.reason in ("warmup", "interval"):
            return decision
        incumbent = self._incumbent(study, trial, completed, sign)
        return incumbent if incumbent.stop else decision

    def _index(self, study: optuna.study.Study, trials: list[FrozenTrial],
               sign: float) -> tuple[StudyIndex, list[FrozenTrial]]:
        """The study's index of finished trials, brought up to date, and the trials
        that have not finished."""
        key = (study.study_name, sign)
        with self._lock:
            index = self._indexes.get(key)
            if index is None:
                index = self._indexes[key] = self._new_index(sign)
            live = index.update(trials)
        return index, live

    def _new_index(self, sign: float) -> StudyIndex:
        def latest_prediction(trial: FrozenTrial) -> float:
            return sign * as_number((trial.user_attrs.get(PREDICTION_ATTR) or {}).get("value"))

        def rung_value(trial: FrozenTrial, rung: float) -> float:
            return self._value_at_rung(trial, rung, sign, index)

        index = StudyIndex(sign, latest_prediction, rung_value)
        return index

    def _percentile(self, study: optuna.study.Study, trial: FrozenTrial,
                    index: StudyIndex, live: list[FrozenTrial],
                    sign: float) -> rules.Decision:
        step = trial.last_step
        assert step is not None
        if rules.in_warmup(step, self.n_warmup_steps):
            return rules.Decision(False, "warmup")
        if not rules.is_check_step(step, trial.intermediate_values, self.n_warmup_steps,
                                   self.interval_steps):
            return rules.Decision(False, "interval")
        with self._lock:  # another thread (n_jobs > 1) may be updating the index
            finals = list(index.finals)
            others = list(index.pruned_predictions)
        guard = rules.percentile_rule(math.nan, finals=finals,
                                      n_startup_trials=self.n_startup_trials)
        if guard.reason == "startup":
            return guard
        completed = index.completed
        predicted = self.predict_final(study, trial, completed)
        for other in live:
            if other.state != TrialState.RUNNING or other.number == trial.number:
                continue
            stored = other.user_attrs.get(PREDICTION_ATTR) or {}
            others.append(sign * as_number(stored.get("value")))
        return rules.percentile_rule(
            sign * predicted, finals=finals, others=others, percentile=self.percentile,
            n_startup_trials=self.n_startup_trials, kappa=self.kappa,
            spread=self._spread(completed, step, sign),
        )

    def _asha(self, study: optuna.study.Study, trial: FrozenTrial,
              index: StudyIndex, live: list[FrozenTrial], sign: float,
              last: float | None) -> rules.Decision:
        step = trial.last_step
        assert step is not None
        ceiling = last if last is not None else step + 1
        rung = rules.current_rung(step, rules.asha_rung_steps(
            self.min_resource, self.reduction_factor, ceiling, self.first_step))
        if rung is None:
            return rules.Decision(False, "no_rung")
        if _first_step_at(trial, rung) != step:
            return rules.Decision(False, "already_at_rung")
        predicted = self.predict_final(study, trial, index.completed)
        with self._lock:  # another thread (n_jobs > 1) may be updating the index
            recorded = list(index.rung_values(rung))
        recorded += [self._running_rung_value(study, other, rung, sign, index)
                     for other in live
                     if other.number != trial.number and other.state == TrialState.RUNNING]
        return rules.asha_rule(sign * predicted, recorded=recorded,
                               reduction_factor=self.reduction_factor)

    def _running_rung_value(self, study: optuna.study.Study, trial: FrozenTrial,
                            rung: float, sign: float, index: StudyIndex) -> float:
        """:meth:`_value_at_rung` of a running trial, kept once it is a number (the
        value at a reported step does not change)."""
        at = _first_step_at(trial, rung)
        if at is None:
            return math.nan
        key = (study.study_name, trial.number, at)
        with self._lock:
            cached = self._rung_cache.get(key)
        if cached is not None:
            return cached
        value = self._value_at_step(trial, at, sign, index)
        if math.isfinite(value):
            with self._lock:
                self._rung_cache[key] = value
        return value

    def _value_at_rung(self, trial: FrozenTrial, rung: float, sign: float,
                       index: StudyIndex) -> float:
        """A trial's prediction when it reached ``rung`` ("higher is better"; NaN if it
        has not)."""
        at = _first_step_at(trial, rung)
        return math.nan if at is None else self._value_at_step(trial, at, sign, index)

    def _value_at_step(self, trial: FrozenTrial, at: int, sign: float,
                       index: StudyIndex) -> float:
        """The trial's prediction at its step ``at``: the stored one, else computed from
        its curve up to there."""
        stored = (trial.user_attrs.get(HISTORY_ATTR) or {}).get(str(at))
        if stored is not None:
            return sign * as_number(stored)
        if self._predictor.uses_beta_eff or self._predictor.cross_trial:
            return math.nan  # no stored prediction to trust; leave it out
        history = trial_history(trial, sign).until(at)
        horizon = self.max_step if self.max_step is not None else max(
            at, index.max_last_step if index.max_last_step is not None else at)
        return predict_final(self._predictor, history, horizon=horizon)

    def _incumbent(self, study: optuna.study.Study, trial: FrozenTrial,
                   completed: list[FrozenTrial], sign: float) -> rules.Decision:
        assert self.incumbent_alpha is not None
        step = trial.last_step
        assert step is not None
        key = (study.study_name, len(completed), sign, step)
        with self._lock:
            cached = self._incumbent_cache if self._incumbent_cache[0] == key else None
        if cached is None:
            peers = self._completed_histories(study.study_name, completed, sign)
            cached = (key, [best_so_far(p.until(step), step) for p in peers],
                      [p.final for p in peers])
            with self._lock:
                self._incumbent_cache = cached
        _, best_at, finals = cached
        best_now = best_so_far(trial_history(trial, sign), step)
        return rules.incumbent_rule(best_now, peers_best=best_at, peers_final=finals,
                                    alpha=self.incumbent_alpha)

    def _spread(self, completed: list[FrozenTrial], step: int, sign: float) -> float:
        if self.kappa == 0.0:
            return 0.0
        pairs = []
        for t in completed:
            stored = t.user_attrs.get(HISTORY_ATTR) or {}
            history = {float(s): sign * as_number(v) for s, v in stored.items()}
            pairs.append((rules.prediction_at(history, step), sign * as_number(t.value)))
        return rules.prediction_spread(pairs)


def _first_step_at(trial: FrozenTrial, rung: float) -> int | None:
    """The trial's first reported step at or past ``rung`` (None if none)."""
    reached = [s for s in trial.intermediate_values if s >= rung]
    return min(reached) if reached else None
