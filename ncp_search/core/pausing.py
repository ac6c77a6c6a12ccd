"""Pause, don't kill: synchronous successive halving on predicted finals.

:class:`PausingPolicy` splits the study's trials into brackets of ``bracket_size``
trials (brackets follow one another). Every trial of a bracket trains to the first
rung (``min_resource`` epochs) and *pauses* there (its host keeps a checkpoint).
Once every live trial of the bracket has arrived at a rung (or diverged or failed),
the rung closes: the best ``max(keep_min, floor(n / reduction_factor))`` of the ``n``
that arrived, ranked by their predicted final at the rung, are promoted and resume
from their checkpoints to the next rung (``min_resource * reduction_factor**k``
epochs; trials tied with the last one kept go too); the others stay paused and are
never resumed. At the last rung the
promoted trials run to ``max_resource`` epochs and complete. A trial whose reported
value is NaN or infinite stops at once (``prune_diverged``).

Trials whose predictions tie at the cut are kept together (``keep_ties``, the default):
the policy cannot tell them apart, so the order in which they joined the bracket does
not choose among them. Unless that would keep more than ``TIE_LIMIT`` (1.5) times as
many (e.g. many trials stuck at one value), when the bracket order does.

A trial that no arrival still to come can push out of the kept ones is promoted
before its rung closes (``promote_early``, the default): the decisions are the closed
rung's, made sooner, so workers idle less at the barrier.

Why pause rather than kill: an asynchronous rule (ASHA) judges the first trials
against an empty rung and lets them all through; a rung that waits for its whole
bracket judges every trial with the bracket in view, and a trial it holds back keeps
its checkpoint. Costs: results arrive later than under ASHA, a checkpoint is written
at each pause and read at each resume, and workers can idle at a rung's barrier
when no trial can be promoted early and no other bracket can start.

The policy is host-neutral and event-driven: the host tells it of trials
(:meth:`~PausingPolicy.add`), reports (:meth:`~PausingPolicy.report`), failures and
completions, and asks it what to run next (:meth:`~PausingPolicy.next_job`). Its
state is a function of those calls, so replaying them (a journal) rebuilds it.

A host may run a trial again (Tune after ``Tuner.restore``, from a snapshot older than
the journal): a completed trial then trains to its end unjudged, a paused one waits at
its rung again with the prediction it arrived with, a dropped or diverged one stops.

Epochs are counted from 1 (``epochs = step - first_step + 1``).

Example:
    >>> from ncp_search.core.history import TrialHistory
    >>> policy = PausingPolicy(n_trials=4, max_resource=4, reduction_factor=2,
    ...                        keep_min=1)
    >>> for name, value in zip("abcd", (0.5, 0.9, 0.7, 0.6)):
    ...     policy.add(name)
    ...     order = policy.report(name, TrialHistory.from_reports({0: value}))
    >>> order.action, sorted(policy.promoted())
    ('pause', ['b', 'c'])
    >>> policy.next_job()
    ('resume', 'b', 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ncp_search.core import rules
from ncp_search.core.history import REPORTED_SERIES, TrialHistory, as_number
from ncp_search.core.policy import Named
from ncp_search.core.predictors import Predictor, check_feedable, predict_final

CONTINUE, PAUSE, STOP = "continue", "pause", "stop"
TIE_LIMIT = 1.5
"""Trials tied at a rung's cut are kept together while that keeps at most this many
times the number the rung promotes."""
_LATEST: Any = object()


@dataclass(frozen=True)
class Order:
    """What a trial does after a report.

    Attributes:
        action: ``"continue"`` (train on), ``"pause"`` (checkpoint and wait: the
            policy resumes it only if it promotes it) or ``"stop"`` (end it).
        reason: why (``"below_rung"``, ``"at_rung"``, ``"diverged"``, ``"no_value"``,
            ``"done"``, ``"dropped"``, ...).
        prediction: the predicted final recorded at the rung (NaN elsewhere).
        rung: the rung (epochs) the trial paused at, else None.
    """

    action: str
    reason: str
    prediction: float = math.nan
    rung: float | None = None

    @property
    def stop(self) -> bool:
        return self.action == STOP


@dataclass
class _Member:
    bracket: int
    target: float  # epochs to train to before the next pause or the end
    level: int = 0  # the rung it is working towards (index into milestones)
    status: str = "running"  # running | paused | promoted | dropped | out | done
    at_rung: dict[int, float] = field(default_factory=dict)  # level -> prediction


def auto_keep_min(bracket_size: int) -> int:
    """The default floor of trials kept at a rung for a bracket of ``n``: ``max(2,
    round(0.7 * sqrt(n)))`` up to 25 trials (2 below 13, 3 at 13-25), then ``max(3,
    round(0.5 * sqrt(n)))`` (3 up to 48, 4 at 49-81, 5 at 82-120, 6 at 121-169).

    Chosen with the pausing benchmark (docs/budget/pausing.md): at 40-100 trials it keeps
    what half the square root keeps, with the same regret as the 0.7 floor and fewer
    epochs; at 16-24 trials a floor of 2 added regret, so 3 stays. A fixed floor of
    6 costs more epochs than ASHA on small studies, 10% of the bracket 1.07x ASHA's
    epochs at 100 trials."""
    root = math.sqrt(bracket_size)
    return max(2, min(3, round(0.7 * root)), round(0.5 * root))


class PausingPolicy(Named):
    """Synchronous successive halving with pausing on predicted finals.

    Args:
        n_trials: the trials the study will run in all (the last bracket takes what
            is left).
        max_resource: the epochs of a complete trial.
        reduction_factor: keep ``1/reduction_factor`` of a rung's arrivals (> 1;
            default 3, the pausing benchmark's pick; it was 2 before ties were kept).
        min_resource: epochs before the first rung (>= 1).
        keep_min: the least number of trials promoted at a rung (default:
            :func:`auto_keep_min` of the bracket size: the floor scales with it).
        bracket_size: trials per bracket (default: all ``n_trials`` in one).
        predictor: what ranks trials at a rung (default ``best``).
        prune_diverged: stop a trial at once on a NaN or infinite report.
        promote_early: promote a trial before its rung closes once no trial still to
            arrive can push it out of the kept ones (the decisions stay those of the
            closed rung; the trial trains on sooner, so workers idle less at the
            barrier and results come earlier). False waits for the whole rung.
        first_step: the step of a trial's first epoch (0 for Keras' epoch index).
        keep_ties: at a rung, keep the trials whose predictions tie with the last one
            kept too (up to :data:`TIE_LIMIT` times as many), rather than let the order
            in which they joined the bracket choose. False: the bracket order decides.

    Raises:
        ValueError: Optuna-style, naming the argument.
    """

    name: ClassVar[str] = "pause"

    def __init__(
        self,
        *,
        n_trials: int,
        max_resource: float,
        reduction_factor: float = 3.0,
        min_resource: float = 1,
        keep_min: int | None = None,
        bracket_size: int | None = None,
        predictor: str = "best",
        prune_diverged: bool = True,
        promote_early: bool = True,
        first_step: float = 0,
        keep_ties: bool = True,
        feeds: tuple[str, ...] = REPORTED_SERIES,
        host: str = "PausingPolicy",
    ) -> None:
        checks = (
            ("n_trials", n_trials, ">= 1", isinstance(n_trials, int) and n_trials >= 1),
            ("max_resource", max_resource, ">= min_resource", max_resource >= min_resource),
            ("reduction_factor", reduction_factor, "> 1", reduction_factor > 1),
            ("min_resource", min_resource, ">= 1", min_resource >= 1),
            ("keep_min", keep_min, "None or an int >= 1",
             keep_min is None or (isinstance(keep_min, int) and keep_min >= 1)),
            ("bracket_size", bracket_size, "None or an int >= 1",
             bracket_size is None or (isinstance(bracket_size, int) and bracket_size >= 1)),
        )
        for name, value, what, holds in checks:
            if not holds:
                raise ValueError(f"{name} must be {what}, but got {name}={value!r}.")
        self.predictor: Predictor = check_feedable(predictor, feeds, host)
        if self.predictor.cross_trial:
            raise ValueError(
                f"predictor={predictor!r} learns from completed trials, which a bracket has "
                "none of before its last rung; use a per-trial predictor (e.g. 'best').")
        self.n_trials = n_trials
        self.max_resource = float(max_resource)
        self.reduction_factor = float(reduction_factor)
        self.min_resource = float(min_resource)
        self.bracket_size = n_trials if bracket_size is None else min(bracket_size, n_trials)
        self.keep_min = auto_keep_min(self.bracket_size) if keep_min is None else keep_min
        self.prune_diverged = prune_diverged
        self.promote_early = bool(promote_early)
        self.keep_ties = bool(keep_ties)
        self.first_step = first_step
        self.milestones = [*rules.asha_rungs(self.min_resource, self.reduction_factor,
                                             self.max_resource), self.max_resource]
        self._members: dict[str, _Member] = {}
        self._brackets: list[list[str]] = []
        self._closed: list[set[int]] = []  # per bracket: the levels whose rung closed

    # ---------------------------------------------------------------- settings
    def settings(self) -> dict[str, Any]:
        """The policy's class and settings as JSON values."""
        return {**self._identity(), "n_trials": self.n_trials, "max_resource": self.max_resource,
                "reduction_factor": self.reduction_factor, "min_resource": self.min_resource,
                "keep_min": self.keep_min, "bracket_size": self.bracket_size,
                "prune_diverged": self.prune_diverged, "promote_early": self.promote_early,
                "keep_ties": self.keep_ties, "first_step": self.first_step}

    # ---------------------------------------------------------------- events
    def can_start(self) -> bool:
        """Whether a new trial may start (the study's budget has room)."""
        return len(self._members) < self.n_trials

    def add(self, trial_id: str) -> None:
        """A new trial starts (it joins the open bracket); a trial already added is
        left as it is (a host that restores its trials adds them again).

        Raises:
            ValueError: past ``n_trials``.
        """
        if trial_id in self._members:
            return
        if not self.can_start():
            raise ValueError(f"the policy was given n_trials={self.n_trials}; trial "
                             f"{trial_id!r} would be one more.")
        if not self._brackets or len(self._brackets[-1]) >= self._size(len(self._brackets) - 1):
            self._brackets.append([])
            self._closed.append(set())
        self._brackets[-1].append(trial_id)
        self._members[trial_id] = _Member(len(self._brackets) - 1, self.milestones[0])

    def report(self, trial_id: str, history: TrialHistory, *,
               reported: object = _LATEST) -> Order:
        """The trial reported its latest epoch (``history``, "higher is better")."""
        member = self._member(trial_id)
        if member.status in ("dropped", "out"):
            return Order(STOP, member.status)
        if member.status == "done":  # the host runs a completed trial again (a restore):
            return Order(CONTINUE, "completed_before_restore")  # to its end, unjudged
        if reported is _LATEST:
            reported = float(history.values[-1]) * history.sign if len(history) else None
        epochs = history.last_step - self.first_step + 1 if len(history) else 0.0
        if self.prune_diverged and rules.is_diverged(reported) and epochs < self.max_resource:
            self._leave(trial_id, "out")  # also with an empty history (NaN dropped)
            return Order(STOP, "diverged")
        if not len(history):
            return Order(CONTINUE, "no_reports")
        if epochs >= self.max_resource:
            self._leave(trial_id, "done")
            return Order(CONTINUE, "done")
        if not math.isfinite(as_number(reported)) and not rules.is_diverged(reported):
            return Order(CONTINUE, "no_value")
        if member.status == "paused":  # run again from a checkpoint (a restore): it
            if epochs < member.target:  # keeps what it arrived with, and waits there again
                return Order(CONTINUE, "below_rung")
            return Order(PAUSE, "at_rung", member.at_rung[member.level], member.target)
        if epochs < member.target:
            member.status = "running"
            return Order(CONTINUE, "below_rung")
        prediction = predict_final(self.predictor, history,
                                   horizon=self.max_resource - 1 + self.first_step)
        return self.arrive(trial_id, prediction)

    def arrive(self, trial_id: str, prediction: float) -> Order:
        """The trial reached its rung with ``prediction`` (what :meth:`report` calls;
        a journal replay calls it with the recorded prediction)."""
        member = self._member(trial_id)
        rung = member.target
        member.at_rung[member.level] = prediction
        member.status = "paused"
        self._close(member.bracket)
        return Order(PAUSE, "at_rung", prediction, rung)

    def complete(self, trial_id: str) -> None:
        """The trial ended (ran all its epochs, or its host ended it early): it leaves
        its bracket, whose rung may close."""
        self._leave(trial_id, "done")

    def fail(self, trial_id: str) -> None:
        """The trial failed (it leaves the bracket; its rung may close)."""
        if trial_id in self._members:
            self._leave(trial_id, "out")

    # ---------------------------------------------------------------- questions
    def promoted(self) -> list[str]:
        """Paused trials the policy has promoted: resume them (best first)."""
        ready = [k for k, m in self._members.items() if m.status == "promoted"]
        return sorted(ready, key=lambda k: -_rank_value(self._members[k]))

    def dropped(self) -> list[str]:
        """Trials paused for good (not promoted when their rung closed)."""
        return [k for k, m in self._members.items() if m.status == "dropped"]

    def target(self, trial_id: str) -> float:
        """The epochs the trial may train to before its next pause (or its end)."""
        return self._member(trial_id).target

    def status(self, trial_id: str) -> str:
        """``running``, ``paused`` (at a rung, waiting), ``promoted`` (to resume),
        ``dropped`` (paused for good), ``out`` (diverged or failed) or ``done``."""
        return self._member(trial_id).status

    def knows(self, trial_id: str) -> bool:
        return trial_id in self._members

    def resume(self, trial_id: str) -> float:
        """A promoted trial resumes: returns the epochs it may train to.

        Raises:
            ValueError: for a trial that is not promoted.
        """
        member = self._member(trial_id)
        if member.status != "promoted":
            raise ValueError(f"trial {trial_id!r} is {member.status}, not promoted.")
        member.status = "running"
        return member.target

    def next_job(self, prefer: Collection[str] = (),
                 defer: Collection[str] = ()) -> tuple[str, str | None, float] | None:
        """What a free worker should do: ``("resume", trial_id, target_epochs)`` for a
        promoted trial, ``("new", None, first_rung)`` when a new trial may start, or
        None (wait: every bracket is at a barrier and the budget is spent).

        Args:
            prefer: trials to resume first when the policy has promoted them (best
                first among them), before better-ranked ones: e.g. those whose models
                the asking worker still holds in memory, which resume without a
                checkpoint.
            defer: promoted trials to resume only when no other promoted trial and no
                new trial is to run: e.g. those another worker holds in memory, which
                that worker resumes when it is free.

        The order of the work changes no decision: every rung decides on all its
        arrivals, and promoting early decides as the closed rung would."""
        ready = self.promoted()
        first = [k for k in ready if k in prefer] + [k for k in ready if k not in defer]
        if first:
            return ("resume", first[0], self.resume(first[0]))
        if self.can_start():
            return ("new", None, self.milestones[0])
        if ready:
            return ("resume", ready[0], self.resume(ready[0]))
        return None

    def finished(self) -> bool:
        """Whether nothing is left to run or resume (every trial done, out or dropped)."""
        return not self.can_start() and all(
            m.status in ("done", "out", "dropped") for m in self._members.values())

    # ---------------------------------------------------------------- internals
    def _member(self, trial_id: str) -> _Member:
        member = self._members.get(trial_id)
        if member is None:
            raise KeyError(f"trial {trial_id!r} was never added to the policy.")
        return member

    def _size(self, bracket: int) -> int:
        """How many trials bracket ``bracket`` holds (the last one takes what is left)."""
        return min(self.bracket_size, self.n_trials - bracket * self.bracket_size)

    def _leave(self, trial_id: str, status: str) -> None:
        member = self._members[trial_id]
        member.status = status
        self._close(member.bracket)

    def _close(self, bracket: int) -> None:
        """Decide what the bracket's latest events allow: close each rung whose
        arrivals are all in (lowest first), then promote early at the lowest open rung
        the trials no arrival still to come can push out of the kept ones."""
        ids = self._brackets[bracket]
        closed = self._closed[bracket]
        for level in range(len(self.milestones) - 1):  # the last milestone is the end
            if level in closed:
                continue
            arrived = [k for k in ids if level in self._members[k].at_rung]
            if level == 0:
                expected = self._size(bracket)  # trials still to start count as to come
            else:
                expected = sum(1 for k in ids if self._members[k].level >= level)
            gone = sum(1 for k in ids if level not in self._members[k].at_rung
                       and self._members[k].level == level
                       and self._members[k].status in ("out", "done"))
            to_come = expected - len(arrived) - gone
            if to_come > 0:
                if self.promote_early:
                    self._promote_early(level, arrived, to_come)
                return
            keep = self._keep(len(arrived))  # every arrival counts, also one failed since
            ranked = sorted((k for k in arrived if not (
                self._members[k].level == level and self._members[k].status == "out")),
                key=lambda k: -_finite(self._members[k].at_rung[level]))  # ties: bracket order
            keep = self._with_ties(ranked, level, keep)
            for position, trial_id in enumerate(ranked):
                member = self._members[trial_id]
                if member.level != level:
                    continue  # promoted early: among the kept ones
                if position < keep:
                    self._promote(member, level)
                else:
                    member.status = "dropped"
            closed.add(level)

    def _keep(self, arrivals: int) -> int:
        """How many of a rung's ``arrivals`` are promoted."""
        return min(arrivals, max(self.keep_min, math.floor(arrivals / self.reduction_factor)))

    def _with_ties(self, ranked: list[str], level: int, keep: int) -> int:
        """How many of ``ranked`` (best first) a closing rung keeps: ``keep``, and with
        ``keep_ties`` the trials tied with the last of them too, while that keeps at
        most ``TIE_LIMIT * keep`` (else the bracket order chooses among the tied)."""
        if not self.keep_ties or not 0 < keep < len(ranked):
            return keep
        values = [_finite(self._members[k].at_rung[level]) for k in ranked]
        cut = values[keep - 1]
        if not math.isfinite(cut):  # no prediction: nothing to tie on
            return keep
        tied = sum(1 for value in values if value >= cut)
        return tied if tied <= math.ceil(TIE_LIMIT * keep) else keep

    def _promote(self, member: _Member, level: int) -> None:
        member.status, member.level = "promoted", level + 1
        member.target = self.milestones[min(level + 1, len(self.milestones) - 1)]

    def _promote_early(self, level: int, arrived: list[str], to_come: int) -> None:
        """Promote the paused trials of an open rung that are kept whatever the
        ``to_come`` trials still to arrive report: a trial with ``r - 1`` arrivals at
        or above its prediction (ties count against it) is kept if, for every number
        ``j`` of them that arrive (the others diverge or fail), ``r + j`` is within the
        kept ones of ``len(arrived) + j`` arrivals. Those decisions are the closed
        rung's: a trial passed here is among its kept ones."""
        values = [_finite(self._members[k].at_rung[level]) for k in arrived]
        for trial_id in arrived:
            member = self._members[trial_id]
            if member.level != level or member.status != "paused":
                continue
            mine = _finite(member.at_rung[level])
            rank = sum(1 for value in values if value >= mine)  # itself included
            if all(rank + j <= self._keep(len(arrived) + j) for j in range(to_come + 1)):
                self._promote(member, level)


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _rank_value(member: _Member) -> float:
    value = member.at_rung.get(member.level, member.at_rung.get(member.level - 1, math.nan))
    return value if math.isfinite(value) else -math.inf


__all__ = ["CONTINUE", "PAUSE", "STOP", "TIE_LIMIT", "Order", "PausingPolicy", "auto_keep_min"]
