"""Pausing on Optuna: an ask-and-tell driver for :class:`~ncp_search.core.pausing.PausingPolicy`.

An Optuna trial cannot be resumed once it has ended, and a pruner can only say
"prune": pausing needs a driver that owns the loop. :func:`optimize_pausing` is that
loop, with Optuna's own ask-and-tell interface:

- a new trial is asked (the sampler proposes its parameters) and trained to the first
  rung; when it pauses there it is told PRUNED, with the user attributes
  ``ncp_paused`` (its checkpoint path), ``ncp_predicted_final`` and ``ncp_epochs``;
- a trial that its rung promotes as it arrives (its arrival closes the rung, or no
  arrival still to come can push it out of the kept ones) trains on in the same trial
  (:meth:`PausingDriver.carry_on`);
- when the policy promotes a paused trial, its parameters are enqueued
  (``study.enqueue_trial``) and asked as a new trial with ``ncp_resumes`` = the
  number of the configuration's first trial: the training resumes from the checkpoint and the
  steps continue where they stopped (reports at the same steps as if it had run on);
- a trial never promoted stays PRUNED; one that runs all its epochs is told COMPLETE
  with its last value.

So the study holds, for one configuration, a chain of trials linked by
``ncp_resumes``; :func:`chains` joins them. Samplers see pauses as pruned trials and
completed chains as completed trials. :func:`optimize_pausing` runs one trial at a
time. :class:`PausingDriver` is the loop's shared piece: on a study that holds an
interrupted run's trials it replays them into the fresh policy, so the run goes on
where it stopped. ``ncp-search sweep`` drives ``pruner: {name: ncp_pause}`` with it on
``--workers N``: each worker, holding a lock, builds a driver from the study (its
finished and RUNNING trials) and asks its next trial from it, so all workers follow
one policy. :func:`configurations` groups trials for records.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ncp_search.core.history import TrialHistory
from ncp_search.core.pausing import CONTINUE, PAUSE, STOP, Order, PausingPolicy

PAUSED_ATTR = "ncp_paused"  # the checkpoint path of a paused trial
RESUMES_ATTR = "ncp_resumes"  # the number of the configuration's first trial
EPOCHS_ATTR = "ncp_epochs"  # epochs trained so far by the chain
PREDICTED_ATTR = "ncp_predicted_final"
STOPPED_ATTR = "ncp_stopped"  # why the host stopped a trial itself (e.g. diverged)

logger = logging.getLogger(__name__)
_WARNED: set[tuple[str, int]] = set()

Train = Callable[[optuna.Trial, int, int, Path], Sequence[float]]
"""``train(trial, start_epoch, stop_epoch, checkpoint) -> values``: train the trial's
configuration from ``start_epoch`` (0: from scratch; else restore ``checkpoint``) to
``stop_epoch`` epochs, save a checkpoint to ``checkpoint`` (model and optimizer state),
and return the metric after each epoch trained (``stop_epoch - start_epoch`` values).
A trial promoted as it reaches its rung is trained on in the same trial: ``train`` is
called again for it, from the checkpoint it just saved."""


class DrivenPruner(optuna.pruners.NopPruner):
    """The pruner of a study that a :class:`PausingDriver` drives: it never prunes (the
    policy pauses and stops the trials itself) and names that policy where a pruner is
    described: the study's log line and its ``ncp_pruner`` attribute.

    Args:
        decides: what decides, in words (e.g. the sweep's ``ncp_pause (...)``).
        uses_beta_eff: whether the policy's predictor reads ``beta_eff`` (what
            ``NCPCallback(measure="auto")`` follows).
    """

    def __init__(self, decides: str, uses_beta_eff: bool = False) -> None:
        super().__init__()
        self.decides = decides
        self.uses_beta_eff = bool(uses_beta_eff)

    def settings(self) -> dict[str, Any]:
        """As :func:`~ncp_search.integrations.optuna.reporting.pruner_settings` stores
        them."""
        return {"class": "PausingPolicy", "uses_beta_eff": self.uses_beta_eff}


@dataclass
class Job:
    """One trial the driver asked: train configuration ``name`` from ``start`` to
    ``stop`` epochs (restoring ``restore``, the checkpoint its last pause recorded,
    when ``start > 0``); ``checkpoint`` is the configuration's checkpoint folder."""

    trial: optuna.Trial
    name: str
    start: int
    stop: int
    checkpoint: Path
    restore: str | None


class PausingDriver:
    """The shared piece of :func:`optimize_pausing` and the ``ncp-search sweep``
    Optuna backend: asks one trial at a time as the policy says (:meth:`next`), feeds
    its reports to the policy (:meth:`report`) and tells it (:meth:`finish`).

    Built on a study that already holds trials (a resumed sweep), it replays them into
    the policy first, in trial order (the policy's state is a function of its events):
    COMPLETE and PRUNED trials count; FAIL trials (interrupted) do not, so an
    interrupted configuration runs again (a new one from the start, a resumed one
    from its checkpoint). A WAITING trial (a retry queued for a trial whose worker
    died, or a resume queued before an interrupt) is asked before anything else when
    the policy can run it, and told FAIL otherwise.

    Args:
        study: the study.
        policy: a fresh pausing policy (``first_step=0``).
        checkpoint_dir: checkpoints go to ``<checkpoint_dir>/<first trial number>``.
        carry: user attributes copied from a configuration's trial to the trial that
            resumes it (e.g. its seed).
        running: count the study's RUNNING trials as running now (other workers'
            trials: a new configuration holds its place in its bracket, a resume holds
            its promotion, and a rung waits for them) instead of leaving them out.
            Several workers each build a driver from the study before they ask
            (holding a lock), so they all follow one policy.
    """

    def __init__(self, study: optuna.Study, policy: PausingPolicy,
                 checkpoint_dir: str | os.PathLike[str], carry: Sequence[str] = (),
                 *, running: bool = False) -> None:
        self.study = study
        self.running = running
        self.folder = Path(checkpoint_dir)
        self.carry = tuple(carry)
        self.sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        self._rebuild(policy)

    # ---------------------------------------------------------------- asking
    def next(self, prefer: Collection[str] = (), defer: Collection[str] = ()) -> Job | None:
        """Ask the next trial, or None when the policy has nothing left to run.

        Args:
            prefer, defer: configurations (first trial numbers, as :attr:`Job.name`)
                to resume first when promoted / only when nothing else is to run (see
                :meth:`~ncp_search.core.pausing.PausingPolicy.next_job`)."""
        while True:
            waiting = self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            if waiting:
                job = self._ask_waiting(min(waiting, key=lambda t: t.number))
                if job is not None:
                    return job
                continue
            planned = self.policy.next_job(prefer, defer)
            if planned is None:
                return None
            kind, name, target = planned
            if kind == "new":
                return self._start(self.study.ask(), None, target)
            assert name is not None
            self.study.enqueue_trial(self.params[name], user_attrs={
                **self.carried.get(name, {}), RESUMES_ATTR: int(name)})
            return self._start(self.study.ask(), name, target)

    def _ask_waiting(self, first: optuna.trial.FrozenTrial) -> Job | None:
        resumes = first.user_attrs.get(RESUMES_ATTR)
        name = None if resumes is None else str(resumes)
        if name is None and self.policy.can_start():
            return self._start(self.study.ask(), None, self.policy.milestones[0])
        if name is not None and self.policy.knows(name) \
                and self.policy.status(name) == "promoted":
            return self._start(self.study.ask(), name, self.policy.resume(name))
        trial = self.study.ask()  # pops ``first``: nothing may run it now
        self.study.tell(trial, state=TrialState.FAIL)
        logger.warning("trial %d was queued (%s) but the pausing policy has nothing for it "
                       "to run: marked FAIL", trial.number,
                       "a new configuration" if name is None else f"resumes {name}")
        return None

    def _start(self, trial: optuna.Trial, name: str | None, target: float) -> Job:
        if name is None:
            name = str(trial.number)
            self.policy.add(name)
            self.values[name], self.series[name], self.chains[name] = {}, {}, []
        self.chains[name].append(trial.number)
        start = len(self.values[name])
        stop = int(min(target, self.policy.max_resource))
        return Job(trial, name, start, stop, self.folder / name,
                   self.saved.get(name) if start else None)

    # ---------------------------------------------------------------- reporting
    def report(self, job: Job, value: float, series: Mapping[str, Any] | None = None,
               *, report: bool = True) -> Order:
        """Epoch ``len(chain) + 1`` of ``job`` gave ``value`` (and the side measurements
        ``series``, e.g. ``beta_eff``); reported to the trial (unless ``report`` is False:
        the caller did) and to the policy. Returns the policy's order."""
        step = len(self.values[job.name])
        if report:
            job.trial.report(float(value), step)
        return self._feed(job.name, step, float(value), series)

    def _feed(self, name: str, step: int, value: float,
              series: Mapping[str, Any] | None) -> Order:
        self.values[name][step] = value
        for key, number in (series or {}).items():
            self.series[name].setdefault(key, {})[step] = number
        history = TrialHistory.from_reports(self.values[name], sign=self.sign,
                                            series=self.series[name])
        return self.policy.report(name, history, reported=value)

    def carry_on(self, job: Job, order: Order | None,
                 refresh: Callable[[], Any] | None = None) -> bool:
        """Whether ``job``'s trial, given ``order`` at its latest epoch, trains on in
        the same trial: it paused at a rung that promoted it at once (its arrival closed
        the rung, or no arrival still to come can push it out of the kept ones). Then
        ``job.stop`` moves to its next rung; no checkpoint and no new trial are needed.

        Args:
            refresh: with other workers, this driver's view is as old as the job; when
                it does not promote the trial, ``refresh()`` is called (it should call
                :meth:`refresh` under the workers' lock) and the fresh view decides.
        """
        if order is None or order.action != PAUSE:
            return False
        if self.policy.status(job.name) != "promoted" and refresh is not None:
            refresh()
        if self.policy.status(job.name) != "promoted":
            return False
        job.stop = int(min(self.policy.resume(job.name), self.policy.max_resource))
        return True

    def refresh(self, policy: PausingPolicy, job: Job) -> None:
        """Rebuild from the study on the fresh ``policy`` (the reports other workers
        made since this driver was built), ``job``'s own trial (RUNNING, its epochs
        reported) left for its worker to carry on or pause."""
        self._rebuild(policy, own=job.trial.number)

    def finish(self, job: Job, order: Order | None, *, stopped: str | None = None,
               checkpoint: str | os.PathLike[str] | None = None) -> optuna.trial.FrozenTrial:
        """Tell ``job``'s trial: PRUNED where ``order`` paused or stopped it (the pause
        records ``checkpoint``, default ``job.checkpoint``, and the prediction) or where
        the host stopped it (``stopped``: why, e.g. diverged; the policy drops the
        configuration), COMPLETE when its configuration has run all its epochs."""
        trial, name = job.trial, job.name
        self.params[name] = dict(trial.params)
        for key in self.carry:
            if key in trial.user_attrs:
                self.carried.setdefault(name, {})[key] = trial.user_attrs[key]
        state = TrialState.COMPLETE
        epochs = len(self.values[name])
        if stopped is not None:
            state = TrialState.PRUNED
            trial.set_user_attr(STOPPED_ATTR, stopped)
            self.policy.fail(name)
        elif order is not None and order.action in (PAUSE, STOP):
            state = TrialState.PRUNED
            if order.action == PAUSE:
                path = str(job.checkpoint if checkpoint is None else checkpoint)
                trial.set_user_attr(PAUSED_ATTR, path)
                trial.set_user_attr(PREDICTED_ATTR, self.sign * order.prediction
                                    if math.isfinite(order.prediction) else None)
                self.saved[name] = path
        elif epochs >= self.policy.max_resource:
            self.policy.complete(name)
        else:
            raise ValueError(f"trial {trial.number} ran {epochs} of its configuration's "
                             f"epochs, short of its target {job.stop}, with no pause or stop.")
        if state == TrialState.PRUNED:
            trial.set_user_attr(EPOCHS_ATTR, epochs)
        value = self.values[name][epochs - 1] if state == TrialState.COMPLETE else None
        return self.study.tell(trial, value, state=state)

    # ---------------------------------------------------------------- resuming
    def _rebuild(self, policy: PausingPolicy, own: int | None = None) -> None:
        """Start from ``policy`` (fresh) and what the study holds (:meth:`_replay`)."""
        self.policy = policy
        self.values: dict[str, dict[int, float]] = {}
        self.series: dict[str, dict[str, dict[int, Any]]] = {}
        self.chains: dict[str, list[int]] = {}
        self.params: dict[str, dict[str, Any]] = {}
        self.saved: dict[str, str | None] = {}
        self.carried: dict[str, dict[str, Any]] = {}
        # each configuration's latest trial the replay read (e.g. who paused it)
        self.latest: dict[str, optuna.trial.FrozenTrial] = {}
        self._replay(own)

    def _replay(self, own: int | None = None) -> None:
        states = (TrialState.COMPLETE, TrialState.PRUNED,
                  *((TrialState.RUNNING,) if self.running else ()))
        done = self.study.get_trials(deepcopy=False, states=states)
        # a trial that trained on past a rung, waiting for the replay to promote it there
        self._pending: dict[str, tuple[optuna.trial.FrozenTrial, int, bool]] = {}
        self._held: set[str] = set()  # configurations other workers' RUNNING trials train
        for trial in sorted(done, key=lambda t: t.number):  # the order they were asked
            resumes = trial.user_attrs.get(RESUMES_ATTR)
            if resumes is None:
                if not self.policy.can_start():
                    self._warn_once(trial.number, "trial %d is past the pausing policy's "
                                    "n_trials=%d: left out", self.policy.n_trials)
                    continue
                name = str(trial.number)
                self.policy.add(name)
                self.values[name], self.series[name], self.chains[name] = {}, {}, []
            else:
                name = str(resumes)
                if not (self.policy.knows(name) and self.policy.status(name) == "promoted"):
                    self._warn_once(trial.number, "trial %d resumes %s, which the pausing "
                                    "policy did not promote: left out", name)
                    continue
                self.policy.resume(name)
            self.chains[name].append(trial.number)
            self.latest[name] = trial
            self._replay_trial(trial, name, own=trial.number == own)
            self._carry_pending()
        for name, (trial, _, _) in self._pending.items():
            self._warn_once(trial.number, "trial %d trained on past a rung at which the "
                            "replay did not promote configuration %s: its later epochs "
                            "are left out", name)
        for name in self._held:  # promoted at the rung it reported last: its worker
            if self.policy.status(name) == "promoted":  # decides, no other may resume it
                self.policy.resume(name)

    def _warn_once(self, number: int, message: str, *args: Any) -> None:
        """Warn of a trial left out once per study and process (workers rebuild their
        driver before every trial)."""
        key = (self.study.study_name, number)
        if key not in _WARNED:
            _WARNED.add(key)
            logger.warning(message, number, *args)

    def _replay_trial(self, trial: optuna.trial.FrozenTrial, name: str,
                      position: int = 0, own: bool = False) -> None:
        """Feed a trial's reports from ``position`` on to the policy as they came live
        (a RUNNING trial's too: another worker trains it). Where it trained on past a
        rung (promoted as it arrived), the rest waits in ``_pending`` until the replay
        promotes it there: arrivals are replayed in trial order, not in the order they
        came, and the policy's promotions depend only on which arrivals are in."""
        from ncp_search.core.policy import PREDICTION_SERIES
        from ncp_search.integrations.optuna.index import trial_history

        self.params[name] = dict(trial.params)
        for key in self.carry:
            if key in trial.user_attrs:
                self.carried.setdefault(name, {})[key] = trial.user_attrs[key]
        if PAUSED_ATTR in trial.user_attrs:
            self.saved[name] = str(trial.user_attrs[PAUSED_ATTR])
        history = trial_history(trial, self.sign)
        index = {int(step): i for i, step in enumerate(history.steps)}
        steps = sorted(int(step) for step in trial.intermediate_values)
        stopped = trial.user_attrs.get(STOPPED_ATTR) is not None
        for at in range(position, len(steps)):
            step = steps[at]
            value = float(trial.intermediate_values[step])
            if stopped and at == len(steps) - 1:
                self.values[name][step] = value  # the host stopped it there, unfed
                break
            extra = {key: series[index[step]] for key, series in history.series.items()
                     if key != PREDICTION_SERIES} if step in index else {}
            order = self._feed(name, step, value, extra)
            if order.action == CONTINUE:
                continue
            if order.action == PAUSE and at + 1 < len(steps):  # it trained on
                if self.policy.status(name) == "promoted":
                    self.policy.resume(name)
                    continue
                self._pending[name] = (trial, at + 1, own)
                return
            break
        if stopped:
            self.policy.fail(name)
        elif trial.state == TrialState.COMPLETE:
            self.policy.complete(name)
        elif trial.state == TrialState.RUNNING and not own:
            self._held.add(name)  # another worker trains it on, or pauses it there

    def _carry_pending(self) -> None:
        """Go on with the pending trials the replay has promoted since."""
        progress = True
        while progress:
            progress = False
            for name in [k for k in self._pending if self.policy.status(k) == "promoted"]:
                trial, position, own = self._pending.pop(name)
                self.policy.resume(name)
                self._replay_trial(trial, name, position, own)
                progress = True


def optimize_pausing(
    study: optuna.Study,
    train: Train,
    *,
    policy: PausingPolicy,
    checkpoint_dir: str | os.PathLike[str],
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> dict[int, list[int]]:
    """Run ``policy.n_trials`` configurations under the pausing policy.

    Args:
        study: the study (its direction says which way the metric goes). A study
            that holds trials of an earlier, interrupted run is continued (see
            :class:`PausingDriver`); give it a fresh ``policy`` with the same settings.
        train: see :data:`Train`.
        policy: the pausing policy (``first_step=0``: step ``k`` is epoch ``k + 1``).
        checkpoint_dir: where each configuration's checkpoint lives
            (``<checkpoint_dir>/<first trial number>``).
        callbacks: called with each trial told (as ``study.optimize``'s).

    Returns:
        The chains: for each configuration, keyed by its first trial's number (an
        ``int``, as :func:`chains` keys them), the numbers of its trials in order.

    Raises:
        ValueError: if ``train`` returns a number of values other than the epochs asked;
            before any trial, if the policy's predictor reads a series besides the
            metric (``beta_eff``, ...), which ``train`` does not return.
    """
    reads = list(policy.predictor.requires)
    if reads:
        raise ValueError(
            f"optimize_pausing feeds the policy the metric values train returns, but its "
            f"predictor {policy.predictor.name!r} also reads {reads}; use a predictor of "
            f"the curve alone (e.g. 'best' or 'pow3'), or ncp-search sweep, which measures "
            f"them.")
    driver = PausingDriver(study, policy, checkpoint_dir)
    driver.folder.mkdir(parents=True, exist_ok=True)
    while not policy.finished():
        job = driver.next()
        if job is None:
            break
        order = _train(study, driver, train, job, job.start)
        while driver.carry_on(job, order):  # promoted at its rung: on in the same trial
            order = _train(study, driver, train, job, len(driver.values[job.name]))
        frozen = driver.finish(job, order)
        for callback in callbacks:
            callback(study, frozen)
    return {int(name): list(numbers) for name, numbers in driver.chains.items()}


def _train(study: optuna.Study, driver: PausingDriver, train: Train, job: Job,
           start: int) -> Order | None:
    """Train ``job`` from ``start`` to ``job.stop`` epochs and report each value; the
    policy's last order."""
    try:
        got = list(train(job.trial, start, job.stop, job.checkpoint))
    except BaseException:  # as study.optimize does: the trial fails, the error goes on
        study.tell(job.trial, state=TrialState.FAIL)
        raise
    if len(got) != job.stop - start:  # the trial fails (not left RUNNING), then the error
        study.tell(job.trial, state=TrialState.FAIL)
        raise ValueError(f"train must return one value per epoch trained "
                         f"({job.stop - start}), but got {len(got)} for trial "
                         f"{job.trial.number}.")
    order = None
    for value in got:
        order = driver.report(job, value)
        if order.action != CONTINUE:
            break
    return order


def chains(study: optuna.Study) -> dict[int, list[optuna.trial.FrozenTrial]]:
    """The study's trials joined into chains by ``ncp_resumes`` (keyed by the first
    trial's number), each in order."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    out: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in by_number.values():
        first = trial
        while RESUMES_ATTR in first.user_attrs and first.user_attrs[RESUMES_ATTR] in by_number:
            previous = by_number[first.user_attrs[RESUMES_ATTR]]
            if previous.number >= first.number:
                break  # a malformed link: never loop
            first = previous
        out.setdefault(first.number, []).append(trial)
    return {k: sorted(v, key=lambda t: t.number) for k, v in sorted(out.items())}


def configurations(
        trials: Sequence[optuna.trial.FrozenTrial]) -> list[list[optuna.trial.FrozenTrial]]:
    """``trials`` grouped by configuration, in order of their first trial: a chain's
    trials that did not fail joined by ``ncp_resumes`` (its epochs once, in order),
    each FAIL trial on its own (an interrupted piece, run again by a later trial)."""
    by_number = {t.number: t for t in trials}
    groups: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        first = trial.user_attrs.get(RESUMES_ATTR)
        key = trial.number
        if (trial.state != TrialState.FAIL and isinstance(first, int) and first < trial.number
                and first in by_number and by_number[first].state != TrialState.FAIL):
            key = first
        groups.setdefault(key, []).append(trial)
    return [groups[key] for key in sorted(groups)]
