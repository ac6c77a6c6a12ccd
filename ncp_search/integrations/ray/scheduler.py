"""Ray Tune scheduler that stops trials from their predicted final value.

Usage::

    tune.Tuner(trainable, tune_config=tune.TuneConfig(
        metric="val_accuracy", mode="max", scheduler=ncp_search.NCPScheduler(max_t=20)))

This module only translates: Tune's results become events of a
:class:`~ncp_search.core.pool.TrialPool`, the decision is the
:class:`~ncp_search.core.policy.Policy`'s (ASHA on predicted finals by default), and
its verdict becomes STOP or CONTINUE. The pool's events go to a JSON-lines journal
(:mod:`ncp_search.integrations.ray.journal`) so that ``Tuner.restore`` finds them.

NaN and edge cases:
    The policy's guards decide (:mod:`ncp_search.core.policy`): a NaN or infinite
    metric stops the trial (never at or after ``max_t``). A metric or
    ``time_attr`` that is missing or not a number fails open (CONTINUE, warned
    once, the result not recorded). An errored trial leaves every reference
    (``on_trial_error``), as a removed one does. A trial whose ``time_attr``
    goes back (Tune restarted it) drops what it is about to report again; a
    trial that had completed and is re-run (``Tuner.restore``) is never stopped
    and never compared with its own earlier final. No hook raises for a bad
    result or a damaged journal; a journal that cannot be written is warned
    about once and the scheduler decides without persisting.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from numbers import Real
from typing import Any

try:
    from ray.tune.result import DEFAULT_METRIC
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler
except ImportError as error:  # pragma: no cover
    raise ImportError(
        "ncp_search.NCPScheduler needs Ray Tune: pip install 'ncp-search[ray]'") from error

from ncp_search.core import rules
from ncp_search.core.history import PROBE_TERMS, REPORTED_SERIES, as_number
from ncp_search.core.pausing import PausingPolicy
from ncp_search.core.policy import Policy, build_policy
from ncp_search.core.pool import Track, TrialPool
from ncp_search.integrations.ray.journal import FORMAT, Journal, load_state, save_state
from ncp_search.integrations.ray.pausing import TunePausing

STATE_FORMAT = FORMAT
RULES = rules.RULES


class NCPScheduler(FIFOScheduler):
    """Stop Ray Tune trials whose predicted final value is poor.

    Args:
        metric: the result key to optimise (or set through ``TuneConfig``).
        mode: ``"max"`` or ``"min"`` (or set through ``TuneConfig``).
        time_attr: the result key counting training progress (1 after the first
            epoch, as ``training_iteration``).
        grace_period: ASHA's first rung, the percentile rule's warm-up, in
            ``time_attr`` units (default 1).
        max_t: the length of a complete trial in ``time_attr`` units (the horizon
            of extrapolating predictors; no decision at or after it).
        predictor: a predictor name (default ``"best"``, the benchmark's choice).
        rule: ``"asha"`` (default: :class:`~ncp_search.core.policy.AshaPolicy`, rungs
            at ``grace_period * reduction_factor**k`` below ``max_t``) or
            ``"percentile"`` (:class:`~ncp_search.core.policy.PercentilePolicy`, the
            default in 0.1). ``percentile``, ``n_startup_trials`` and ``kappa`` belong
            to the percentile rule: passing one with ``rule="asha"`` is a ValueError.
        percentile, n_startup_trials, kappa: the percentile rule's settings.
        reduction_factor: ASHA keeps the best ``1/reduction_factor`` at each rung.
        incumbent_alpha: also stop when the conformal bound of the trial's final is
            below the best completed final; ``None`` (default) turns it off.
        prune_diverged: stop a trial at once when its metric is a NaN or infinite
            number (default True).
        beta_key: the result key holding ``beta_eff``.
        state_path: the JSON-lines journal of the scheduler's state (see
            :mod:`ncp_search.integrations.ray.journal`); put it beside the experiment
            (``<storage_path>/<name>/ncp_scheduler.jsonl``) so ``Tuner.restore``
            finds the trials' histories again.
        policy: a ready :class:`~ncp_search.core.policy.Policy` instead of ``rule``
            and its settings (its steps are ``time_attr`` values: build it with
            ``first_step=1``), or a :class:`~ncp_search.core.pausing.PausingPolicy`:
            trials then PAUSE at its rungs and the promoted ones resume from their
            checkpoints (:mod:`ncp_search.integrations.ray.pausing`).
    """

    FEEDS = REPORTED_SERIES

    def __init__(
        self,
        metric: str | None = None,
        mode: str | None = None,
        *,
        time_attr: str = "training_iteration",
        grace_period: int = 1,
        max_t: int = 100,
        predictor: str = "best",
        rule: str = "asha",
        percentile: float | None = None,
        n_startup_trials: int | None = None,
        reduction_factor: float = 3.0,
        kappa: float | None = None,
        incumbent_alpha: float | None = None,
        prune_diverged: bool = True,
        beta_key: str = "beta_eff",
        state_path: str | None = None,
        policy: Policy | PausingPolicy | None = None,
    ) -> None:
        super().__init__()
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', but got mode={mode!r}.")
        _check(grace_period=grace_period, max_t=max_t, time_attr=time_attr, beta_key=beta_key)
        if policy is None:
            policy = build_policy(
                rule, "NCPScheduler", percentile=percentile, n_startup_trials=n_startup_trials,
                n_warmup_steps=None if rule == "asha" else grace_period, kappa=kappa,
                reduction_factor=reduction_factor, min_resource=grace_period, first_step=1,
                predictor=predictor, max_step=max_t, incumbent_alpha=incumbent_alpha,
                prune_diverged=prune_diverged, feeds=self.FEEDS)
        elif not isinstance(policy, (Policy, PausingPolicy)):
            raise TypeError(f"policy must be an ncp_search Policy or PausingPolicy, but got "
                            f"{type(policy).__name__}.")
        self.policy: Policy | PausingPolicy = policy
        self._pausing = TunePausing(policy) if isinstance(policy, PausingPolicy) else None
        self._metric, self._mode = metric, mode
        self._time_attr, self._beta_key = time_attr, beta_key
        self._grace_period, self._max_t = grace_period, max_t
        self._pool = TrialPool()
        self._journal = None if state_path is None else Journal(state_path, self._warn_once)
        self._loaded = False
        self._warned: set[str] = set()

    def settings(self) -> dict[str, Any]:
        """The scheduler's class and its policy's settings as JSON values (the keys
        :meth:`ncp_search.NCPPruner.settings` has, where they apply)."""
        return {"class": type(self).__name__, **self.policy.settings(),
                "metric": self._metric, "mode": self._mode, "time_attr": self._time_attr,
                "grace_period": self._grace_period, "max_t": self._max_t}

    # -- Tune's hooks ---------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        if self._metric is None and self._mode:
            self._metric = DEFAULT_METRIC  # as Tune's own schedulers do
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._load_once()
        if not self._metric or self._mode not in ("max", "min"):
            raise ValueError(
                f"NCPScheduler needs a metric and a mode ('max' or 'min'), but got "
                f"metric={self._metric!r}, mode={self._mode!r}. Pass them to NCPScheduler "
                "or to tune.TuneConfig(metric=..., mode=...).")
        self._pool.sign = self._sign
        self._pool.tracks.setdefault(trial.trial_id, Track())
        if self._pausing is not None and self._pausing.add(trial.trial_id):
            self._apply({"e": "add", "id": trial.trial_id})

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self._pausing is None:
            decision = self.decide(trial.trial_id, result)
            return TrialScheduler.STOP if decision.stop else TrialScheduler.CONTINUE
        recorded = self._record(trial.trial_id, result)
        if isinstance(recorded, rules.Decision):
            return TrialScheduler.CONTINUE
        reported, now, _ = recorded
        action, event = self._pausing.act(trial.trial_id, self._pool.history(trial.trial_id),
                                          reported, result)
        if event is not None:
            self._apply({"e": "decision", "id": trial.trial_id, "t": now, **event})
        self._pausing.stop_dropped(tune_controller)
        return action

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        if self._pausing is None:
            return super().choose_trial_to_run(tune_controller)
        return self._pausing.choose(tune_controller)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        # Tune also calls this for the trials this scheduler stopped: their last value
        # is not a final; their last prediction stays in the pool.
        track = self._pool.tracks.get(trial.trial_id)
        if track is not None and track.stopped:
            return
        if self._pausing is not None and self._pausing.dropped(trial.trial_id):
            # stopped by stop_dropped while paused: not a completion
            self._apply({"e": "decision", "id": trial.trial_id, "p": None, "stop": True,
                         "t": track.t[-1] if track is not None and track.t else 0.0})
            return
        value = as_number((result or {}).get(self._metric))
        if not math.isfinite(value):
            self._warn_once("final", f"trial {trial.trial_id} completed without a finite "
                                     f"{self._metric!r}; it is left out of the reference.")
        self._apply({"e": "complete", "id": trial.trial_id,
                     "final": self._sign * value if math.isfinite(value) else None})
        if self._pausing is not None and self._pausing.policy.knows(trial.trial_id):
            self._pausing.policy.complete(trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        # Tune calls neither on_trial_complete nor on_trial_remove for an errored trial.
        self._apply({"e": "error", "id": trial.trial_id})
        if self._pausing is not None:
            self._pausing.policy.fail(trial.trial_id)
            self._pausing.stop_dropped(tune_controller)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        track = self._pool.tracks.get(trial.trial_id)
        if track is not None and not track.stopped and track.final is None:
            self._apply({"e": "remove", "id": trial.trial_id})
            if self._pausing is not None:
                self._pausing.policy.fail(trial.trial_id)

    def debug_string(self) -> str:
        return (f"Using NCPScheduler ({self.policy.name}, predictor="
                f"{self.policy.predictor.name}): num_stopped={self.num_stopped}")

    @property
    def num_stopped(self) -> int:
        """Trials stopped by this scheduler (a trial re-run and stopped again counts once)."""
        return self._pool.num_stopped

    def latest_prediction(self, trial_id: str) -> float:
        """The prediction the policy made at the trial's latest decision, in the
        metric's own units (NaN if none): what displays show."""
        track = self._pool.tracks.get(trial_id)
        value = math.nan if track is None else track.latest_prediction
        return self._sign * value if math.isfinite(value) else math.nan

    # -- decisions ------------------------------------------------------------------
    @property
    def _sign(self) -> float:
        return 1.0 if self._mode == "max" else -1.0

    def decide(self, trial_id: str, result: dict[str, Any]) -> rules.Decision:
        """Record ``result`` for ``trial_id`` and decide (what ``on_trial_result``
        returns as STOP/CONTINUE), with the reason."""
        if self._pausing is not None:
            raise TypeError("decide() answers for stop policies; a PausingPolicy's answers "
                            "(pause, resume) come through on_trial_result.")
        recorded = self._record(trial_id, result)
        if isinstance(recorded, rules.Decision):
            return recorded
        reported, now, track = recorded
        assert isinstance(self.policy, Policy)
        history, view = self._pool.history(trial_id), self._pool.view(trial_id)
        verdict = self.policy.decide(history, view,
                                     reported=reported, rerun=track.completed_once)
        if verdict.missing:
            keys = [self._beta_key if m == "beta_eff" else m for m in verdict.missing]
            self._warn_once("inputs", f"results lack {keys}, which predictor="
                            f"{self.policy.predictor.name!r} needs; NCPScheduler lets such "
                            "trials run. Report them with ncp_search's Ray helpers.")
        if verdict.decision.reason == "no_value":
            return self._no_value(result, [self._metric])
        prediction = verdict.prediction
        if math.isnan(prediction) and not verdict.missing and not verdict.stop:
            # the prediction at every report, as NCPCallback stores it on Optuna: the
            # other trials' latest predictions are the percentile rule's reference
            prediction = self.policy.predict(history, view)
        if math.isfinite(prediction) or verdict.stop:
            self._apply({"e": "decision", "id": trial_id, "t": now, "p": _null(prediction),
                         "stop": verdict.stop, "rung": verdict.rung,
                         "why": verdict.decision.reason or None,
                         "th": _null(verdict.decision.threshold)})
        return verdict.decision

    def _record(self, trial_id: str, result: dict[str, Any]) -> Any:
        """Record a result in the pool: ``(reported, time, track)``, or the fail-open
        decision for a result without a usable metric or time."""
        self._load_once()
        if self._metric is None:
            raise ValueError("NCPScheduler needs a metric; pass metric= or set it in "
                             "tune.TuneConfig(metric=..., mode=...).")
        reported = result.get(self._metric)
        now = as_number(result.get(self._time_attr))
        metric_ok = rules.is_diverged(reported) or math.isfinite(as_number(reported))
        if math.isnan(now) or not metric_ok:
            bad = ([] if metric_ok else [self._metric]) + (
                [self._time_attr] if math.isnan(now) else [])
            return self._no_value(result, bad)
        self._pool.sign = self._sign
        series = {name: _null(as_number(result.get(self._beta_key if name == "beta_eff"
                                                   else name)))
                  for name in self.policy.predictor.requires}
        track = self._apply({"e": "result", "id": trial_id, "t": now,
                             "v": _null(self._sign * as_number(reported)), "s": series})
        return reported, now, track

    def _no_value(self, result: dict[str, Any], bad: Sequence[str | None]) -> rules.Decision:
        self._warn_once(
            "metric", f"results with a missing, non-numeric or non-finite {bad} (got "
            f"{[result.get(k) for k in bad if k]}); NCPScheduler lets such trials run. "
            f"Reported keys: {sorted(result)[:20]}.")
        return rules.Decision(False, "no_value")

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- state ------------------------------------------------------------------------
    def _apply(self, event: dict[str, Any]) -> Any:
        track = self._pool.apply(event)
        if self._journal is not None:
            self._journal.write(event)
        return track

    def _load_once(self) -> None:
        """After Tuner.restore: replay the journal."""
        if not self._loaded and self._journal is not None:
            self._loaded = True
            events = self._journal.read()
            if events:
                self._pool = TrialPool.replay(events, self._sign)
                if self._pausing is not None:
                    self._pausing.replay(events)
                    self.policy = self._pausing.policy

    def state(self) -> dict[str, Any]:
        """The scheduler's state as plain JSON (what :meth:`save` writes)."""
        return {"format": STATE_FORMAT, **self._pool.state()}

    def save(self, checkpoint_path: str) -> None:
        save_state(checkpoint_path, self.state())

    def restore(self, checkpoint_path: str) -> None:
        self._pool.load_state(load_state(checkpoint_path))


def _check(*, grace_period: Any, max_t: Any, time_attr: Any, beta_key: Any) -> None:
    for name, value in (("grace_period", grace_period), ("max_t", max_t)):
        if isinstance(value, bool) or not isinstance(value, Real) or not float(value) >= 1:
            raise ValueError(f"{name} must be a number >= 1, but got {name}={value!r}.")
    if float(max_t) < float(grace_period):
        raise ValueError(f"max_t must be >= grace_period, but got max_t={max_t}, "
                         f"grace_period={grace_period}.")
    for name, value in (("time_attr", time_attr), ("beta_key", beta_key)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, but got {name}={value!r}.")


def _null(value: float) -> float | None:
    return value if math.isfinite(value) else None


__all__ = ["NCPScheduler", "PROBE_TERMS"]
