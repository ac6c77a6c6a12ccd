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
from ncp_search.integrations.ray.journal import FORMAT, load_state, save_state
from ncp_search.integrations.ray.pausing import TunePausing
from ncp_search.integrations.ray.records import TuneRecords, null

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
            ``"percentile"`` (:class:`~ncp_search.core.policy.PercentilePolicy`).
        percentile, n_startup_trials, kappa: the percentile rule's settings (a
            ValueError with ``rule="asha"``).
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
        resume_where_paused: with a ``PausingPolicy``, hand a promoted trial to Tune
            when the actor that paused it is the next one Tune reuses
            (``reuse_actors=True``), for a trainable that keeps a paused trial's model
            in its process and resumes from it there instead of from the checkpoint
            (as ``ncp-search sweep`` does). It orders the work only: no decision
            changes. Default False.
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
        resume_where_paused: bool = False,
    ) -> None:
        super().__init__()
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', but got mode={mode!r}.")
        _check(grace_period=grace_period, max_t=max_t, time_attr=time_attr, beta_key=beta_key)
        if policy is None:
            policy = _tune_policy(
                rule, grace_period, max_t, percentile=percentile, kappa=kappa,
                n_startup_trials=n_startup_trials, reduction_factor=reduction_factor,
                predictor=predictor, incumbent_alpha=incumbent_alpha,
                prune_diverged=prune_diverged)
        elif not isinstance(policy, (Policy, PausingPolicy)):
            raise TypeError(f"policy must be an ncp_search Policy or PausingPolicy, but got "
                            f"{type(policy).__name__}.")
        self.policy: Policy | PausingPolicy = policy
        self._pausing = (TunePausing(policy, resume_where_paused)
                         if isinstance(policy, PausingPolicy) else None)
        self._records = TuneRecords(time_attr=time_attr, beta_key=beta_key,
                                    requires=policy.predictor.requires, state_path=state_path)
        self._records.metric, self._records.mode = metric, mode
        self._grace_period, self._max_t = grace_period, max_t

    @property
    def resume_where_paused(self) -> bool:
        """See the constructor (always False without a ``PausingPolicy``)."""
        return self._pausing is not None and self._pausing.resume_where_paused

    @resume_where_paused.setter
    def resume_where_paused(self, value: bool) -> None:
        if self._pausing is not None:
            self._pausing.resume_where_paused = bool(value)

    def settings(self) -> dict[str, Any]:
        """The scheduler's class and its policy's settings as JSON values (the keys
        :meth:`ncp_search.NCPPruner.settings` has, where they apply)."""
        records = self._records
        return {"class": type(self).__name__, **self.policy.settings(),
                "metric": records.metric, "mode": records.mode, "time_attr": records.time_attr,
                "grace_period": self._grace_period, "max_t": self._max_t}

    # -- Tune's hooks ---------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        records = self._records
        if (records.metric and metric) or (records.mode and mode):
            return False
        records.metric, records.mode = metric or records.metric, mode or records.mode
        if records.metric is None and records.mode:
            records.metric = DEFAULT_METRIC  # as Tune's own schedulers do
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._load_once()
        self._records.add(trial.trial_id)
        if self._pausing is not None and self._pausing.add(trial.trial_id):
            self._records.apply({"e": "add", "id": trial.trial_id})

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self._pausing is None:
            decision = self.decide(trial.trial_id, result)
            return TrialScheduler.STOP if decision.stop else TrialScheduler.CONTINUE
        return self._pausing.on_result(self._records, tune_controller, trial, result)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        if self._pausing is None:
            return super().choose_trial_to_run(tune_controller)
        return self._pausing.choose(tune_controller)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        # Tune also calls this for the trials this scheduler stopped: their last value
        # is not a final; their last prediction stays in the pool.
        track = self._records.pool.tracks.get(trial.trial_id)
        if track is not None and track.stopped:
            return
        if self._pausing is not None and self._pausing.ended_by_policy(self._records,
                                                                       trial.trial_id):
            return
        metric = self._records.metric
        value = as_number((result or {}).get(metric))
        if not math.isfinite(value):
            self._records.warn_once("final", f"trial {trial.trial_id} completed without a "
                                    f"finite {metric!r}; it is left out of the reference.")
        self._records.apply({"e": "complete", "id": trial.trial_id,
                             "final": null(self._records.sign * value)})
        if self._pausing is not None and self._pausing.policy.knows(trial.trial_id):
            self._pausing.policy.complete(trial.trial_id)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        # Tune calls neither on_trial_complete nor on_trial_remove for an errored trial.
        self._records.apply({"e": "error", "id": trial.trial_id})
        if self._pausing is not None:
            self._pausing.policy.fail(trial.trial_id)
            self._pausing.stop_dropped(tune_controller)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        # Tune also calls this for the PAUSED trials this scheduler stops when their
        # rung closes: a stop by the policy, not a removal.
        if self._pausing is not None and self._pausing.ended_by_policy(self._records,
                                                                       trial.trial_id):
            return
        track = self._records.pool.tracks.get(trial.trial_id)
        if track is not None and not track.stopped and track.final is None:
            self._records.apply({"e": "remove", "id": trial.trial_id})
            if self._pausing is not None:
                self._pausing.policy.fail(trial.trial_id)

    def debug_string(self) -> str:
        return (f"Using NCPScheduler ({self.policy.name}, predictor="
                f"{self.policy.predictor.name}): num_stopped={self.num_stopped}")

    @property
    def num_stopped(self) -> int:
        """Trials stopped by this scheduler (a trial re-run and stopped again counts once)."""
        return self._records.pool.num_stopped

    def latest_prediction(self, trial_id: str) -> float:
        """The prediction the policy made at the trial's latest decision, in the
        metric's own units (NaN if none): what displays show."""
        track = self._records.pool.tracks.get(trial_id)
        value = math.nan if track is None else track.latest_prediction
        return self._records.sign * value if math.isfinite(value) else math.nan

    # -- decisions ------------------------------------------------------------------
    def decide(self, trial_id: str, result: dict[str, Any]) -> rules.Decision:
        """Record ``result`` for ``trial_id`` and decide (what ``on_trial_result``
        returns as STOP/CONTINUE), with the reason."""
        if not isinstance(self.policy, Policy):
            raise TypeError("decide() answers for stop policies; a PausingPolicy's answers "
                            "(pause, resume) come through on_trial_result.")
        records = self._records
        recorded = records.record(trial_id, result)
        if isinstance(recorded, rules.Decision):
            return recorded
        reported, now, track = recorded
        history, view = records.pool.history(trial_id), records.pool.view(trial_id)
        verdict = self.policy.decide(
            history, view, reported=reported, rerun=track.completed_once,
            stopped_before=None if track.stopped else track.stopped_before)
        if verdict.missing:
            records.warn_missing(verdict.missing, self.policy.predictor.name)
        if verdict.decision.reason == "no_value":
            return records.no_value(result, [records.metric])
        prediction = verdict.prediction
        if math.isnan(prediction) and not verdict.missing and not verdict.stop:
            # the prediction at every report, as NCPCallback stores it on Optuna: the
            # other trials' latest predictions are the percentile rule's reference
            prediction = self.policy.predict(history, view)
        if math.isfinite(prediction) or verdict.stop:
            records.apply({"e": "decision", "id": trial_id, "t": now, "p": null(prediction),
                           "stop": verdict.stop, "rung": verdict.rung,
                           "why": verdict.decision.reason or None,
                           "th": null(verdict.decision.threshold)})
        return verdict.decision

    # -- state ------------------------------------------------------------------------
    def _load_once(self) -> None:
        """After Tuner.restore: replay the journal (into the policy too, when it pauses)."""
        events = self._records.load_once()
        if events and self._pausing is not None:
            self._pausing.replay(events)
            self.policy = self._pausing.policy

    def state(self) -> dict[str, Any]:
        """The scheduler's state as plain JSON (what :meth:`save` writes)."""
        return self._records.state()

    def save(self, checkpoint_path: str) -> None:
        save_state(checkpoint_path, self.state())

    def restore(self, checkpoint_path: str) -> None:
        self._records.pool.load_state(load_state(checkpoint_path))


def _tune_policy(rule: str, grace_period: int, max_t: int, *, percentile: float | None,
                 kappa: float | None, n_startup_trials: int | None, reduction_factor: float,
                 predictor: str, incumbent_alpha: float | None, prune_diverged: bool) -> Policy:
    """The policy NCPScheduler's arguments describe, in ``time_attr`` units (steps from 1)."""
    return build_policy(
        rule, "NCPScheduler", percentile=percentile, n_startup_trials=n_startup_trials,
        n_warmup_steps=None if rule == "asha" else grace_period, kappa=kappa,
        reduction_factor=reduction_factor, min_resource=grace_period, first_step=1,
        predictor=predictor, max_step=max_t, incumbent_alpha=incumbent_alpha,
        prune_diverged=prune_diverged, feeds=NCPScheduler.FEEDS)


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


__all__ = ["NCPScheduler", "PROBE_TERMS"]
