"""The ask-and-tell pausing driver on a real Optuna study."""

from __future__ import annotations

import json

import pytest

optuna = pytest.importorskip("optuna")

from ncp_search.core.pausing import PausingPolicy  # noqa: E402
from ncp_search.integrations.optuna.pausing import (  # noqa: E402
    PAUSED_ATTR,
    RESUMES_ATTR,
    chains,
    optimize_pausing,
)


def make_train(calls):
    def train(trial, start, stop, checkpoint):
        quality = trial.suggest_float("quality", 0.0, 1.0)
        if start:
            saved = json.loads(checkpoint.read_text())
            assert saved["epoch"] == start  # resumed where it paused
        calls.append((trial.number, start, stop))
        values = [quality * (1 - 0.5 ** (epoch + 1)) for epoch in range(start, stop)]
        checkpoint.write_text(json.dumps({"epoch": stop}))
        return values
    return train


def test_paused_trials_end_pruned_and_promoted_ones_continue_from_their_checkpoint(tmp_path):
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    policy = PausingPolicy(n_trials=8, max_resource=8, reduction_factor=2, keep_min=1)
    calls = []
    found = optimize_pausing(study, make_train(calls), policy=policy,
                             checkpoint_dir=tmp_path)
    trials = study.get_trials()
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(found) == 8 and len(complete) == 1
    # 8 trials to epoch 1, 4 on to 2, 2 to 4, 1 to 8: 8 + 4 + 4 + 4 epochs
    assert sum(stop - start for _, start, stop in calls) == 8 + 4 + 4 + 4
    # the configurations' first trials (a promoted one may resume before the last new
    # trial is asked: its rung promotes early what no later arrival can change)
    best = max((trials[n] for n in found),
               key=lambda t: t.params["quality"])
    chain = chains(study)[best.number]
    # keyed as chains() keys them: by the first trial's number, an int
    assert found.keys() == chains(study).keys()
    assert [t.number for t in chain] == found[best.number]
    assert all(t.user_attrs[RESUMES_ATTR] == best.number for t in chain[1:])
    assert chain[-1].state == optuna.trial.TrialState.COMPLETE
    # steps continue along the chain: it was the last to reach epochs 1 and 2, where its
    # arrival closed the rung and promoted it, so it trained on in its first trial; at
    # epoch 4 it paused for the other one, and its second trial resumed it there
    assert [sorted(t.intermediate_values) for t in chain] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sorted(chain[0].user_attrs) == sorted([PAUSED_ATTR, "ncp_epochs", "ncp_predicted_final"])
    assert all(PAUSED_ATTR in t.user_attrs for t in chain[:-1])


def test_train_returning_the_wrong_number_of_values_is_refused(tmp_path):
    study = optuna.create_study(direction="maximize")
    policy = PausingPolicy(n_trials=2, max_resource=4)
    with pytest.raises(ValueError, match="one value per epoch"):
        optimize_pausing(study, lambda trial, start, stop, ckpt: [0.5] * 7, policy=policy,
                         checkpoint_dir=tmp_path)
    # the trial it was training fails, as when train raises: none is left RUNNING
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL]


@pytest.mark.parametrize("predictor, reads", [("ncp_raw", "beta_eff"),
                                              ("ncp_hybrid", "beta_eff")])
def test_a_policy_whose_predictor_reads_more_than_the_metric_is_refused(tmp_path, predictor,
                                                                        reads):
    """optimize_pausing feeds the policy the values train returns, nothing else: a
    predictor that reads beta_eff would have predicted NaN at every rung and let the
    bracket order choose. Refused before any trial starts."""
    study = optuna.create_study(direction="maximize")
    policy = PausingPolicy(n_trials=2, max_resource=4, predictor=predictor)
    with pytest.raises(ValueError, match=f"predictor {predictor!r} also reads \\['{reads}'\\]"):
        optimize_pausing(study, make_train([]), policy=policy, checkpoint_dir=tmp_path)
    assert study.trials == []


def test_an_interrupted_run_continues_where_it_stopped_and_counts_each_epoch_once(tmp_path):
    """A run stopped after some trials (an interrupt; the running trial marked FAIL)
    continues on the same study with a fresh policy: the finished trials are replayed,
    the failed one runs again, and the epochs add up to those of one uninterrupted run."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"

    def policy():
        return PausingPolicy(n_trials=8, max_resource=8, reduction_factor=2, keep_min=1)

    study = optuna.create_study(direction="maximize", storage=storage, study_name="s",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    calls = []
    train = make_train(calls)

    def interrupted(trial, start, stop, checkpoint):
        if start and len(calls) >= 9:  # a resumed trial: its policy had promoted it
            raise KeyboardInterrupt
        return train(trial, start, stop, checkpoint)

    with pytest.raises(KeyboardInterrupt):
        optimize_pausing(study, interrupted, policy=policy(), checkpoint_dir=tmp_path)
    failed = study.get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert len(failed) == 1 and RESUMES_ATTR in failed[0].user_attrs  # stopped in a resume
    again = optuna.load_study(study_name="s", storage=storage,
                              sampler=optuna.samplers.RandomSampler(seed=1))
    optimize_pausing(again, train, policy=policy(), checkpoint_dir=tmp_path)
    done = [t for t in again.get_trials() if t.state != optuna.trial.TrialState.FAIL]
    assert sum(stop - start for _, start, stop in calls) == 8 + 4 + 4 + 4
    assert len(chains(again)) == 8  # 8 configurations, one more trial (the FAIL) joined in
    assert sum(len(t.intermediate_values) for t in done) == 8 + 4 + 4 + 4
    assert [t.state for t in done].count(optuna.trial.TrialState.COMPLETE) == 1


def run_workers(study, tmp_path, workers, *, running=True, n_trials=8):
    """``workers`` workers on one study, each building its driver from the study before
    it asks (as the sweep's workers do under their lock); a job of ``e`` epochs takes
    ``e`` time units, and the worker whose job ends first asks next."""
    import heapq

    from ncp_search.core.pausing import CONTINUE
    from ncp_search.integrations.optuna.pausing import PausingDriver

    def driver():
        policy = PausingPolicy(n_trials=n_trials, max_resource=8, reduction_factor=2,
                               keep_min=1)
        return PausingDriver(study, policy, tmp_path, running=running)

    asked, clock, busy = [], 0.0, []  # busy: (ends, worker, driver, job)
    free = list(range(workers))
    while True:
        while free:
            d = driver()
            if d.policy.finished():
                return asked
            job = d.next()
            if job is None:
                break
            quality = job.trial.suggest_float("quality", 0.0, 1.0)
            asked.append((clock, job.name, job.start, job.stop, job.trial.number))
            heapq.heappush(busy, (clock + job.stop - job.start, free.pop(), d, job, quality))
        if not busy:
            return asked
        clock, worker, d, job, quality = heapq.heappop(busy)
        order = None
        for epoch in range(job.start, job.stop):
            order = d.report(job, quality * (1 - 0.5 ** (epoch + 1)))
            if order.action != CONTINUE:
                break
        d.finish(job, order)
        free.append(worker)


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_workers_that_each_rebuild_the_driver_from_the_study_follow_one_policy(
        tmp_path, workers):
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    asked = run_workers(study, tmp_path, workers)
    done = [t for t in study.get_trials() if t.state != optuna.trial.TrialState.RUNNING]
    assert len(done) == len(study.trials)  # nothing left running
    assert len(chains(study)) == 8  # 8 configurations, no more
    # the epochs of one sequential run: 8 to epoch 1, 4 on to 2, 2 to 4, 1 to 8
    assert sum(stop - start for _, _, start, stop, _ in asked) == 8 + 4 + 4 + 4
    complete = [t for t in done if t.state == optuna.trial.TrialState.COMPLETE]
    first = min(chains(study), key=lambda n: -study.trials[n].params["quality"])
    assert len(complete) == 1 and chains(study)[first][-1].number == complete[0].number
    assert sum(1 for when, *_ in asked if when == 0) == workers  # side by side
    pieces = [(name, start) for _, name, start, _, _ in asked]
    assert len(set(pieces)) == len(pieces)  # no configuration trains an epoch twice


def test_a_driver_that_leaves_other_workers_running_trials_out_trains_twice(tmp_path):
    """What ``running=True`` is for: without it a worker cannot see another's running
    trial, and resumes a configuration that is already training."""
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    asked = run_workers(study, tmp_path, 2, running=False)
    pieces = [(name, start) for _, name, start, _, _ in asked]
    assert len(set(pieces)) < len(pieces)


def run_by_epoch(study, tmp_path, workers, qualities, *, carry, rf=2, n_trials=8,
                 seconds=None, refresh=True):
    """``workers`` workers training epochs (of ``seconds[k]`` time units for the k-th
    configuration, default 1: configurations reach their rungs out of trial order when
    these differ), each building its driver
    from the study before it asks; every epoch is reported to the study as it ends (so
    the others see it). With ``carry``, a trial promoted as it reaches its rung trains
    on in the same trial (:meth:`PausingDriver.carry_on`, asking the study again
    unless ``refresh`` is False), as the sweep's workers do.
    The k-th configuration asked has quality ``qualities[k]``. Returns the (k, epoch)
    pairs trained, in order."""
    import heapq
    import itertools

    from ncp_search.core.pausing import CONTINUE
    from ncp_search.integrations.optuna.pausing import PausingDriver

    def policy():
        return PausingPolicy(n_trials=n_trials, max_resource=8, reduction_factor=rf,
                             keep_min=1)

    def driver():
        return PausingDriver(study, policy(), tmp_path, running=True)

    def pace(k):
        return 1 if seconds is None else seconds[k]

    index: dict[str, int] = {}  # configuration name -> k
    trained, busy, free, tick = [], [], list(range(workers)), itertools.count()
    clock = 0
    while True:
        while free:
            d = driver()
            job = None if d.policy.finished() else d.next()
            if job is None:
                break
            k = index.setdefault(job.name, len(index))
            heapq.heappush(busy, (clock + pace(k), next(tick), free.pop(), d, job))
        if not busy:
            return trained
        clock, _, worker, d, job = heapq.heappop(busy)
        epoch = len(d.values[job.name])
        trained.append((index[job.name], epoch))
        order = d.report(job, qualities[index[job.name]] * (1 - 0.5 ** (epoch + 1)))
        going = order.action == CONTINUE and epoch + 1 < 8
        def fresh(d=d, job=job):  # the others' reports since d was built
            d.refresh(policy(), job)

        if going or (carry and d.carry_on(job, order, refresh=fresh if refresh else None)):
            heapq.heappush(busy, (clock + pace(index[job.name]), next(tick), worker, d, job))
            continue
        d.finish(job, order)
        free.append(worker)


@pytest.mark.parametrize("n_trials, rf", [(8, 2), (13, 2), (13, 3)])
def test_a_trial_promoted_as_it_arrives_trains_on_in_the_same_trial_on_any_workers(
        tmp_path, caplog, n_trials, rf):
    """Was: the sweep ended such a trial at its rung (a checkpoint) and resumed it in a
    new one. Carrying on, workers replay arrivals in trial order, not in the order they
    came: every run must still train exactly the epochs of one sequential run that
    pauses at every rung, none twice, with fewer trials."""
    import numpy as np

    saved = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        qualities = rng.uniform(0.1, 1.0, n_trials)
        seconds = None if seed < 2 else rng.integers(1, 6, n_trials)  # out of order
        runs = {}
        for workers in (1, 2, 4):
            for carry in (False, True):
                study = optuna.create_study(direction="maximize")
                trained = run_by_epoch(study, tmp_path / f"{seed}{workers}{carry}", workers,
                                       qualities, carry=carry, rf=rf, n_trials=n_trials,
                                       seconds=seconds)
                assert len(set(trained)) == len(trained), (seed, workers, carry)  # none twice
                states = {t.state for t in study.trials}
                assert optuna.trial.TrialState.RUNNING not in states
                runs[workers, carry] = (sorted(trained), len(study.trials))
        plan, _ = runs[1, False]
        for (workers, carry), (got, n) in runs.items():
            assert got == plan, (seed, workers, carry)
            if carry:
                assert n <= runs[workers, False][1], (seed, workers)
                saved += runs[workers, False][1] - n
    assert saved > 0  # trials (each a pause, a checkpoint and a resume) saved
    assert "left out" not in caplog.text
