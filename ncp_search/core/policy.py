"""Stop policies: one object per algorithm that owns the whole decision for a trial.

A policy decides for one trial from its :class:`~ncp_search.core.history.TrialHistory`
and a small host-neutral :class:`StudyView` of the other trials. Everything that
makes the decision lives here, in this order, for every host:

1. no reports yet: continue (``no_reports``);
2. at or past the last step (``max_step``): continue (``last_step``; the trial has
   used its budget, a stop would only hide its final);
3. a trial that had completed and is run again (a host restarted it):
   continue (``completed_before_restore``); one that this policy had stopped at a step
   and is run again: continue before that step, stop there (``stopped_before_restore``:
   it repeats its fate, as the completed one does, instead of being judged again on a
   study that has moved on);
4. the latest *reported* value is a NaN or infinite number: stop (``diverged``,
   unless ``prune_diverged=False``);
5. the latest reported value is not a finite number (``None``, a string, or a NaN
   with ``prune_diverged=False``): continue (``no_value``);
6. the algorithm's own guards and comparison (:class:`AshaPolicy`,
   :class:`PercentilePolicy`);
7. the conformal incumbent test (``incumbent_alpha``), only once the algorithm's
   warm-up has passed (never at ``warmup`` or ``interval``).

Adapters (:class:`ncp_search.NCPPruner`, :class:`ncp_search.NCPScheduler`) only
translate: host objects into histories and a view, the verdict back into the
host's answer. A contract test runs one scenario table through both hosts.

Units: steps are the host's own (0- or 1-based, strided); ``first_step`` says at
which step a trial reports its first epoch, which places ASHA's rungs. Values are
"higher is better" (the view and histories are already sign-normalised).

Example:
    >>> from ncp_search.core.history import TrialHistory
    >>> from ncp_search.core.policy import AshaPolicy, StaticView
    >>> policy = AshaPolicy(reduction_factor=3, min_resource=1, first_step=0)
    >>> trial = TrialHistory.from_reports({0: 0.52})
    >>> view = StaticView(rungs={0.0: [0.70, 0.80, 0.90]})
    >>> verdict = policy.decide(trial, view)
    >>> verdict.stop, verdict.decision.reason
    (True, 'below')
"""

from __future__ import annotations

import math
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ncp_search.core import rules
from ncp_search.core.history import REPORTED_SERIES, TrialHistory, as_number
from ncp_search.core.predictors import (
    CrossTrialModel,
    Predictor,
    best_so_far,
    check_feedable,
    fit_cross_trial,
    missing_inputs,
    predict_final,
)

PREDICTION_SERIES = "predicted_final"
"""The series name under which histories carry the predictions recorded at each step
(read by the percentile rule's ``kappa``)."""

_LATEST: Any = object()  # "the history's latest value"

_NO_INCUMBENT = frozenset({"no_reports", "last_step", "completed_before_restore",
                           "stopped_before_restore",
                           "diverged", "no_value", "warmup", "interval"})
"""Reasons after which the incumbent test does not run (the trial is not judged yet)."""


class Horizon(Protocol):
    """The part of a view that places the last step (:meth:`Policy.horizon`)."""

    def max_last_step(self) -> float | None:
        """The largest last step of a completed trial (None while none has one)."""


class StudyView(Horizon, Protocol):
    """What a policy reads of the *other* trials of the study ("higher is better").

    Failed, errored and removed trials are never in it, nor is the trial being
    decided. Each host builds one from its own objects (Optuna: the study's storage;
    Ray: :class:`ncp_search.core.pool.TrialPool`).
    """

    def finals(self) -> Sequence[float]:
        """Final values of the completed trials (non-finite ones may be included;
        the policy leaves them out)."""

    def completed(self) -> Mapping[Hashable, TrialHistory]:
        """Histories of the completed trials, by a stable key, in completion order
        (with :data:`PREDICTION_SERIES` where the host recorded predictions)."""

    def latest_predictions(self) -> Sequence[float]:
        """The latest predictions of the running and stopped trials (not completed)."""

    def rung_values(self, rung: float) -> Sequence[float]:
        """The predictions the other trials had at ``rung`` (their first report at or
        past it; NaN or absent for those that never reached it)."""


@dataclass
class StaticView:
    """A :class:`StudyView` over plain values (tests, replays, documentation)."""

    done: dict[Hashable, TrialHistory] = field(default_factory=dict)
    latest: list[float] = field(default_factory=list)
    rungs: dict[float, list[float]] = field(default_factory=dict)

    def finals(self) -> Sequence[float]:
        return [h.final for h in self.done.values()]

    def completed(self) -> Mapping[Hashable, TrialHistory]:
        return self.done

    def latest_predictions(self) -> Sequence[float]:
        return self.latest

    def rung_values(self, rung: float) -> Sequence[float]:
        return self.rungs.get(float(rung), [])

    def max_last_step(self) -> float | None:
        steps = [h.last_step for h in self.done.values() if len(h)]
        return max(steps) if steps else None


@dataclass(frozen=True)
class Verdict:
    """A policy's answer for one trial at its latest step.

    Attributes:
        decision: stop or continue, and why (:class:`ncp_search.core.rules.Decision`).
        prediction: the predicted final the policy used ("higher is better"; NaN
            where it predicted nothing, e.g. in warm-up).
        rung: the ASHA rung at which the trial was compared (record the prediction
            there), else None.
        missing: the series the predictor needs and the trial did not report (the
            adapter warns once in its host's words).
    """

    decision: rules.Decision
    prediction: float = math.nan
    rung: float | None = None
    missing: tuple[str, ...] = ()

    @property
    def stop(self) -> bool:
        return self.decision.stop


class Named:
    """What every policy has: its rule's name and the predictor that ranks trials."""

    name: ClassVar[str] = ""
    predictor: Predictor

    @property
    def uses_beta_eff(self) -> bool:
        """Whether the predictor reads anything the probe measures."""
        return self.predictor.uses_beta_eff

    def _identity(self) -> dict[str, Any]:
        return {"policy": type(self).__name__, "rule": self.name,
                "predictor": self.predictor.name, "uses_beta_eff": self.uses_beta_eff}


class Policy(Named):
    """Shared guards, prediction and incumbent test; subclasses add their rule.

    Args:
        predictor: a name from :data:`ncp_search.core.predictors.PREDICTORS`
            (``best`` by default: the best value so far).
        max_step: the last step of a complete trial: extrapolating predictors predict
            the value there and no trial is stopped at or after it. ``None``: the
            largest last step of the completed trials (no last-step guard).
        incumbent_alpha: also stop when even a conformal upper bound at this level
            of the trial's final is below the best completed final
            (:func:`ncp_search.core.rules.incumbent_rule`); ``None`` turns it off.
        prune_diverged: stop at once on a NaN or infinite reported value.
        feeds: the series the host can report (a predictor needing others is refused).
        host: the adapter's name, for error messages.
    """

    def __init__(
        self,
        *,
        predictor: str = "best",
        max_step: float | None = None,
        incumbent_alpha: float | None = None,
        prune_diverged: bool = True,
        feeds: Sequence[str] = REPORTED_SERIES,
        host: str = "policy",
    ) -> None:
        if max_step is not None and not (math.isfinite(max_step) and max_step >= 0):
            raise ValueError(f"max_step must be >= 0, but got max_step={max_step}.")
        if incumbent_alpha is not None and not 0.0 < incumbent_alpha < 1.0:
            raise ValueError("incumbent_alpha must be in (0, 1) or None, but got "
                             f"incumbent_alpha={incumbent_alpha}.")
        if not isinstance(prune_diverged, bool):
            raise TypeError("prune_diverged must be True or False, but got "
                            f"prune_diverged={prune_diverged!r}.")
        self.predictor: Predictor = check_feedable(predictor, feeds, host)
        self.max_step = None if max_step is None else float(max_step)
        self.incumbent_alpha = incumbent_alpha
        self.prune_diverged = prune_diverged
        self._lock = threading.Lock()
        self._models: dict[tuple[float, tuple[Hashable, ...]], CrossTrialModel | None] = {}
        self._incumbent: tuple[Any, list[float], list[float]] = (None, [], [])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_models"] = {}
        state["_incumbent"] = (None, [], [])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- settings
    def settings(self) -> dict[str, Any]:
        """The policy's class and settings as JSON values."""
        return {**self._identity(), "max_step": self.max_step,
                "incumbent_alpha": self.incumbent_alpha,
                "prune_diverged": self.prune_diverged, **self._own_settings()}

    def _own_settings(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.settings().items()
                          if k not in ("policy", "rule", "uses_beta_eff"))
        return f"{type(self).__name__}({shown})"

    # ---------------------------------------------------------------- prediction
    def horizon(self, trial: TrialHistory, view: Horizon) -> float:
        """The step a complete trial reports last, as far as the policy knows."""
        if self.max_step is not None:
            return self.max_step
        known = view.max_last_step()
        last = trial.last_step if len(trial) else 0.0
        return last if known is None else max(float(known), last)

    def predict(self, trial: TrialHistory, view: StudyView) -> float:
        """The trial's predicted final value ("higher is better"; NaN if none)."""
        if not len(trial) or missing_inputs(self.predictor, trial):
            return math.nan
        peers: list[TrialHistory] = []
        model: CrossTrialModel | None | bool = False
        if self.predictor.cross_trial:
            completed = view.completed()
            step = trial.last_step
            reached = tuple(k for k, p in completed.items()
                            if p.is_complete and len(p) and p.last_step >= step)
            key = (step, reached)
            with self._lock:
                cached = self._models.get(key, False)
            if cached is False:
                peers = [completed[k] for k in reached]
                cached = fit_cross_trial(self.predictor, peers, step)
                with self._lock:
                    self._models = {k: v for k, v in self._models.items() if k[0] != step}
                    self._models[key] = cached
            model = cached
        return predict_final(self.predictor, trial, horizon=self.horizon(trial, view),
                             peers=peers, model=model)

    def value_at(self, trial: TrialHistory, step: float, view: Horizon) -> float:
        """What the policy would have predicted for ``trial`` at its ``step``, from its
        curve up to there: for hosts that store no prediction there. NaN for
        predictors that need the probe or other trials (not reconstructible)."""
        if self.predictor.uses_beta_eff or self.predictor.cross_trial:
            return math.nan
        cut = trial.until(step)
        if not len(cut):
            return math.nan
        return predict_final(self.predictor, cut, horizon=max(self.horizon(cut, view), step))

    # ---------------------------------------------------------------- decision
    def decide(
        self,
        trial: TrialHistory,
        view: StudyView,
        *,
        reported: object = _LATEST,
        rerun: bool = False,
        stopped_before: float | None = None,
    ) -> Verdict:
        """The verdict for ``trial`` at its latest step.

        Args:
            trial: the trial's history ("higher is better").
            view: the other trials.
            reported: the latest value exactly as the host received it (a NaN
                there is a diverged run; ``None`` or a string is a missing value).
                Default: the history's latest value.
            rerun: the trial had completed and the host runs it again.
            stopped_before: the step at which this policy stopped the trial before
                the host ran it again (None: it was not stopped).
        """
        if not len(trial):
            return Verdict(rules.Decision(False, "no_reports"))
        step = trial.last_step
        if reported is _LATEST:
            reported = float(trial.values[-1]) * trial.sign
        if self.max_step is not None and step >= self.max_step:
            return Verdict(rules.Decision(False, "last_step"))
        if rerun:
            return Verdict(rules.Decision(False, "completed_before_restore"))
        if stopped_before is not None:
            return Verdict(rules.Decision(step >= stopped_before, "stopped_before_restore"))
        if self.prune_diverged and rules.is_diverged(reported):
            return Verdict(rules.diverged_rule(reported))
        if not math.isfinite(as_number(reported)):
            return Verdict(rules.Decision(False, "no_value"))
        verdict = self._judge(trial, view)
        if (self.incumbent_alpha is None or verdict.stop
                or verdict.decision.reason in _NO_INCUMBENT):
            return verdict
        incumbent = self._incumbent_test(trial, view)
        if not incumbent.stop:
            return verdict
        return Verdict(incumbent, verdict.prediction, verdict.rung, verdict.missing)

    def _predicted(self, trial: TrialHistory, view: StudyView) -> tuple[float, tuple[str, ...]]:
        missing = tuple(missing_inputs(self.predictor, trial))
        return (math.nan, missing) if missing else (self.predict(trial, view), ())

    def _judge(self, trial: TrialHistory, view: StudyView) -> Verdict:
        raise NotImplementedError

    def _incumbent_test(self, trial: TrialHistory, view: StudyView) -> rules.Decision:
        assert self.incumbent_alpha is not None
        step = trial.last_step
        completed = view.completed()
        key = (tuple(completed), step)
        with self._lock:
            cached = self._incumbent if self._incumbent[0] == key else None
        if cached is None:
            peers = list(completed.values())
            cached = (key, [best_so_far(p.until(step), step) for p in peers],
                      [p.final for p in peers])
            with self._lock:
                self._incumbent = cached
        _, best_at, finals = cached
        return rules.incumbent_rule(best_so_far(trial, step), peers_best=best_at,
                                    peers_final=finals, alpha=self.incumbent_alpha)


class AshaPolicy(Policy):
    """Asynchronous successive halving on predicted finals.

    Rungs after ``min_resource * reduction_factor**k`` epochs (reported at steps
    ``first_step - 1 + min_resource * reduction_factor**k``) below the last step. At a
    trial's first report at or past a rung, stop it when its prediction is below the
    ``100 * (1 - 1/reduction_factor)`` percentile of the predictions the other trials
    had at that rung; an empty rung continues. Before the first rung: ``warmup``.
    Between rungs: ``already_at_rung``.

    Args:
        reduction_factor: keep the best ``1/reduction_factor`` at each rung (> 1).
        min_resource: epochs before the first rung (>= 1).
        first_step: the step of a trial's first epoch (0 for Keras' epoch index,
            1 for Ray's ``training_iteration``).
        **common: see :class:`Policy`.
    """

    name = "asha"

    def __init__(self, *, reduction_factor: float = 3.0, min_resource: float = 1,
                 first_step: float = 0, **common: Any) -> None:
        super().__init__(**common)
        if not reduction_factor > 1.0:
            raise ValueError(
                f"reduction_factor must be > 1, but got reduction_factor={reduction_factor}.")
        if not min_resource >= 1:
            raise ValueError(f"min_resource must be >= 1, but got min_resource={min_resource}.")
        self.reduction_factor = float(reduction_factor)
        self.min_resource = min_resource
        self.first_step = first_step

    def _own_settings(self) -> dict[str, Any]:
        return {"reduction_factor": self.reduction_factor, "min_resource": self.min_resource,
                "first_step": self.first_step}

    def rungs(self, last: float) -> list[float]:
        """The rung steps below ``last``."""
        return rules.asha_rung_steps(self.min_resource, self.reduction_factor, last,
                                     self.first_step)

    def _judge(self, trial: TrialHistory, view: StudyView) -> Verdict:
        step = trial.last_step
        last = self.max_step if self.max_step is not None else view.max_last_step()
        rung = rules.current_rung(step, self.rungs(step + 1 if last is None else last))
        if rung is None:
            return Verdict(rules.Decision(False, "warmup"))
        prediction, missing = self._predicted(trial, view)
        first_at = float(trial.steps[trial.steps >= rung][0])
        if first_at != step:
            return Verdict(rules.Decision(False, "already_at_rung", prediction), prediction,
                           missing=missing)
        if missing:
            return Verdict(rules.Decision(False, "no_prediction"), missing=missing)
        decision = rules.asha_rule(prediction, recorded=view.rung_values(rung),
                                   reduction_factor=self.reduction_factor)
        return Verdict(decision, prediction, rung)


class PercentilePolicy(Policy):
    """Stop when the prediction is below the ``percentile`` of the completed trials'
    finals and the other trials' latest predictions (the 0.1 default rule).

    Args:
        percentile: keep trials predicted in the best ``percentile`` percent (0..100).
        n_startup_trials: no stop until this many trials completed (at least 1).
        n_warmup_steps: no decision at steps below this (host steps).
        interval_steps: decide at the first report of every ``interval_steps`` steps
            after warm-up (>= 1).
        kappa: decide on ``prediction + kappa * spread``, the spread being that of
            ``final - prediction`` over completed trials at this step.
        **common: see :class:`Policy`.
    """

    name = "percentile"

    def __init__(self, *, percentile: float = 50.0, n_startup_trials: int = 5,
                 n_warmup_steps: float = 2, interval_steps: int = 1, kappa: float = 0.0,
                 **common: Any) -> None:
        super().__init__(**common)
        checks = (("percentile", percentile, "in [0, 100]", 0.0 <= percentile <= 100.0),
                  ("n_startup_trials", n_startup_trials, "non-negative", n_startup_trials >= 0),
                  ("n_warmup_steps", n_warmup_steps, "non-negative", n_warmup_steps >= 0),
                  ("interval_steps", interval_steps, ">= 1", interval_steps >= 1),
                  ("kappa", kappa, "finite", math.isfinite(kappa)))
        for name, value, what, holds in checks:
            if not holds:
                raise ValueError(f"{name} must be {what}, but got {name}={value}.")
        self.percentile = float(percentile)
        self.n_startup_trials = int(n_startup_trials)
        self.n_warmup_steps = n_warmup_steps
        self.interval_steps = int(interval_steps)
        self.kappa = float(kappa)

    def _own_settings(self) -> dict[str, Any]:
        return {"percentile": self.percentile, "n_startup_trials": self.n_startup_trials,
                "n_warmup_steps": self.n_warmup_steps, "interval_steps": self.interval_steps,
                "kappa": self.kappa}

    def _judge(self, trial: TrialHistory, view: StudyView) -> Verdict:
        step = trial.last_step
        if rules.in_warmup(step, self.n_warmup_steps):
            return Verdict(rules.Decision(False, "warmup"))
        if not rules.is_check_step(step, trial.steps.tolist(), self.n_warmup_steps,
                                   self.interval_steps):
            return Verdict(rules.Decision(False, "interval"))
        # Predicted in start-up too: hosts record it (kappa reads the completed
        # trials' predictions at every step).
        prediction, missing = self._predicted(trial, view)
        finals = list(view.finals())
        guard = rules.percentile_rule(math.nan, finals=finals,
                                      n_startup_trials=self.n_startup_trials)
        if guard.reason == "startup":
            return Verdict(guard, prediction, missing=missing)
        if missing:
            return Verdict(rules.Decision(False, "no_prediction"), missing=missing)
        decision = rules.percentile_rule(
            prediction, finals=finals, others=list(view.latest_predictions()),
            percentile=self.percentile, n_startup_trials=self.n_startup_trials,
            kappa=self.kappa, spread=self._spread(view, step))
        return Verdict(decision, prediction)

    def _spread(self, view: StudyView, step: float) -> float:
        if self.kappa == 0.0:
            return 0.0
        pairs = []
        for peer in view.completed().values():
            recorded = peer.get(PREDICTION_SERIES)
            history = {float(s): float(p) for s, p in zip(peer.steps, recorded)
                       if math.isfinite(p)}
            pairs.append((rules.prediction_at(history, step), peer.final))
        return rules.prediction_spread(pairs)


POLICIES: dict[str, type[Policy]] = {"asha": AshaPolicy, "percentile": PercentilePolicy}
"""Every policy by its rule name."""


def build_policy(
    rule: str,
    host: str,
    *,
    percentile: float | None = None,
    n_startup_trials: int | None = None,
    n_warmup_steps: float | None = None,
    interval_steps: int | None = None,
    kappa: float | None = None,
    reduction_factor: float = 3.0,
    min_resource: float = 1,
    first_step: float = 0,
    **common: Any,
) -> Policy:
    """The policy an adapter's 0.2-style arguments stand for (``NCPPruner(rule=...,
    ...)``, ``NCPScheduler(rule=..., ...)``): ``rule`` and the settings of both rules,
    ``None`` meaning "not passed".

    Raises:
        ValueError: Optuna-style, naming the argument; also when a setting only the
            percentile rule reads is passed with ``rule="asha"`` (it would be
            ignored: code written for 0.1 would change behaviour silently).
    """
    given = rules.rule_settings(
        rule, host, reduction_factor=reduction_factor,
        incumbent_alpha=common.get("incumbent_alpha"), percentile=percentile,
        n_startup_trials=n_startup_trials, n_warmup_steps=n_warmup_steps,
        interval_steps=interval_steps, kappa=kappa)
    if rule == "asha":
        return AshaPolicy(reduction_factor=reduction_factor, min_resource=min_resource,
                          first_step=first_step, host=host, **common)
    return PercentilePolicy(
        host=host, percentile=given["percentile"], n_startup_trials=int(given["n_startup_trials"]),
        n_warmup_steps=given["n_warmup_steps"], interval_steps=int(given["interval_steps"]),
        kappa=given["kappa"], **common)


def make_policy(rule: str, **settings: Any) -> Policy:
    """The policy named ``rule`` with ``settings``.

    Raises:
        ValueError: for an unknown rule, naming the known ones.
        TypeError: for a setting the policy does not take, naming its settings.
    """
    if rule not in POLICIES:
        raise ValueError(f"rule must be one of {tuple(POLICIES)}, but got rule={rule!r}.")
    return POLICIES[rule](**settings)


__all__ = ["POLICIES", "PREDICTION_SERIES", "AshaPolicy", "PercentilePolicy", "Policy",
           "StaticView", "StudyView", "Verdict", "build_policy", "make_policy"]
