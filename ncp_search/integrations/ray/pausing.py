"""How NCPScheduler runs a :class:`~ncp_search.core.pausing.PausingPolicy` on Tune.

Tune's own pausing scheduler (``HyperBandScheduler``) is the model: a trial that
reaches its rung before the rest of its bracket is PAUSEd (Tune saves its checkpoint
and frees its resources); when the rung closes, the promoted trials are handed back
by ``choose_trial_to_run`` (Tune restores them from their checkpoints) and the others
are stopped. The trainable must report a checkpoint with each result at a rung
(``tune.report(metrics, checkpoint=...)``; :class:`ncp_search.NCPTuneCallback` does at
every epoch by default), or the trial would start again from scratch: the first PAUSE
without one is an error that says so.

With ``resume_where_paused`` (the sweep's trainable keeps a paused trial's models in
its actor's memory), a promoted trial is handed over when the actor that paused it is
the next one Tune reuses (``reuse_actors=True``), and one that another live actor
paused (busy, or idle but not next) waits while new trials may start: as the Optuna
sweep's workers resume first what they hold.
Which actor Tune reuses next is read from its controller's actor cache, which Tune
does not publish: where it cannot be read, trials are chosen as without the option
(with a one-time ``RuntimeWarning``).
The order of the work changes no decision.

Every step is a :class:`~ncp_search.core.pool.TrialPool` event (``add``, ``result``,
``decision`` with ``pause``), so the journal brings the policy back after
``Tuner.restore``.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from ncp_search.core import rules
from ncp_search.core.history import TrialHistory
from ncp_search.core.pausing import PAUSE, STOP, PausingPolicy
from ncp_search.integrations.ray.records import TuneRecords, null


class NoCheckpointError(RuntimeError):
    """A trial reached a rung of the pausing policy without reporting a checkpoint."""


class TunePausing:
    """The pausing policy's side of NCPScheduler (host objects in, Tune actions out)."""

    def __init__(self, policy: PausingPolicy, resume_where_paused: bool = False) -> None:
        self._template = copy.deepcopy(policy)
        self.policy = policy
        self._warned = False
        self._staged: str | None = None  # the promoted trial handed to Tune last
        self.resume_where_paused = resume_where_paused
        self._paused_on: dict[str, Any] = {}  # trial id -> the Tune actor it paused on
        self._blind = False  # warned that Tune's actors cannot be read

    def add(self, trial_id: str) -> bool:
        """Add a trial; False when it is already known (a restored trial)."""
        if self.policy.knows(trial_id):
            return False
        if not self.policy.can_start():
            raise ValueError(
                f"NCPScheduler's PausingPolicy(n_trials={self.policy.n_trials}) got one "
                "trial more: set tune.TuneConfig(num_samples=...) to n_trials.")
        self.policy.add(trial_id)
        return True

    def act(self, trial_id: str, history: TrialHistory, reported: object,
            result: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """The Tune action for a result and the decision event to record (or None)."""
        order = self.policy.report(trial_id, history, reported=reported)
        if order.action == STOP:
            event: dict[str, Any] = {"stop": True, "p": None, "rung": None}
            return TrialScheduler.STOP, event if order.reason == "diverged" else None
        if order.action != PAUSE:
            return TrialScheduler.CONTINUE, None
        status = self.policy.status(trial_id)
        event = {"stop": status == "dropped", "p": null(order.prediction),
                 "rung": order.rung, "pause": True}
        if status == "promoted":  # it closed its rung and goes on: no pause needed
            self.policy.resume(trial_id)
            return TrialScheduler.CONTINUE, event
        if status == "dropped":
            return TrialScheduler.STOP, event
        if "checkpoint_dir_name" in result and not result["checkpoint_dir_name"]:
            raise NoCheckpointError(
                f"NCPScheduler's PausingPolicy pauses trial {trial_id} at its rung "
                f"({order.rung:g} epochs), but it reported no checkpoint there, so it would "
                "start again from scratch. Report one with tune.report(metrics, "
                "checkpoint=...) (NCPTuneCallback does at every epoch by default), or use an "
                "AshaPolicy (the default), which never pauses.")
        return TrialScheduler.PAUSE, event

    def on_result(self, records: TuneRecords, tune_controller: Any, trial: Any,
                  result: Mapping[str, Any]) -> str:
        """Record a result and act on it (NCPScheduler's ``on_trial_result``)."""
        trial_id = trial.trial_id
        recorded = records.record(trial_id, result)
        if isinstance(recorded, rules.Decision):
            return TrialScheduler.CONTINUE  # fail open: no usable metric or time
        reported, now, _ = recorded
        action, event = self.act(trial_id, records.pool.history(trial_id), reported, result)
        if event is not None:
            records.apply({"e": "decision", "id": trial_id, "t": now, **event})
        if action == TrialScheduler.PAUSE and self.resume_where_paused:
            actors = self._actors(tune_controller)
            if actors is not None and actors[0].get(trial) is not None:
                self._paused_on[trial_id] = actors[0][trial]
        self.stop_dropped(tune_controller)
        return action

    def ended_by_policy(self, records: TuneRecords, trial_id: str) -> bool:
        """At Tune's ``on_trial_complete``: True when the policy had ended the trial
        (paused for good, or diverged), so it is not a completion; its stop is
        journaled."""
        if not (self.policy.knows(trial_id)
                and self.policy.status(trial_id) in ("dropped", "out")):
            return False
        track = records.pool.tracks.get(trial_id)
        records.apply({"e": "decision", "id": trial_id, "p": None, "stop": True,
                       "t": track.t[-1] if track is not None and track.t else 0.0})
        return True

    def stop_dropped(self, tune_controller: Any) -> None:
        """Stop the PAUSED trials the policy will never resume, and the PENDING ones
        (after ``Tuner.restore`` from a snapshot taken before their stop, Tune holds
        them as PENDING and starts them itself, whatever the scheduler chooses)."""
        dropped = set(self.policy.dropped())
        if not dropped or tune_controller is None:
            return
        for trial in tune_controller.get_trials():
            if trial.trial_id in dropped and trial.status in (Trial.PAUSED, Trial.PENDING):
                tune_controller.stop_trial(trial)

    def choose(self, tune_controller: Any) -> Any:
        """Promoted PAUSED trials first (best first), then new (PENDING) trials; with
        ``resume_where_paused``, the promoted trials the next reused actor paused come
        first, and those another live actor paused come after the new trials.

        Tune's controller stages every trial this returns, whether a slot is free or
        not, and starts the staged ones in its own order: so a promoted trial is handed
        over only once the one handed before has left PENDING (started, or ended)."""
        self.stop_dropped(tune_controller)  # before Tune starts its PENDING trials
        trials = list(tune_controller.get_trials())
        by_id = {t.trial_id: t for t in trials}
        staged = by_id.get(self._staged) if self._staged is not None else None
        if staged is not None and staged.status == Trial.PENDING:
            return None
        self._staged = None
        ready = [by_id[k] for k in self.policy.promoted()
                 if k in by_id and by_id[k].status in (Trial.PAUSED, Trial.PENDING)]
        prefer, defer = self._where_paused(tune_controller, ready)
        first = ([t for t in ready if t.trial_id in prefer]
                 + [t for t in ready if t.trial_id not in defer])
        new = next((t for t in trials if t.status == Trial.PENDING and (
            not self.policy.knows(t.trial_id) or self.policy.status(t.trial_id) == "running")),
            None)
        chosen = first[0] if first else new if new is not None else (
            ready[0] if ready else None)
        if chosen is not None and chosen in ready:
            self.policy.resume(chosen.trial_id)  # PENDING: restored by Tuner.restore
            self._paused_on.pop(chosen.trial_id, None)
            self._staged = chosen.trial_id
        if chosen is not None:
            return chosen
        if (self.policy.can_start() and trials and not self._warned
                and not any(t.status in (Trial.PENDING, Trial.RUNNING) for t in trials)):
            # Every trial is paused at a rung that waits for trials not yet started:
            # Tune's max_concurrent_trials counts paused trials, so none can start.
            self._warned = True
            warnings.warn(
                "NCPScheduler's PausingPolicy waits at a rung for trials that have not "
                f"started ({len(trials)} of n_trials={self.policy.n_trials} added, none "
                "pending or running): a concurrency limit (TuneConfig(max_concurrent_"
                "trials=...) or a searcher's max_concurrent) counts paused trials and "
                "stops the rest from starting. Bound concurrency with the resources per "
                "trial (tune.with_resources) instead.", RuntimeWarning, stacklevel=2)
        return None

    def replay(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Rebuild the policy from the journal's events (after Tuner.restore)."""
        policy = copy.deepcopy(self._template)
        for event in events:
            trial_id, kind = str(event.get("id")), event.get("e")
            try:
                if kind == "add":
                    policy.add(trial_id)
                elif kind == "decision" and event.get("pause"):
                    policy.arrive(trial_id, _number(event.get("p")))
                elif kind == "decision" and event.get("stop"):
                    if policy.status(trial_id) != "dropped":  # dropped: stopped for it
                        policy.fail(trial_id)  # diverged
                elif kind == "complete":
                    policy.complete(trial_id)
                elif kind in ("error", "remove"):
                    policy.fail(trial_id)
            except (KeyError, ValueError):
                continue  # an event the policy cannot place: skipped, as the pool does
        self.policy = policy


    def _where_paused(self, tune_controller: Any,
                      ready: list[Any]) -> tuple[set[str], set[str]]:
        """``(prefer, defer)`` of the promoted trials ``ready`` (see :meth:`choose`):
        those the actor Tune reuses next paused, and those a live other actor did."""
        if not (self.resume_where_paused and ready and self._paused_on):
            return set(), set()
        actors = self._actors(tune_controller)
        if actors is None:
            return set(), set()
        running, cached = actors
        alive = set(running.values()).union(*cached.values())
        prefer, defer = set(), set()
        for trial in ready:
            actor = self._paused_on.get(trial.trial_id)
            queue = cached.get(getattr(trial, "placement_group_factory", None)) or []
            if actor is None or actor not in alive:
                continue  # its models are gone with its actor
            if queue and queue[0] is actor:
                prefer.add(trial.trial_id)
            else:
                defer.add(trial.trial_id)
        return prefer, defer


    def _actors(self, tune_controller: Any) -> tuple[dict[Any, Any],
                                                     dict[Any, list[Any]]] | None:
        """:func:`_actors`, with a one-time warning where Tune's cannot be read."""
        actors = _actors(tune_controller)
        if actors is None and tune_controller is not None and not self._blind:
            self._blind = True
            warnings.warn(
                "NCPScheduler(resume_where_paused=True) cannot read which actor Tune "
                "reuses next (its controller has no _actor_cache or _trial_to_actor in "
                "this Ray version): promoted trials are handed over in rank order, so "
                "fewer resume from memory. The decisions are the same.",
                RuntimeWarning, stacklevel=3)
        return actors


def _actors(tune_controller: Any) -> tuple[dict[Any, Any], dict[Any, list[Any]]] | None:
    """``(trial -> its actor, resources -> the idle actors in the order Tune reuses
    them)``, read from Tune's controller (not a published API: None where absent)."""
    inner = getattr(tune_controller, "_tune_controller", tune_controller)  # Tune's wrapper
    running = inner.__dict__.get("_trial_to_actor") if hasattr(inner, "__dict__") else None
    cache = inner.__dict__.get("_actor_cache") if hasattr(inner, "__dict__") else None
    cached = getattr(cache, "_cached_objects", None)
    if not isinstance(running, dict) or not isinstance(cached, Mapping):
        return None
    return running, {key: list(value) for key, value in cached.items()}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(
        value, bool) else math.nan
