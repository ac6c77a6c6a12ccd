"""Pause, don't kill, measured: :class:`~ncp_search.core.pausing.PausingPolicy`
against the default (ASHA on the predicted best) and Tune's HyperBand schedulers.

``python -m research bench pausing`` runs a discrete-event simulator over the budget
benchmark's studies (:mod:`research.budget_bench`: the same workloads, the same
trials per seed, the same regret, tolerance and good-trial definitions). Each trial
trains epoch by epoch from its recorded curve; a paused trial keeps its progress (a
checkpoint) and a resumed one continues at the next epoch of its own curve.

Workers. ``concurrency`` workers take jobs from the rule: a new trial (the next of
the seed's order) or a paused trial to resume. Each epoch ends at its start plus its
recorded duration (unit time where a table has none, as Taskset); the worker whose
epoch ends first reports next (ties by trial position, as the budget benchmark's
trial number). A pause costs a checkpoint save and a resume a restore (fractions of an
epoch measured beside one on the recorded tables' own tasks, :func:`measure_checkpoints`;
a resume from a checkpoint by default, ``--resumes memory`` for the sweep's resume from
the model its worker kept); the worker is busy meanwhile. A worker that gets no job
waits for the next event (a rung's barrier idles it): the makespan counts that.

Rules (:func:`make_host`):

- ``nop``: every trial to the end;
- ``default``: ``AshaPolicy(predictor="best", reduction_factor=3, min_resource=1)``
  over a :class:`~ncp_search.core.pool.TrialPool`, steps 1..N: the decisions of the
  budget benchmark's row of today's default (``ncp:best,rf=3``, formerly
  ``ncp_asha:best,rf=3``), replayed;
- ``pause,rf=R,keep=K,bracket=B``: ``PausingPolicy`` with ``reduction_factor=R``,
  ``keep_min`` ``K`` (an integer, ``auto`` for
  :func:`~ncp_search.core.pausing.auto_keep_min`, ``fF`` for
  ``max(2, round(F * bracket))`` or ``sF`` for ``max(2, round(F * sqrt(bracket)))``)
  and ``bracket_size`` ``B`` (``all`` or ``half`` of the study's trials); ``early=off``
  waits for the whole rung (``promote_early=False``; by default a trial no later
  arrival can push out is promoted at once and, promoted as it arrives, trains on
  without a checkpoint, as on Ray); ``ahead=on`` lets a worker with nothing to run train
  the best paused trial of an open rung on (its reports held back until the rung
  decides; a what-if of this simulator, not in the package); ``pred=P`` ranks a rung by
  the per-trial predictor ``P`` (default ``best``; ``last``, ``pow3``); ``ties=order``
  lets the bracket order choose among trials tied at a rung's cut
  (``keep_ties=False``; by default they are kept together); ``cost=tie|tol`` promotes
  by cost near the cut (:class:`CostAwarePausingPolicy`, a what-if of this simulator,
  not in the package): ``tie`` orders the trials whose predictions are within
  ``band`` (default 1) tolerances of the cut value by their measured seconds per epoch
  so far (cheaper first), ``tol`` keeps the count and ranking and swaps a kept trial
  within the band that is more than ``slow`` (default 1.5) times slower per epoch than
  a dropped trial within the band;
- ``tune_hyperband,rf=R`` / ``tune_bohb,rf=R``: Ray Tune's ``HyperBandScheduler`` /
  ``HyperBandForBOHB`` driven through their own hooks (``on_trial_add``,
  ``on_trial_result``, ``choose_trial_to_run``, ``on_trial_complete``,
  ``on_trial_remove``) by a small controller that does what Tune's does with their
  answers (:class:`TuneHost`), ``max_t`` = the epochs, mode and metric of the table.

Measures per rule, workload, mode and seed: epochs share, seconds share (training
plus checkpoint seconds over no pruning's training seconds), makespan, final regret,
the anytime curve, pauses and resumes, good-trial prune rate (top-10% trials that
never completed). Small studies: ``--small`` draws 16-24 of a workload's runs per
seed (:func:`small_trials`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncp_search.core.history import TrialHistory
from ncp_search.core.pausing import PAUSE, STOP, PausingPolicy, auto_keep_min
from ncp_search.core.policy import AshaPolicy
from ncp_search.core.pool import TrialPool
from research.budget_bench import GOOD_SHARE, Workload, study_trials
from research.replay_common import epochs_to_reach

CONTINUE, PAUSED, STOPPED, COMPLETE, FAILED = "continue", "pause", "stop", "complete", "fail"
DEFAULT = "default"
KEEPS = ("2", "4", "6", "auto", "s0.5", "s0.7", "f0.1")  # s0.7: auto until 2026-12-04;
# f0.1 the first placeholder
PAUSING = tuple(f"pause,rf={rf},keep={keep},bracket={bracket}"
                for rf in (2, 3) for keep in KEEPS for bracket in ("all", "half"))
TIES_BY_ORDER = "pause,rf=2,keep=auto,bracket=all,ties=order"  # the pick before rf 3 and kept ties
TUNE = ("tune_hyperband,rf=3", "tune_bohb,rf=3")
DEFAULT_RULES = ("nop", DEFAULT, *PAUSING, TIES_BY_ORDER, *TUNE)
SMALL_SIZES = (16, 24)  # small studies draw between 16 and 24 trials
PER_SEED = ("rule", "seed", "concurrency", "n_trials", "epochs", "epochs_share",
            "seconds_share", "makespan", "final_regret", "n_completed", "pauses", "resumes",
            "good_not_completed", "best_lost")


def label(name: str) -> str:
    """A short readable name of a rule."""
    if name == "nop":
        return "no pruning"
    if name == DEFAULT:
        return "default: ASHA rf3 on predicted best"
    head, options = name.split(",")[0], _raw_options(name)
    if head == "pause":
        return (f"pause rf{options.get('rf', '2')} keep {options.get('keep', 'auto')} "
                f"bracket {options.get('bracket', 'all')}"
                + (" early off" if options.get("early") == "off" else "")
                + (" ahead" if options.get("ahead") == "on" else "")
                + (f" pred {options['pred']}" if options.get("pred", "best") != "best"
                   else "")
                + (" ties by order" if options.get("ties") == "order" else "")
                + (f" first rung {options['min']}" if options.get("min", "1") != "1"
                   else "")
                + (f" cost {options['cost']}" if options.get("cost", "off") != "off" else "")
                + (f" band {options['band']}" if "band" in options else "")
                + (f" slow {options['slow']}" if "slow" in options else ""))
    rf = options.get("rf", "3")
    return {"tune_hyperband": f"Tune HyperBandScheduler rf{rf}",
            "tune_bohb": f"Tune HyperBandForBOHB rf{rf}"}.get(head, name)


def _raw_options(name: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in name.split(",")[1:] if "=" in part)


def keep_min_for(keep: str, bracket_size: int) -> int:
    """The ``keep_min`` a setting stands for at ``bracket_size`` trials.

    Raises:
        ValueError: for a setting that is none of an integer, ``auto``, ``fF``.
    """
    if keep == "auto":
        return auto_keep_min(bracket_size)
    if keep[:1] in ("f", "s"):
        scale = bracket_size if keep[0] == "f" else math.sqrt(bracket_size)
        return max(2, round(float(keep[1:]) * scale))
    if keep.isdigit() and int(keep) >= 1:
        return int(keep)
    raise ValueError(f"keep must be an integer >= 1, 'auto', 'f<fraction>' or "
                     f"'s<factor>', but got keep={keep!r}.")


def small_trials(workload: Workload, seed: int) -> np.ndarray:
    """Seed ``seed``'s small study: 16-24 runs (the count and the runs drawn by
    ``default_rng(10_000 + seed)``)."""
    rng = np.random.default_rng(10_000 + seed)
    size = int(rng.integers(SMALL_SIZES[0], SMALL_SIZES[1] + 1))
    return rng.choice(len(workload.finals), size=min(size, len(workload.finals)),
                      replace=False)


# ---------------------------------------------------------------- cost-aware promotion
COSTS = ("off", "tie", "tol")


class CostAwarePausingPolicy(PausingPolicy):
    """:class:`~ncp_search.core.pausing.PausingPolicy` that, at a closing rung, lets
    the measured seconds per epoch choose among the trials near the cut (a what-if of
    this simulator, not in the package).

    The host sets :attr:`costs` (trial id -> its mean seconds per epoch over the epochs
    it has trained, which a real host measures) before each report. At a closing rung
    the trials are ranked by predicted final as in the package and ``K`` kept (ties
    included); the cut is the prediction of the ``K``-th; the *band* is the trials whose
    predictions are within ``band`` of the cut (metric units, "higher is better").

    - ``rule="tie"``: the band (contiguous in the ranking) is ordered by cost (cheaper
      first; equal costs keep the ranking), then the first ``K`` kept;
    - ``rule="tol"``: the ``K`` kept stay as ranked, then the slowest kept trial of the
      band is swapped for the cheapest dropped trial of the band while it is more than
      ``slow`` times slower.

    Equal costs (e.g. unit time) change nothing. Promoting early stays safe: a trial is
    promoted before its rung closes only if fewer than ``keep`` trials (arrived or to
    come) can have a prediction at or above its own less twice the band, so no cost
    order can push it out of the kept ones (the package's test with ``2 * band`` more
    room).

    The package has no hook for this: the ranking is inside ``PausingPolicy._close``;
    this class overrides the private ``_with_ties`` (called once per closing rung with
    the ranking, which it reorders in place) and ``_promote_early``. In the package it
    would take a constructor argument, e.g. ``promote_by=(cost, band)`` with ``cost`` a
    callable ``trial_id -> seconds per epoch so far`` (or a ``cost=`` argument to
    ``report``), applied where ``_close`` ranks and in ``_promote_early``'s rank."""

    def __init__(self, *, cost_rule: str, band: float, slow: float = 1.5,
                 **kwargs: Any) -> None:
        if cost_rule not in ("tie", "tol"):
            raise ValueError(f"cost_rule must be 'tie' or 'tol', but got {cost_rule!r}.")
        if not band >= 0 or not slow >= 1:
            raise ValueError(f"band must be >= 0 and slow >= 1, got {band!r}, {slow!r}.")
        super().__init__(**kwargs)
        self.cost_rule = cost_rule
        self.band = float(band)
        self.slow = float(slow)
        self.costs: dict[str, float] = {}
        self.changed = 0  # closing rungs whose kept set cost changed

    def _cost(self, trial_id: str) -> float:
        return self.costs.get(trial_id, math.nan)

    def _with_ties(self, ranked: list[str], level: int, keep: int) -> int:
        kept = super()._with_ties(ranked, level, keep)
        if not 0 < kept < len(ranked):
            return kept
        values = [_finite_value(self._members[k].at_rung[level]) for k in ranked]
        cut = values[kept - 1]
        if not math.isfinite(cut):
            return kept
        band = [i for i, v in enumerate(values) if math.isfinite(v)
                and abs(v - cut) <= self.band + 1e-12]
        before = set(ranked[:kept])
        if self.cost_rule == "tie":
            first, last = band[0], band[-1] + 1  # contiguous: sorted by value
            block = ranked[first:last]
            ranked[first:last] = sorted(block, key=lambda k: _cost_key(self._cost(k)))
        else:
            inside = [ranked[i] for i in band if i < kept]
            outside = [ranked[i] for i in band if i >= kept]
            while inside and outside:
                slowest = max(inside, key=lambda k: _cost_key(self._cost(k)))
                cheapest = min(outside, key=lambda k: _cost_key(self._cost(k)))
                a, b = self._cost(slowest), self._cost(cheapest)
                if not (math.isfinite(a) and math.isfinite(b) and a > self.slow * b):
                    break
                i, j = ranked.index(slowest), ranked.index(cheapest)
                ranked[i], ranked[j] = cheapest, slowest
                inside.remove(slowest)
                outside.remove(cheapest)
        if set(ranked[:kept]) != before:
            self.changed += 1
        for trial_id in ranked[kept:]:  # a trial promoted early must stay kept
            if self._members[trial_id].level != level:
                raise RuntimeError(f"cost order pushed {trial_id!r}, promoted early, out "
                                   "of the kept ones")
        return kept

    def _promote_early(self, level: int, arrived: list[str], to_come: int) -> None:
        values = [_finite_value(self._members[k].at_rung[level]) for k in arrived]
        margin = 2 * self.band + 1e-12
        for trial_id in arrived:
            member = self._members[trial_id]
            if member.level != level or member.status != "paused":
                continue
            mine = _finite_value(member.at_rung[level])
            rank = sum(1 for value in values if value >= mine - margin)
            if all(rank + j <= self._keep(len(arrived) + j) for j in range(to_come + 1)):
                self._promote(member, level)


def _finite_value(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def _cost_key(cost: float) -> float:
    return cost if math.isfinite(cost) else math.inf  # unknown cost: last


# ---------------------------------------------------------------- hosts
class Host:
    """A rule as the simulator drives it (one study).

    The simulator asks :meth:`take` for a job when a worker is free and calls
    :meth:`result` after each epoch. Positions index the study's trial order.
    """

    def __init__(self, n_trials: int, n_steps: int, sign: float) -> None:
        self.n_trials = n_trials
        self.n_steps = n_steps
        self.sign = sign
        self.started = 0

    def take(self) -> tuple[int, bool] | None:
        """``(position, resumed)`` for a free worker, or None (nothing to run now)."""
        raise NotImplementedError

    def result(self, position: int, epoch: int, value: float, final: float) -> str:
        """The trial's epoch ``epoch`` (1-based) gave ``value`` (the metric as
        recorded; ``final`` its recorded final): what it does next."""
        raise NotImplementedError

    def finished(self) -> bool:
        """Whether the rule has nothing left to run (checked when the workers stop)."""
        return self.started >= self.n_trials

    def _new(self) -> tuple[int, bool] | None:
        if self.started >= self.n_trials:
            return None
        self.started += 1
        return (self.started - 1, False)

    def _end(self, epoch: int, final: float) -> str:
        return COMPLETE if math.isfinite(final) else FAILED


class NopHost(Host):
    """Every trial to the end."""

    def take(self) -> tuple[int, bool] | None:
        return self._new()

    def result(self, position: int, epoch: int, value: float, final: float) -> str:
        return self._end(epoch, final) if epoch >= self.n_steps else CONTINUE


class AshaHost(Host):
    """Today's default replayed: ``AshaPolicy`` (predictor ``best``, rf 3, min_resource
    1, steps 1..N, diverged trials stopped) deciding over a ``TrialPool`` of the
    study's trials, as ``NCPPruner(rule="asha")`` decides over an Optuna study."""

    def __init__(self, n_trials: int, n_steps: int, sign: float,
                 reduction_factor: float = 3.0) -> None:
        super().__init__(n_trials, n_steps, sign)
        self.policy = AshaPolicy(reduction_factor=reduction_factor, min_resource=1,
                                 first_step=1, max_step=n_steps, predictor="best")
        self.pool = TrialPool(sign)
        self.rung_steps = set(self.policy.rungs(n_steps))

    def take(self) -> tuple[int, bool] | None:
        return self._new()

    def result(self, position: int, epoch: int, value: float, final: float) -> str:
        key = str(position)
        self.pool.apply({"e": "result", "id": key, "t": epoch, "v": self.sign * value})
        history = self.pool.history(key)
        view = self.pool.view(key)
        verdict = self.policy.decide(history, view, reported=value)
        rung = verdict.rung
        prediction = verdict.prediction
        if rung is None and verdict.stop and epoch in self.rung_steps:
            # Optuna keeps a trial stopped as diverged at a rung step in that rung, at
            # its prediction there (from its curve before the NaN).
            rung, prediction = float(epoch), self.policy.value_at(history, epoch, view)
        self.pool.apply({"e": "decision", "id": key, "t": epoch, "p": prediction,
                         "stop": verdict.stop, "rung": rung})
        if verdict.stop:
            return STOPPED
        if epoch < self.n_steps:
            return CONTINUE
        if math.isfinite(final):
            self.pool.apply({"e": "complete", "id": key, "final": self.sign * final})
            return COMPLETE
        self.pool.apply({"e": "error", "id": key})  # Optuna: told as FAIL
        return FAILED


class PausingHost(Host):
    """:class:`~ncp_search.core.pausing.PausingPolicy` through its event API."""

    def __init__(self, n_trials: int, n_steps: int, sign: float, *,
                 reduction_factor: float, keep: str, bracket: str, early: bool = True,
                 speculate: bool = False, predictor: str = "best",
                 keep_ties: bool = True, min_resource: float = 1.0,
                 cost: str = "off", band: float = 0.0, slow: float = 1.5,
                 seconds: Sequence[Sequence[float]] | None = None) -> None:
        super().__init__(n_trials, n_steps, sign)
        # cost: promote by measured seconds per epoch near the cut
        # (CostAwarePausingPolicy); ``seconds[position][epoch - 1]`` the durations the
        # simulator charges (only those of epochs a trial has trained are read); band
        # in metric units
        self.seconds = seconds
        # speculate: a worker with nothing to run trains on the best paused trial of an
        # open rung (up to its next rung), its reports held back; they reach the policy
        # if its rung promotes it, and the epochs are spent for nothing if not. The
        # policy's decisions stay the same; only when epochs are trained changes.
        self.speculate = speculate
        self.held: dict[int, list[int]] = {}  # position -> epochs trained ahead
        self.ahead: set[int] = set()  # trials training ahead now
        self.cut: dict[int, str] = {}  # released in their slot with another action
        if bracket not in ("all", "half"):
            raise ValueError(f"bracket must be 'all' or 'half', but got bracket={bracket!r}.")
        size = n_trials if bracket == "all" else max(1, math.ceil(n_trials / 2))
        settings: dict[str, Any] = dict(
            n_trials=n_trials, max_resource=n_steps, reduction_factor=reduction_factor,
            min_resource=min_resource, keep_min=keep_min_for(keep, size), bracket_size=size,
            promote_early=early, first_step=1, predictor=predictor, keep_ties=keep_ties)
        if cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, but got cost={cost!r}.")
        self.policy: PausingPolicy = (
            PausingPolicy(**settings) if cost == "off" else
            CostAwarePausingPolicy(cost_rule=cost, band=band, slow=slow, **settings))
        self.values: dict[int, tuple[list[float], list[float]]] = {}
        self.finals: dict[int, float] = {}
        self.pauses = 0
        self.resumes = 0

    def where_dropped(self, position: int) -> dict[str, int] | None:
        """Where the policy dropped trial ``position``: the rung (epochs), its rank there
        by predicted final (1 = best; ties rank alike) among the ``n`` that arrived; None
        when it was not dropped."""
        member = self.policy._members.get(str(position))  # research: reads in
        if member is None or member.status != "dropped" or not member.at_rung:
            return None
        level = max(member.at_rung)
        mine = member.at_rung[level]
        peers = [m.at_rung[level] for m in self.policy._members.values()
                 if m.bracket == member.bracket and level in m.at_rung]
        return {"rung": int(self.policy.milestones[level]), "n": len(peers),
                "rank": 1 + sum(p > mine for p in peers)}

    def take(self) -> tuple[int, bool] | None:
        while True:
            job = self.policy.next_job()
            if job is None:
                return self._ahead_job() if self.speculate else None
            kind, trial_id, _ = job
            if kind == "resume":
                assert trial_id is not None
                position = int(trial_id)
                if position in self.held:  # trained ahead: its reports reach the policy
                    action = self._release(position)
                    if position in self.ahead:  # trains on in its slot
                        self.ahead.discard(position)
                        if action != CONTINUE:
                            self.cut[position] = action  # at its next report
                        continue
                    if action != CONTINUE:
                        continue  # waits at its next rung
                self.resumes += 1
                return (position, True)
            position = self.started
            self.started += 1
            self.policy.add(str(position))
            return (position, False)

    def _ahead_job(self) -> tuple[int, bool] | None:
        """The best paused trial of an open rung that may train ahead, or None."""
        best, best_value = None, -math.inf
        for trial_id, member in self.policy._members.items():  # research: reads in
            position = int(trial_id)
            if member.status != "paused" or position in self.ahead:
                continue
            if len(self.values[position][0]) >= self._ahead_limit(position):
                continue  # already ahead to its next rung
            value = member.at_rung.get(member.level, -math.inf)
            if math.isfinite(value) and value > best_value:
                best, best_value = position, value
        if best is None:
            return None
        self.held.setdefault(best, [])
        self.ahead.add(best)
        self.resumes += 1
        return (best, True)

    def _ahead_limit(self, position: int) -> int:
        """How far a paused trial may train ahead: to its next rung, and one epoch short
        of the end (it completes once released, in a job of its own)."""
        milestones = self.policy.milestones
        level = self.policy._members[str(position)].level
        return int(min(milestones[min(level + 1, len(milestones) - 1)], self.n_steps - 1))

    def _release(self, position: int) -> str:
        """Feed a promoted (or just resumed) trial's held reports to the policy; its
        next action."""
        if self.policy.status(str(position)) == "promoted":
            self.policy.resume(str(position))
        held = self.held.pop(position)
        action = CONTINUE
        for epoch in held:
            action = self._report(position, epoch)
            if action != CONTINUE:
                break
        return action

    def finished(self) -> bool:
        return self.policy.finished()

    def result(self, position: int, epoch: int, value: float, final: float) -> str:
        steps, values = self.values.setdefault(position, ([], []))
        steps.append(float(epoch))
        values.append(self.sign * value)  # a NaN stays (the policy stops the trial)
        self.finals[position] = final
        if position in self.cut:
            return self.cut.pop(position)
        if position in self.ahead:
            status = self.policy.status(str(position))
            if status == "paused":  # its rung is still open: hold the report back
                self.held[position].append(epoch)
                if epoch >= self._ahead_limit(position):
                    self.ahead.discard(position)
                    self.pauses += 1
                    return PAUSED
                return CONTINUE
            self.ahead.discard(position)
            if status != "promoted":  # dropped: the epochs ahead were for nothing
                self.held.pop(position, None)
                return STOPPED
            self.held[position].append(epoch)
            return self._release(position)
        return self._report(position, epoch)

    def _report(self, position: int, epoch: int) -> str:
        steps, values = self.values[position]
        n = steps.index(float(epoch)) + 1
        value = self.sign * values[n - 1]
        history = TrialHistory(np.array(steps[:n]), np.array(values[:n]), sign=self.sign)
        final = self.finals[position]
        if isinstance(self.policy, CostAwarePausingPolicy) and self.seconds is not None:
            # what a host measures: the trial's own epochs trained so far
            self.policy.costs[str(position)] = float(np.mean(self.seconds[position][:n]))
        order = self.policy.report(str(position), history, reported=value)
        if order.action == STOP:
            return STOPPED
        if order.action == PAUSE and self.policy.status(str(position)) == "promoted":
            self.policy.resume(str(position))  # promoted as it arrived: trains on (as on
            return CONTINUE  # Ray; the Optuna sweep saves a checkpoint and reloads nothing)
        if order.action == PAUSE:
            self.pauses += 1
            return PAUSED
        if epoch >= self.n_steps:
            self.policy.complete(str(position))
            return self._end(epoch, final)
        return CONTINUE


class _FakeTrial:
    """What Tune's HyperBand schedulers read of a trial."""

    def __init__(self, position: int) -> None:
        self.trial_id = f"t{position:04d}"
        self.position = position
        self.status = "PENDING"
        self.is_saving = False
        self.last_result: dict[str, Any] = {}

    def __repr__(self) -> str:
        return self.trial_id


class _FakeSearcher:
    def on_pause(self, trial_id: str) -> None:
        pass

    def on_unpause(self, trial_id: str) -> None:
        pass


class _FakeController:
    """The part of Tune's ``TuneController`` the HyperBand schedulers call: it
    stops trials as ``TuneController.stop_trial`` does (a paused or pending trial:
    ``on_trial_remove``; a running one: ``on_trial_complete``)."""

    def __init__(self, trials: list[_FakeTrial]) -> None:
        self.trials = trials
        self.scheduler: Any = None
        self.search_alg = type("SearchAlg", (), {"searcher": _FakeSearcher()})()

    def get_trials(self) -> list[_FakeTrial]:
        return self.trials

    def stop_trial(self, trial: _FakeTrial) -> None:
        if trial.status in ("ERROR", "TERMINATED"):
            return
        if trial.status in ("PENDING", "PAUSED"):
            self.scheduler.on_trial_remove(self, trial)
        else:
            self.scheduler.on_trial_complete(self, trial, trial.last_result)
        trial.status = "TERMINATED"


class TuneHost(Host):
    """Tune's ``HyperBandScheduler`` (``bohb=False``) or ``HyperBandForBOHB`` driven
    through its own hooks. Every trial is added (``on_trial_add``) in the seed's
    order before the first runs (Tune adds trials as its searcher creates them; the
    brackets are filled in that order either way); a free worker runs what
    ``choose_trial_to_run`` returns; each epoch's result goes to
    ``on_trial_result`` and its answer is applied as Tune applies it (CONTINUE,
    PAUSE: checkpoint, STOP: ``stop_trial``); a trial that reaches ``max_t`` ends
    (``stop_trial``: ``on_trial_complete``)."""

    def __init__(self, n_trials: int, n_steps: int, sign: float, *,
                 reduction_factor: float, bohb: bool) -> None:
        super().__init__(n_trials, n_steps, sign)
        from ray.tune.schedulers import HyperBandForBOHB, HyperBandScheduler

        logging.getLogger("ray.tune").setLevel(logging.WARNING)  # "Bracket too small"
        cls: Any = HyperBandForBOHB if bohb else HyperBandScheduler
        self.scheduler = cls(time_attr="training_iteration", metric="value",
                             mode="max" if sign > 0 else "min", max_t=n_steps,
                             reduction_factor=reduction_factor)
        self.trials = [_FakeTrial(p) for p in range(n_trials)]
        self.controller = _FakeController(self.trials)
        self.controller.scheduler = self.scheduler
        for trial in self.trials:
            self.scheduler.on_trial_add(self.controller, trial)
        self.pauses = 0
        self.resumes = 0

    def finished(self) -> bool:
        return True  # Tune ends an experiment whose scheduler picks no trial to run

    def take(self) -> tuple[int, bool] | None:
        trial = self.scheduler.choose_trial_to_run(self.controller)
        if trial is None:
            return None
        resumed = trial.status == "PAUSED"
        self.resumes += int(resumed)
        trial.status = "RUNNING"
        return (trial.position, resumed)

    def result(self, position: int, epoch: int, value: float, final: float) -> str:
        trial = self.trials[position]
        result = {"training_iteration": epoch, "value": value, "done": epoch >= self.n_steps}
        trial.last_result = result
        decision = self.scheduler.on_trial_result(self.controller, trial, result)
        if epoch >= self.n_steps:
            if trial.status == "RUNNING":
                self.controller.stop_trial(trial)
            return self._end(epoch, final)
        if decision == "STOP":
            self.controller.stop_trial(trial)
            return STOPPED
        if decision == "PAUSE":
            trial.status = "PAUSED"
            self.pauses += 1
            return PAUSED
        return CONTINUE


def make_host(name: str, n_trials: int, n_steps: int, sign: float, *,
              seconds: Sequence[Sequence[float]] | None = None,
              tolerance: float = 0.0) -> Host:
    """The host of rule ``name`` for one study (see the module docstring).

    ``seconds[position][epoch - 1]``: the epoch durations (for ``cost=``; unit time when
    None); ``tolerance``: the workload's tolerance in metric units (``cost=``'s band is
    ``band`` times it).

    Raises:
        ValueError: for an unknown rule or option.
    """
    if name == "nop":
        return NopHost(n_trials, n_steps, sign)
    if name == DEFAULT:
        return AshaHost(n_trials, n_steps, sign)
    head, options = name.split(",")[0], _raw_options(name)
    if head == "pause":
        unknown = set(options) - {"rf", "keep", "bracket", "early", "ahead", "pred", "ties",
                                  "min", "cost", "band", "slow"}
        if unknown or any(options.get(k, "on") not in ("on", "off")
                          for k in ("early", "ahead")) or options.get(
                              "ties", "keep") not in ("keep", "order") or options.get(
                              "cost", "off") not in COSTS or (
                              ("band" in options or "slow" in options)
                              and options.get("cost", "off") == "off"):
            raise ValueError(f"rule {name!r}: 'pause' takes rf, keep, bracket, early=on|off, "
                             f"ahead=on|off, pred, ties=keep|order, min (epochs to the "
                             f"first rung), cost=off|tie|tol with band (tolerances) and "
                             f"slow (tol); got {sorted(options)}.")
        return PausingHost(n_trials, n_steps, sign,
                           reduction_factor=float(options.get("rf", 2)),
                           keep=options.get("keep", "auto"),
                           bracket=options.get("bracket", "all"),
                           early=options.get("early", "on") == "on",
                           speculate=options.get("ahead", "off") == "on",
                           predictor=options.get("pred", "best"),
                           keep_ties=options.get("ties", "keep") == "keep",
                           min_resource=float(options.get("min", 1)),
                           cost=options.get("cost", "off"),
                           band=float(options.get("band", 1)) * tolerance,
                           slow=float(options.get("slow", 1.5)), seconds=seconds)
    if head in ("tune_hyperband", "tune_bohb") and set(options) <= {"rf"}:
        return TuneHost(n_trials, n_steps, sign, reduction_factor=float(options.get("rf", 3)),
                        bohb=head == "tune_bohb")
    raise ValueError(f"unknown rule {name!r}: use nop, default, pause,rf=R,keep=K,bracket=B, "
                     "tune_hyperband,rf=R or tune_bohb,rf=R.")


# ---------------------------------------------------------------- the simulator
@dataclass(frozen=True)
class CheckpointCost:
    """Seconds of one checkpoint save and one restore (model + optimizer state)."""

    save: float = 0.0
    restore: float = 0.0


def simulate(
    workload: Workload,
    name: str,
    order: np.ndarray,
    *,
    concurrency: int = 1,
    checkpoint: CheckpointCost = CheckpointCost(),
    seed: int = 0,
) -> dict[str, Any]:
    """One study of rule ``name`` over the runs ``order`` (positions are trial
    numbers), ``concurrency`` workers.

    Returns epochs, seconds (training; checkpoint seconds apart), makespan, final
    regret, the anytime curve (epochs consumed and regret after each trial ends),
    pauses, resumes, and the counts behind the good-trial prune rate. ``trace`` lists
    ``(position, epoch, value)`` in the order epochs were reported (tests read it).

    Raises:
        RuntimeError: when the rule leaves trials unfinished with no job to run.
    """
    n_steps = workload.n_steps
    sign = workload.sign
    seconds = workload.epoch_seconds[np.asarray(order, dtype=int)].tolist()
    host = make_host(name, len(order), n_steps, sign, seconds=seconds,
                     tolerance=workload.tolerance / workload.scale)
    scores = sign * workload.finals[order]
    finite = scores[np.isfinite(scores)]
    best_possible = float(finite.max()) if finite.size else math.nan
    n_good = max(1, math.ceil(GOOD_SHARE * len(order)))
    good = set(np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:n_good].tolist())
    progress = [0] * len(order)  # epochs trained (the checkpoint's epoch when paused)
    clock = epochs = 0.0
    train_seconds = checkpoint_seconds = 0.0
    best = -math.inf
    curve: list[tuple[int, float]] = []
    completed: set[int] = set()
    ended: dict[int, str] = {}
    trace: list[tuple[int, int, float]] = []
    # [end time, position, epoch or 0 for a checkpoint save]
    slots: list[list[Any]] = []

    def duration(position: int, epoch: int) -> float:
        return float(seconds[position][epoch - 1])

    while True:
        while len(slots) < concurrency:
            job = host.take()
            if job is None:
                break
            position, resumed = job
            start = clock
            if resumed:
                start += checkpoint.restore
                checkpoint_seconds += checkpoint.restore
            epoch = progress[position] + 1
            slots.append([start + duration(position, epoch), position, epoch])
        if not slots:
            break
        slot = min(slots, key=lambda s: (s[0], s[1]))
        end, position, epoch = slot
        clock = end
        if epoch == 0:  # a checkpoint save ended: the worker is free
            slots.remove(slot)
            continue
        run = int(order[position])
        epochs += 1
        train_seconds += duration(position, epoch)
        progress[position] = epoch
        value = float(workload.values[run, epoch - 1])
        trace.append((position, epoch, value))
        action = host.result(position, epoch, value, float(workload.finals[run]))
        if action == CONTINUE:
            slot[0], slot[2] = clock + duration(position, epoch + 1), epoch + 1
            continue
        if action == PAUSED:
            checkpoint_seconds += checkpoint.save
            if checkpoint.save > 0:
                slot[0], slot[2] = clock + checkpoint.save, 0
            else:
                slots.remove(slot)
            continue
        slots.remove(slot)
        ended[position] = action
        if action == COMPLETE:
            completed.add(position)
            best = max(best, sign * float(workload.finals[run]))
        curve.append((int(epochs), (best_possible - best) * workload.scale))
    unfinished = [p for p in range(len(order)) if p not in ended and progress[p] > 0]
    paused_for_good = [p for p in unfinished if progress[p] < n_steps]
    if not host.finished():
        raise RuntimeError(f"{name}: the workers stopped with nothing to run, but the rule "
                           f"has not finished ({host.started} of {len(order)} trials "
                           "started): it waits on something that will not come.")
    all_epochs = len(order) * n_steps
    all_seconds = float(np.sum(workload.epoch_seconds[np.asarray(order, dtype=int)]))
    return {
        "rule": name, "seed": seed, "concurrency": concurrency,
        "n_trials": len(order), "epochs": int(epochs), "epochs_share": epochs / all_epochs,
        "seconds": train_seconds + checkpoint_seconds,
        "checkpoint_seconds": checkpoint_seconds,
        "seconds_share": (train_seconds + checkpoint_seconds) / all_seconds,
        "makespan": clock, "final_regret": (best_possible - best) * workload.scale,
        "curve": curve, "n_completed": len(completed),
        "n_paused_for_good": len(paused_for_good),
        "pauses": int(getattr(host, "pauses", 0)), "resumes": int(getattr(host, "resumes", 0)),
        "never_started": len(order) - host.started if not isinstance(host, TuneHost)
        else sum(1 for p in range(len(order)) if progress[p] == 0),
        "n_good": n_good, "good_not_completed": len(good - completed),
        "best_lost": (_best_lost(host, scores) if (best_possible - best) * workload.scale
                      > 1e-9 else None),  # lost: regret, not float noise between finals
        "trace": trace,
    }


def _best_lost(host: Host, scores: np.ndarray) -> dict[str, int] | None:
    """Where a pausing rule dropped the study's best trial (the first of equal finals),
    or None (another rule, or the best was not dropped at a rung)."""
    if not isinstance(host, PausingHost):
        return None
    return host.where_dropped(int(np.argmax(np.nan_to_num(scores, nan=-np.inf))))


# ---------------------------------------------------------------- checkpoint cost
RESUMES = ("checkpoint", "memory")
"""How a resumed trial gets its model back: ``checkpoint`` (built, compiled and its
checkpoint loaded: Tune, or a sweep worker that did not pause it) or ``memory`` (the
model its worker kept: the sweep's default)."""


def measure_checkpoints(tables: Sequence[str], per_table: int = 3,
                        folder: str | None = None) -> dict[str, dict[str, Any]]:
    """What a pause and a resume cost against a training epoch, measured side by side
    in this process on each recorded table's own task (its data, its batch sizes and
    learning-rate schedules), for ``per_table`` of its configurations (the models
    built as the recorder builds them: :func:`ncp_search.engine.finetune.build_trial_models`
    on the zoo architecture, untrained source weights: the cost depends on the shapes).

    Per configuration, in one process: three epochs (the last two give the warm
    epoch); ``save``:
    :func:`~ncp_search.integrations.ray.checkpoint.save_keras` (what the sweep and
    Tune's trainable write at a pause); a resume from ``memory``: one more epoch on the
    same model, less a warm epoch; a resume from a ``checkpoint``: building and
    compiling the model again, :func:`~ncp_search.integrations.ray.checkpoint.load_keras`
    and its first epoch (traced again), less a warm epoch. The costs are kept as
    fractions of the warm epoch measured with them (``*_epochs``, the medians, at
    least 0), so a busy machine does not inflate them against the recorded epochs;
    :func:`checkpoint_for` scales them by each workload's recorded median epoch."""
    from pathlib import Path

    from ncp_search.app.data import load_task
    from research.recorder import load_workload, read_table

    out: dict[str, dict[str, Any]] = {}
    for table in tables:
        name = Path(table).stem
        spec = load_workload(f"configs/record_{name}.yaml")
        sizes = {k: spec[k] for k in ("n_train", "n_val") if spec.get(k) is not None}
        task = load_task(spec["target"], seed=spec["seed"], **sizes)
        rows = [r for r in read_table(table)
                if r.get("config", {}).get("mode", "observer") == "observer"][:per_table]
        got: dict[str, list[float]] = {k: [] for k in ("epoch", "save", "checkpoint", "memory")}
        for row in rows:
            for key, seconds in _pause_costs(spec, task, row["config"], folder).items():
                got[key].append(seconds)
        recorded = [step["epoch_seconds"] for r in read_table(table) for step in r["curve"][1:]
                    if step.get("epoch_seconds") is not None]
        epoch = float(np.median(got["epoch"]))
        ratios = {key: max(0.0, float(np.median([c / e for c, e in zip(got[key], got["epoch"])])))
                  for key in ("save", "checkpoint", "memory")}
        out[name] = {"save": float(np.median(got["save"])),
                     "restore": max(0.0, float(np.median(got["checkpoint"]))),
                     "restore_memory": max(0.0, float(np.median(got["memory"]))),
                     "epoch_measured": epoch, "save_epochs": ratios["save"],
                     "restore_epochs": ratios["checkpoint"],
                     "restore_memory_epochs": ratios["memory"],
                     "models": len(rows), "epoch_seconds_median": float(np.median(recorded)),
                     "per_model": {k: [float(x) for x in v] for k, v in got.items()}}
    return out


def _pause_costs(spec: dict[str, Any], task: Any, config: dict[str, Any],
                 folder: str | None) -> dict[str, float]:
    """One configuration's warm ``epoch``, ``save`` and the extra seconds of a resume
    from a ``checkpoint`` and from ``memory`` (:func:`measure_checkpoints`)."""
    import tempfile

    import keras

    from ncp_search.app.zoo import ARCHITECTURES
    from ncp_search.engine.finetune import build_trial_models, compile_trial, schedule_callback
    from ncp_search.integrations.ray.checkpoint import load_keras, save_keras

    shape = tuple(task.x_train.shape[1:])
    ends: list[float] = []
    clock = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda *_: ends.append(time.perf_counter()),
        on_epoch_end=lambda *_: ends.append(time.perf_counter()))

    def build() -> Any:
        source = ARCHITECTURES[config.get("source_model", spec["source_model"])](shape, 5, 0)
        models = build_trial_models(source, task.num_classes, config, mode="observer")
        compile_trial(models.trained, config)
        return models.trained

    def fit(model: Any, start: int, stop: int) -> float:
        began = time.perf_counter()
        model.fit(task.x_train, task.y_train, validation_data=(task.x_val, task.y_val),
                  epochs=stop, initial_epoch=start, verbose=0,
                  batch_size=int(config.get("batch_size", 64)),
                  callbacks=[clock, schedule_callback(config, int(spec["epochs"]))])
        return time.perf_counter() - began

    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build()
    fit(model, 0, 3)
    warm = float(np.median([ends[k + 1] - ends[k] for k in (2, 4)]))  # epochs 2 and 3
    costs = {"epoch": warm}
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        began = time.perf_counter()
        save_keras(model, tmp, 3)
        costs["save"] = time.perf_counter() - began
        costs["memory"] = fit(model, 3, 4) - warm
        began = time.perf_counter()
        fresh = build()
        load_keras(fresh, tmp)
        costs["checkpoint"] = time.perf_counter() - began + fit(fresh, 4, 5) - warm
    return costs


def checkpoint_for(workload: Workload, measured: dict[str, dict[str, Any]],
                   resume: str = "checkpoint") -> CheckpointCost:
    """A workload's checkpoint cost, a resume charged as ``resume`` says (:data:`RESUMES`).

    Measured side by side (:func:`measure_checkpoints`): the fractions of an epoch,
    times the workload's recorded median epoch; a workload without models (Taskset,
    unit time) takes the tables' median fractions. An earlier report's absolute
    seconds (no fractions) are used as they are, and their ratio to the recorded
    epoch for a workload without models. ``--checkpoint-epochs``: those fractions."""
    if resume not in RESUMES:
        raise ValueError(f"resume must be one of {RESUMES}, but got {resume!r}.")
    unit = float(np.median(workload.epoch_seconds))
    if "per_epoch" in measured:  # --checkpoint-epochs: fractions of a median epoch
        return CheckpointCost(measured["per_epoch"]["save"] * unit,
                              measured["per_epoch"]["restore"] * unit)
    if not measured:
        return CheckpointCost()
    restore = "restore_epochs" if resume == "checkpoint" else "restore_memory_epochs"
    own = measured.get(workload.name)
    entries = [own] if own is not None else list(measured.values())
    if resume == "memory" and any("save_epochs" not in m for m in entries):
        raise ValueError("these checkpoint figures have no resume from memory; "
                         "measure them again (--measure-checkpoints N).")
    if own is not None and "save_epochs" not in own:  # an earlier report's seconds
        return CheckpointCost(own["save"], own["restore"])
    pairs = [(m["save_epochs"], m[restore]) if "save_epochs" in m else
             (m["save"] / m["epoch_seconds_median"], m["restore"] / m["epoch_seconds_median"])
             for m in entries]
    return CheckpointCost(float(np.median([p[0] for p in pairs])) * unit,
                          float(np.median([p[1] for p in pairs])) * unit)


# ---------------------------------------------------------------- summaries
def summarize(runs: Sequence[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Per rule: means over seeds, worst seed, pooled good-trial prune rate, and
    paired ratios against the default (per seed, then the mean)."""
    names = list(dict.fromkeys(r["rule"] for r in runs))
    by = {(r["rule"], r["seed"]): r for r in runs}
    out: dict[str, Any] = {}
    for name in names:
        mine = [r for r in runs if r["rule"] == name]
        regrets = [r["final_regret"] for r in mine]
        reach = [epochs_to_reach(r["curve"], tolerance) for r in mine]
        nop = [by.get(("nop", r["seed"])) for r in mine]
        default = [by.get((DEFAULT, r["seed"])) for r in mine]
        row = {
            "label": label(name), "seeds": len(mine),
            "epochs_share": float(np.mean([r["epochs_share"] for r in mine])),
            "seconds_share": float(np.mean([r["seconds_share"] for r in mine])),
            "makespan_vs_nop": _mean_ratio(mine, nop, "makespan"),
            "makespan_vs_default": _mean_ratio(mine, default, "makespan"),
            "epochs_vs_default": _mean_ratio(mine, default, "epochs"),
            "regret_mean": float(np.mean(regrets)), "regret_worst": float(np.max(regrets)),
            "within_tolerance": int(sum(g <= tolerance + 1e-9 for g in regrets)),
            "reach_mean": float(np.mean([x for x in reach if math.isfinite(x)]))
            if any(math.isfinite(x) for x in reach) else math.inf,
            "good_prune_rate": sum(r["good_not_completed"] for r in mine)
            / max(1, sum(r["n_good"] for r in mine)),
            "pauses": float(np.mean([r["pauses"] for r in mine])),
            "resumes": float(np.mean([r["resumes"] for r in mine])),
            "checkpoint_share": float(np.mean([r["checkpoint_seconds"] / r["seconds"]
                                               if r["seconds"] else 0.0 for r in mine])),
            "n_trials": float(np.mean([r["n_trials"] for r in mine])),
            "best_lost": [r["best_lost"] for r in mine if r.get("best_lost")],
        }
        out[name] = row
    return out


def _mean_ratio(mine: Sequence[dict[str, Any]], ref: Sequence[dict[str, Any] | None],
                key: str) -> float:
    pairs = [(a[key], b[key]) for a, b in zip(mine, ref) if b and b[key]]
    return float(np.mean([a / b for a, b in pairs])) if pairs else math.nan


def anytime(runs: Sequence[dict[str, Any]], grid: np.ndarray, all_epochs: int
            ) -> dict[str, list[float]]:
    """Per rule: the median over seeds of the regret after each epochs share of
    ``grid`` (inf while fewer than half the seeds have a completed trial; NaN past
    the rule's median epochs), and the share of seeds with a completed trial."""
    out: dict[str, list[float]] = {}
    for name in dict.fromkeys(r["rule"] for r in runs):
        table = []
        for run in (r for r in runs if r["rule"] == name):
            row = np.full(len(grid), math.inf)
            for epochs, regret in run["curve"]:
                row[grid * all_epochs >= epochs] = np.minimum(
                    row[grid * all_epochs >= epochs], regret)
            table.append(row)
        values = np.array(table)
        end = float(np.median([r["epochs"] for r in runs if r["rule"] == name])) / all_epochs
        median = np.median(values, axis=0)
        median[grid > end] = np.nan  # the rule spent no more (median over seeds)
        out[name] = [float(v) for v in median]
        out[name + "|done"] = [float(v) for v in np.isfinite(values).mean(axis=0)]
    return out


# ---------------------------------------------------------------- one unit of work
def bench_unit(job: dict[str, Any]) -> dict[str, Any]:
    """One workload: every rule, seed and mode (and the small studies)."""
    import warnings

    from research.budget_bench import load_workload

    logging.getLogger("ncp_search").setLevel(logging.WARNING)
    logging.getLogger("ray").setLevel(logging.WARNING)
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    workload = load_workload(job["source"])
    measured = job.get("checkpoints") or {}
    cost = checkpoint_for(workload, measured, job.get("resume", "checkpoint"))
    grid = np.geomspace(0.005, 1.0, 121)
    modes: dict[str, Any] = {}
    for size in ("large", "small") if job.get("small") else ("large",):
        # small studies: epochs only (sequential; the pausing rules' epochs do not
        # depend on the workers, the default's barely)
        for concurrency in job["concurrency"] if size == "large" else [1]:
            runs = []
            for name in job["rules"]:
                if size == "small" and name.startswith("tune_"):
                    continue
                for seed in job["seeds"]:
                    order = (study_trials(workload, seed) if size == "large"
                             else small_trials(workload, seed))
                    run = simulate(workload, name, order, concurrency=concurrency,
                                   checkpoint=cost, seed=seed)
                    run.pop("trace")
                    runs.append(run)
            key = f"{size} {'sequential' if concurrency == 1 else f'{concurrency} in flight'}"
            all_epochs = int(np.mean([r["n_trials"] for r in runs])) * workload.n_steps
            modes[key] = {"concurrency": concurrency, "size": size,
                          "summary": summarize(runs, workload.tolerance),
                          "anytime": anytime(runs, grid, all_epochs) if size == "large"
                          else {},
                          "per_seed": [{k: r[k] for k in PER_SEED} for r in runs]}
    return {
        "workload": workload.name, "kind": job["source"]["kind"], "unit": workload.unit,
        "tolerance": workload.tolerance, "n_trials": int(len(study_trials(workload, 0))),
        "n_steps": workload.n_steps, "timed": workload.timed,
        "checkpoint": {"save": cost.save, "restore": cost.restore,
                       "source": ("measured" if workload.name in measured else
                                  "tables' ratio to epoch seconds" if measured else "none")
                       + (f", resumes from {job.get('resume', 'checkpoint')}"
                          if measured and "per_epoch" not in measured else "")},
        "grid": [float(g) for g in grid], "modes": modes,
        "seconds": time.perf_counter() - started,
    }


# ---------------------------------------------------------------- the default ASHA check
BUDGET_NAMES = ("ncp:best,rf=3", "ncp_asha:best,rf=3")
"""The budget benchmark's row of today's default (its name now, and before the
registry renamed it)."""


def budget_check(units: Sequence[dict[str, Any]], budget_json: str) -> list[dict[str, Any]]:
    """This replay's default row against the budget benchmark's row of today's default
    (:data:`BUDGET_NAMES`, ``docs/budget/budget.json``): epochs share per workload and
    mode, and how many seeds give exactly the same epochs."""
    import json

    with open(budget_json, encoding="utf-8") as handle:
        budget = json.load(handle)
    out = []
    for unit in units:
        entry = budget["workloads"].get(unit["workload"])
        if not entry:
            continue
        for key, mode in unit["modes"].items():
            if mode["size"] != "large":
                continue
            bmode = "sequential" if mode["concurrency"] == 1 else \
                f"{mode['concurrency']} in flight"
            bench = entry["modes"].get(bmode) or {"summary": {}}
            row = next((n for n in BUDGET_NAMES if n in bench["summary"]), None)
            if row is None:
                continue
            theirs = {r["seed"]: r["epochs"] for r in bench["runs"] if r["rule"] == row}
            mine = {r["seed"]: r["epochs"] for r in mode["per_seed"] if r["rule"] == DEFAULT}
            same = sum(1 for s in mine if theirs.get(s) == mine[s])
            out.append({"workload": unit["workload"], "mode": key,
                        "budget_rule": row,
                        "budget_epochs_share": bench["summary"][row]["epochs_share"],
                        "replay_epochs_share": mode["summary"][DEFAULT]["epochs_share"],
                        "seeds_equal": same, "seeds": len(mine)})
    return out


# ---------------------------------------------------------------- choosing the defaults
def choose_defaults(units: Sequence[dict[str, Any]], candidates: Sequence[str]
                    ) -> dict[str, Any]:
    """Choose on the recorded tables, check on Taskset (held out).

    For each pausing setting, on the recorded tables:

    1. hard failures (fewest first): large-study cells (40-60 trials, each mode) with
       a seed outside the tolerance, and small-study cells (16-24 trials) with more
       epochs than the default (mean epochs share);
    2. then the regret it adds over the default, in tolerances, summed over the
       tables' large and small cells (``max(0, mean regret - default's) /
       tolerance``; lowest first);
    3. then the mean epochs share over the tables' large cells (lowest first).

    The Taskset tasks are not used to choose: the pick's targets are reported there.
    (A first version ranked by the number of cells with a mean regret above the
    default's, then by epochs: it picked rf 3 with 2 kept, which loses 0.29 accuracy
    points on digits_mlp where the default loses 0.045; it was replaced by this
    one after the tables' results and before the Taskset results: docs/budget/pausing.md.)
    """
    tables = [u for u in units if u["kind"] == "table"]
    held = [u for u in units if u["kind"] != "table"]
    scores: dict[str, dict[str, Any]] = {}
    for name in candidates:
        checks = [c for u in tables for key in u["modes"]
                  for c in [cell_checks(u, key, name)] if c is not None]
        large = [c for c in checks if c["size"] == "large"]
        small = [c for c in checks if c["size"] == "small"]
        failed = (sum(not c["worst_ok"] for c in large)
                  + sum(not c["epochs_not_more"] for c in small))
        excess = sum(max(0.0, c["regret_mean"] - c["default_regret"]) / c["tolerance"]
                     for c in checks)
        scores[name] = {
            "failed_checks": failed, "regret_excess": float(excess),
            "large_cells_ok": sum(c["regret_ok"] and c["worst_ok"] for c in large),
            "small_cells_ok": sum(c["epochs_not_more"] for c in small),
            "cells": [len(large), len(small)],
            "mean_epochs_share": float(np.mean([c["epochs_share"] for c in large]))
            if large else math.nan,
            "mean_vs_default": float(np.mean([c["vs_default"] for c in large]))
            if large else math.nan,
        }
    ranked = [n for n in candidates if math.isfinite(scores[n]["mean_epochs_share"])]
    pick = min(ranked, key=lambda n: _rank(scores[n])) if ranked else None
    held_out = [c for u in held for key in u["modes"] if pick
                for c in [cell_checks(u, key, pick)] if c]
    return {"pick": pick, "scores": scores, "held_out": held_out}


def _rank(score: dict[str, Any]) -> tuple[int, float, float]:
    return (score["failed_checks"], round(score["regret_excess"], 9),
            score["mean_epochs_share"])


def cell_checks(unit: dict[str, Any], key: str, name: str) -> dict[str, Any] | None:
    """The issue's targets for rule ``name`` in one workload x mode cell."""
    mode = unit["modes"][key]
    rows = mode["summary"]
    if name not in rows or DEFAULT not in rows:
        return None
    row, default = rows[name], rows[DEFAULT]
    tolerance = unit["tolerance"]
    vs_default = row["epochs_share"] / default["epochs_share"]
    return {"workload": unit["workload"], "mode": key, "size": mode["size"],
            "epochs_share": row["epochs_share"], "vs_default": vs_default,
            "epochs_not_more": bool(row["epochs_share"] <= default["epochs_share"] + 1e-9),
            "target_085": bool(vs_default <= 0.85),
            "regret_ok": bool(row["regret_mean"] <= default["regret_mean"] + 1e-9),
            "worst_ok": bool(row["regret_worst"] <= tolerance + 1e-9),
            "regret_mean": row["regret_mean"], "default_regret": default["regret_mean"],
            "regret_worst": row["regret_worst"],
            "regret_in_tolerances": row["regret_mean"] / tolerance, "tolerance": tolerance,
            "makespan_vs_default": row["makespan_vs_default"]}


# ---------------------------------------------------------------- text and plots
DEFINITIONS = """\
epochs: epochs trained / epochs of no pruning (all trials to the end); vs def: the
  same per seed / the default's, averaged; secs: (training + checkpoint seconds) /
  no pruning's training seconds; ckpt: the checkpoint seconds' share of a rule's
  seconds; wall: makespan / the default's (per seed, averaged; with 4 workers a
  rung's barrier idles workers).
regret: best completed final vs the best final of the study's trials (tables:
  accuracy points; Taskset: loss units); mean, worst seed, seeds within tolerance.
reach: mean epochs until the best completed trial is within the tolerance.
good: trials of the study's top 10% by recorded final that never completed (pooled).
pauses / resumes: per study (checkpoint saves / restores)."""


def format_table(rows: dict[str, Any], digits: int) -> str:
    head = (f"{'rule':<40} {'epochs':>6} {'vs def':>6} {'secs':>5} {'ckpt':>5} {'wall':>5} "
            f"{'regret':>7} {'worst':>7} {'within':>6} {'reach':>6} {'good':>5} "
            f"{'pause':>5} {'resume':>6}")
    lines = [head]
    for row in rows.values():
        lines.append(
            f"{row['label']:<40} {row['epochs_share']:>6.3f} {row['epochs_vs_default']:>6.2f} "
            f"{row['seconds_share']:>5.3f} {row['checkpoint_share']:>5.3f} "
            f"{row['makespan_vs_default']:>5.2f} {row['regret_mean']:>7.{digits}f} "
            f"{row['regret_worst']:>7.{digits}f} {row['within_tolerance']:>3}/{row['seeds']:<2} "
            f"{row['reach_mean']:>6.0f} {row['good_prune_rate']:>5.2f} {row['pauses']:>5.1f} "
            f"{row['resumes']:>6.1f}")
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    parts = [DEFINITIONS]
    for unit in report["units"]:
        digits = 2 if unit["kind"] == "table" else 4
        ck = unit["checkpoint"]
        for key, mode in unit["modes"].items():
            parts.append(
                f"\n== {unit['workload']} [{key}]: {mode['summary']['nop']['n_trials']:.1f} "
                f"trials x {unit['n_steps']} epochs, {len(report['settings']['seeds'])} seeds; "
                f"regret in {unit['unit']}, tolerance {unit['tolerance']:g}; checkpoint save "
                f"{ck['save']:.3f} s + restore {ck['restore']:.3f} s ({ck['source']}) ==")
            parts.append(format_table(mode["summary"], digits))
            parts.extend(format_lost(mode["summary"], len(report["settings"]["seeds"])))
    parts.append("\n== the default replayed vs the budget benchmark's row of it (budget.json) ==")
    for row in report.get("budget_check", []):
        parts.append(f"  {row['workload']:<42} {row['mode']:<20} replay "
                     f"{row['replay_epochs_share']:.4f} budget.json "
                     f"{row['budget_epochs_share']:.4f}; equal epochs in "
                     f"{row['seeds_equal']}/{row['seeds']} seeds")
    choice = report["choice"]
    parts.append("\n== defaults chosen on the recorded tables: fewest hard failures (a seed "
                 "outside the tolerance, large; more epochs than the default, small), then "
                 "the least regret added over the default (in tolerances, summed), then the "
                 "fewest epochs ==")
    parts.append(f"  {'setting':<40} {'hard':>4} {'regret+':>7} {'epochs':>6} {'vs def':>6}"
                 "  large cells ok (regret and worst), small cells ok (epochs)")
    ranked = report.get("choice_any_floor", choice)["scores"]
    for name, score in sorted(ranked.items(), key=lambda kv: _rank(kv[1])):
        parts.append(f"  {label(name):<40} {score['failed_checks']:>4} "
                     f"{score['regret_excess']:>7.2f} {score['mean_epochs_share']:>6.3f} "
                     f"{score['mean_vs_default']:>6.2f}  {score['large_cells_ok']}/"
                     f"{score['cells'][0]}, {score['small_cells_ok']}/{score['cells'][1]}")
    parts.append(f"picked among the floors that scale with the bracket (auto, sF): "
                 f"{label(choice['pick']) if choice['pick'] else 'none'}")
    other = report.get("choice_any_floor", {}).get("pick")
    if other and other != choice["pick"]:
        parts.append(f"first by the same rule if fixed floors were allowed: {label(other)}")
    parts.append("\n== targets, the pick (tables: chosen on; Taskset: held out) ==")
    parts.extend(format_targets(report["units"], choice["pick"]))
    if other and other != choice["pick"]:
        parts.append(f"\n== targets, {label(other)} (fixed floor, for reference) ==")
        parts.extend(format_targets(report["units"], other))
    return "\n".join(parts)


def format_lost(summary: dict[str, Any], seeds: int) -> list[str]:
    """Per pausing rule that lost the study's best trial: at which rungs, ranked where."""
    lines = []
    for name, row in summary.items():
        lost = row.get("best_lost") or []
        if not lost:
            continue
        rungs = []
        for rung in sorted({x["rung"] for x in lost}):
            at = [x for x in lost if x["rung"] == rung]
            ranks = sorted(f"{x['rank']}/{x['n']}" for x in at)
            rungs.append(f"after {rung} epoch{'s' if rung > 1 else ''} in {len(at)} "
                         f"(ranked {', '.join(ranks)})")
        lines.append(f"  best trial dropped, {label(name)}: {len(lost)} of {seeds} seeds; "
                     + "; ".join(rungs))
    return lines


def format_targets(units: Sequence[dict[str, Any]], pick: str | None) -> list[str]:
    lines = []
    if not pick:
        return ["  no pick"]
    for unit in units:
        for key in unit["modes"]:
            c = cell_checks(unit, key, pick)
            if not c:
                continue
            if c["size"] == "large":
                ok = c["target_085"] and c["regret_ok"] and c["worst_ok"]
                what = (f"{c['vs_default']:.2f}x default epochs (<= 0.85), regret "
                        f"{c['regret_mean']:.4f} vs {c['default_regret']:.4f}, worst "
                        f"{c['regret_worst']:.4f} (tol {unit['tolerance']:g}), wall "
                        f"{c['makespan_vs_default']:.2f}x")
            else:
                ok = c["epochs_not_more"]
                what = f"{c['vs_default']:.2f}x default epochs (<= 1)"
            lines.append(f"  {'PASS' if ok else 'FAIL'} {unit['workload']:<40} {key:<20} "
                         f"{what}")
    return lines


PLOTTED = (DEFAULT, "tune_hyperband,rf=3", "tune_bohb,rf=3")


def plot_anytime(unit: dict[str, Any], path: str, rules: Sequence[str]) -> None:
    """Median regret over seeds against the epochs share spent, one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [(k, m) for k, m in unit["modes"].items() if m["size"] == "large"]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.4 * len(modes), 4.6), squeeze=False)
    grid = np.array(unit["grid"])
    colors = plt.get_cmap("tab10")
    for ax, (key, mode) in zip(axes[0], modes):
        for k, name in enumerate(r for r in rules if r in mode["anytime"]):
            y = np.array([math.nan if v is None else v for v in mode["anytime"][name]],
                         dtype=float)
            y[~np.isfinite(y)] = np.nan
            ax.plot(grid, y, color=colors(k % 10), lw=1.3, label=label(name),
                    drawstyle="steps-post")
            last = np.flatnonzero(np.isfinite(y))
            if last.size:
                ax.plot(grid[last[-1]], y[last[-1]], "o", color=colors(k % 10), ms=4)
        ax.axhline(unit["tolerance"], color="grey", lw=0.7, ls=":", label="tolerance")
        ax.set_xscale("log")
        ax.set_xlim(0.01, 1.0)
        ax.set_yscale("symlog", linthresh=unit["tolerance"])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("epochs spent, share of no pruning (log)")
        ax.set_ylabel(f"median regret over seeds ({unit['unit']})")
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{unit['workload']}: best completed final vs epochs spent (a line starts "
                 "once half the seeds have a completed trial, ends at the rule's median "
                 "epochs: a dot)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def slim(report: dict[str, Any]) -> dict[str, Any]:
    """The report as saved: per-seed rows only of no pruning, the default, Tune's and
    the picks (the summaries keep every rule), anytime curves at 4 significant digits."""
    keep = {"nop", DEFAULT, *TUNE, report["choice"]["pick"],
            report.get("choice_any_floor", {}).get("pick")}
    for unit in report["units"]:
        for mode in unit["modes"].values():
            mode["per_seed"] = [r for r in mode["per_seed"] if r["rule"] in keep]
            mode["anytime"] = {k: [float(f"{v:.4g}") if v is not None and math.isfinite(v)
                                   else v for v in values]
                               for k, values in mode["anytime"].items()}
    return report


# ---------------------------------------------------------------- the command
def command(args: Any) -> int:
    """``python -m research bench pausing`` (see :func:`research.cli.build_parser`)."""
    import json
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    from ncp_search.app.jsonio import write_json
    from research.taskset import task_files, taskset_folder

    started = time.perf_counter()

    def say(line: str) -> None:
        print(f"{line} [{time.perf_counter() - started:.0f} s]", flush=True)

    rules = list(args.rules or DEFAULT_RULES)
    for name in rules:
        make_host(name, 20, 20, 1.0) if not name.startswith("tune_") else None
    measured: dict[str, Any] = {}
    notes = []
    if args.checkpoints_from:
        with open(args.checkpoints_from, encoding="utf-8") as handle:
            measured = json.load(handle).get("checkpoints", {})
        notes.append("checkpoint seconds taken from an earlier report (--checkpoints-from)")
    elif args.checkpoint_epochs:
        save, restore = args.checkpoint_epochs
        measured = {"per_epoch": {"save": save, "restore": restore}}
        notes.append(f"checkpoint save {save:g} and restore {restore:g} of each workload's "
                     "median epoch (--checkpoint-epochs)")
    elif args.measure_checkpoints:
        say("measuring checkpoint save + restore of the recorded tables' models")
        measured = measure_checkpoints(args.table, per_table=args.measure_checkpoints)
        for name, m in measured.items():
            say(f"  {name}: of an epoch measured beside them ({m['epoch_measured']:.3f} s): "
                f"save {m['save_epochs']:.2f}, resume from a checkpoint "
                f"{m['restore_epochs']:.2f}, from memory {m['restore_memory_epochs']:.2f} "
                f"(median of {m['models']}); recorded median epoch "
                f"{m['epoch_seconds_median']:.2f} s")
    else:
        notes.append("checkpoint seconds not measured (0)")
    sources: list[dict[str, Any]] = [{"kind": "table", "path": p, "tolerance": args.tolerance}
                                     for p in args.table]
    folder = None if args.taskset == "none" else (
        Path(args.taskset) if args.taskset else taskset_folder())
    if args.taskset != "none":
        if folder is None or not task_files(folder):
            notes.append("Taskset left out: no *.json.gz under --taskset or "
                         "$NCP_SEARCH_TASKSET")
        else:
            files = task_files(folder)[: args.tasks] if args.tasks else task_files(folder)
            sources += [{"kind": "taskset", "path": str(f), "tolerance": args.loss_tolerance,
                         "draw": args.draw} for f in files]
    jobs = [{"source": s, "rules": rules, "seeds": list(range(args.seeds)),
             "concurrency": list(args.concurrency), "small": not args.no_small,
             "checkpoints": measured, "resume": args.resumes} for s in sources]
    say(f"pausing benchmark: {len(jobs)} workloads x {len(rules)} rules x {args.seeds} seeds "
        f"x modes {list(args.concurrency)}{' (+ small studies)' if not args.no_small else ''}"
        f", {args.processes} processes")
    units = []
    if args.processes <= 1:
        for job in jobs:
            units.append(bench_unit(job))
            say(f"done: {units[-1]['workload']} in {units[-1]['seconds']:.0f} s")
    else:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.processes, mp_context=context) as pool:
            for unit in pool.map(bench_unit, jobs):
                units.append(unit)
                say(f"done: {unit['workload']} in {unit['seconds']:.0f} s")
    # The default's floor must scale with the bracket (the issue): the candidates are
    # the scaling floors; fixed floors are ranked too, for reference.
    settings = [r for r in rules if r.startswith("pause")]
    candidates = [r for r in settings if not _raw_options(r).get("keep", "auto").isdigit()]
    report: dict[str, Any] = {
        "settings": {"rules": rules, "seeds": list(range(args.seeds)),
                     "concurrency": list(args.concurrency), "small_sizes": list(SMALL_SIZES),
                     "draw": args.draw, "tolerance": args.tolerance,
                     "loss_tolerance": args.loss_tolerance, "resumes": args.resumes,
                     "notes": notes},
        "checkpoints": measured, "units": units,
        "choice": choose_defaults(units, candidates),
        "choice_any_floor": choose_defaults(units, settings),
    }
    if Path(args.budget_json).exists():
        report["budget_check"] = budget_check(units, args.budget_json)
    report["wall_seconds"] = time.perf_counter() - started
    text = format_report(report)
    print(text, flush=True)
    if args.text:
        Path(args.text).parent.mkdir(parents=True, exist_ok=True)
        Path(args.text).write_text(text + "\n", encoding="utf-8")
        say(f"wrote {args.text}")
    if args.plot:
        Path(args.plot).mkdir(parents=True, exist_ok=True)
        pick = report["choice"]["pick"]
        plotted = [*PLOTTED[:1], *([pick] if pick else []),
                   "pause,rf=2,keep=auto,bracket=all",
                   *PLOTTED[1:]]
        for unit in units:
            path = Path(args.plot) / f"anytime_{unit['workload']}.png"
            plot_anytime(unit, str(path), list(dict.fromkeys(plotted)))
            say(f"wrote {path}")
    if args.json:
        write_json(slim(report), args.json)
        say(f"wrote {args.json}")
    print(f"\nwall time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0
