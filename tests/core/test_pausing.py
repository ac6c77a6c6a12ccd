"""PausingPolicy (ncp_search.core.pausing): brackets, rungs, promotions, no host."""

from __future__ import annotations

import math

import pytest

from ncp_search.core.history import TrialHistory
from ncp_search.core.pausing import PausingPolicy, auto_keep_min


def curve(values):
    return TrialHistory.from_reports({i: v for i, v in enumerate(values)})


def drive(policy, curves, workers=1, prefer=lambda: (), defer=lambda: ()):
    """Run every trial through the policy as a host with ``workers`` would (asking
    with ``prefer()`` and ``defer()`` each time); returns the epochs each trial trained."""
    trained = {}
    progress = {}
    pending = list(curves)
    while not policy.finished():
        job = policy.next_job(prefer(), defer())
        if job is None:
            break
        kind, trial_id, target = job
        if kind == "new":
            trial_id = pending.pop(0)
            policy.add(trial_id)
        start = progress.get(trial_id, 0)
        for epoch in range(start, len(curves[trial_id])):
            progress[trial_id] = epoch + 1
            order = policy.report(trial_id, curve(curves[trial_id][:epoch + 1]))
            if order.action != "continue":
                break
        if progress[trial_id] == len(curves[trial_id]):
            policy.complete(trial_id)
        trained[trial_id] = progress[trial_id]
    return trained


def test_rungs_promote_the_best_half_and_the_rest_never_resume():
    values = {f"t{k}": [0.1 * k] * 8 for k in range(8)}
    policy = PausingPolicy(n_trials=8, max_resource=8, reduction_factor=2, keep_min=1)
    trained = drive(policy, values)
    # rungs at 1, 2, 4 epochs: 8 -> 4 -> 2 -> 1 trial runs to the end
    assert sorted(trained.values()) == [1, 1, 1, 1, 2, 2, 4, 8]
    assert trained["t7"] == 8 and set(policy.dropped()) == {f"t{k}" for k in range(7)}
    assert policy.finished()


def test_a_preferred_promoted_trial_resumes_first():
    def at_rung():
        policy = PausingPolicy(n_trials=4, max_resource=4, reduction_factor=2, keep_min=2)
        for name, value in zip("abcd", (0.9, 0.8, 0.1, 0.2)):
            policy.add(name)
            policy.report(name, curve([value]))
        assert policy.promoted() == ["a", "b"]
        return policy

    assert at_rung().next_job() == ("resume", "a", 2.0)
    policy = at_rung()
    assert policy.next_job(prefer={"b"}) == ("resume", "b", 2.0)
    assert policy.status("b") == "running" and policy.promoted() == ["a"]
    # a preference the policy has not promoted changes nothing
    assert at_rung().next_job(prefer={"c", "zz"}) == ("resume", "a", 2.0)


@pytest.mark.parametrize("seed", range(5))
def test_the_order_of_resumes_changes_no_decision(seed):
    import random

    rng = random.Random(seed)
    values = {f"t{k}": [rng.random() * (1 + e / 8) for e in range(8)] for k in range(16)}
    if seed % 2:  # coarse values: predictions tie, also at a rung's cut
        values = {k: [round(v * 5) / 5 for v in c] for k, c in values.items()}

    def run(prefer):
        policy = PausingPolicy(n_trials=16, max_resource=8, reduction_factor=2, keep_min=2,
                               bracket_size=8)
        return drive(policy, values, prefer=prefer), sorted(policy.dropped())

    # prefer and defer random trials each time, as workers that hold models would
    def shuffled():
        return {f"t{k}" for k in range(16) if rng.random() < 0.3}

    assert run(shuffled) == run(lambda: ())
    policy = PausingPolicy(n_trials=16, max_resource=8, reduction_factor=2, keep_min=2,
                           bracket_size=8)
    assert (drive(policy, values, prefer=shuffled, defer=shuffled),
            sorted(policy.dropped())) == run(lambda: ())


def test_a_deferred_promoted_trial_waits_for_the_new_trials():
    policy = PausingPolicy(n_trials=5, max_resource=4, reduction_factor=2, keep_min=2)
    for name, value in zip("abcd", (0.9, 0.8, 0.1, 0.2)):
        policy.add(name)
        policy.report(name, curve([value]))
    assert policy.promoted() == ["a"]  # no fifth arrival can push it out of the best 2
    assert policy.next_job(defer={"a"}) == ("new", None, 1.0)
    policy.add("e")
    assert policy.next_job(defer={"a"}) == ("resume", "a", 2.0)  # nothing else to run


def test_a_rung_waits_for_every_live_trial_of_its_bracket():
    policy = PausingPolicy(n_trials=3, max_resource=4, reduction_factor=2, keep_min=1)
    for name, value in (("a", 0.9), ("b", 0.5)):
        policy.add(name)
        assert policy.report(name, curve([value])).action == "pause"
    assert policy.promoted() == []  # c has not arrived
    policy.add("c")
    policy.fail("c")  # a failed trial leaves the bracket: the rung closes without it
    assert policy.promoted() == ["a"] and policy.dropped() == ["b"]


def test_a_trial_the_host_runs_again_keeps_its_fate_and_its_rung_prediction():
    # Tune runs trials again after Tuner.restore when its own snapshot is older than the
    # policy's journal. Was: a completed trial run again was stopped at its first epoch
    # (and its host took that epoch's value as its final); a paused trial run again
    # from its rung's checkpoint arrived again, ranked by a value past its rung.
    policy = PausingPolicy(n_trials=1, max_resource=4, reduction_factor=2, keep_min=1)
    assert drive(policy, {"done": [0.9] * 4}) == {"done": 4} and policy.finished()
    # run again: it trains to its end unjudged
    orders = [policy.report("done", curve([0.1] * (epoch + 1))) for epoch in range(3)]
    assert [o.action for o in orders] == ["continue"] * 3
    assert {o.reason for o in orders} == {"completed_before_restore"}
    policy = PausingPolicy(n_trials=2, max_resource=4, reduction_factor=2, keep_min=1)
    for name in ("a", "b"):
        policy.add(name)
    assert policy.report("a", curve([0.5])).action == "pause"
    # "a" run again from its rung's checkpoint: epoch 2 is past its rung; it waits there
    # with the prediction it arrived with, and from an earlier one it trains back to it
    again = policy.report("a", curve([0.5, 0.99]))
    assert (again.action, again.prediction, again.rung) == ("pause", 0.5, 1.0)
    assert policy.report("a", TrialHistory.from_reports({})).action == "continue"
    assert policy.status("a") == "paused"
    assert policy.report("b", curve([0.7])).action == "pause"  # closes the rung
    assert policy.promoted() == ["b"] and policy.dropped() == ["a"]  # 0.7 > 0.5, not 0.99
    assert policy.report("a", curve([0.5])).action == "stop"


def test_diverged_trials_stop_and_nan_predictions_rank_last():
    policy = PausingPolicy(n_trials=3, max_resource=4, reduction_factor=3, keep_min=1)
    policy.add("nan")
    assert policy.report("nan", curve([math.nan])).action == "stop"
    policy.add("low")
    policy.report("low", curve([0.2]))
    policy.add("high")
    policy.report("high", curve([0.3]))
    assert policy.promoted() == ["high"]


def _closed_rung(values, **settings):
    """Every trial of ``values`` (name -> one value) arrives at the first rung."""
    policy = PausingPolicy(n_trials=len(values), max_resource=4, reduction_factor=2,
                           keep_min=1, promote_early=False, **settings)
    for name, value in values.items():
        policy.add(name)
        policy.report(name, curve([value]))
    return policy


def test_trials_tied_at_the_cut_are_kept_together_whatever_their_order():
    # 6 arrivals keep 3: the third and fourth tie at 0.7
    values = {"a": 0.9, "b": 0.7, "c": 0.1, "d": 0.7, "e": 0.2, "f": 0.7}
    assert sorted(_closed_rung(values).promoted()) == ["a", "b", "d", "f"]
    backwards = dict(reversed(list(values.items())))
    assert sorted(_closed_rung(backwards).promoted()) == ["a", "b", "d", "f"]
    # keep_ties=False: the order in which they joined the bracket chooses
    assert sorted(_closed_rung(values, keep_ties=False).promoted()) == ["a", "b", "d"]
    assert sorted(_closed_rung(backwards, keep_ties=False).promoted()) == ["a", "d", "f"]


def test_a_tie_larger_than_the_limit_is_split_by_the_bracket_order():
    # 8 arrivals keep 4; 7 tie at 0.5 (say, stuck): keeping all 8 would be 2x, above
    # TIE_LIMIT, so the first 3 of the tied in bracket order go on
    values = {"a": 0.9, **{f"s{k}": 0.5 for k in range(7)}}
    policy = _closed_rung(values)
    assert sorted(policy.promoted()) == ["a", "s0", "s1", "s2"]
    # ties above the cut do not count: only those at the cut are kept together
    values = {"a": 0.9, "b": 0.9, "c": 0.9, "d": 0.5, "e": 0.5, "f": 0.1}
    assert sorted(_closed_rung(values).promoted()) == ["a", "b", "c"]
    # no prediction to tie on: trials with NaN predictions are not kept together
    policy = PausingPolicy(n_trials=4, max_resource=4, reduction_factor=2, keep_min=1,
                           promote_early=False, prune_diverged=False)
    for name, value in (("a", 0.9), ("b", math.nan), ("c", math.nan), ("d", math.nan)):
        policy.add(name)
        policy.report(name, curve([value]))
    assert sorted(policy.promoted()) == ["a", "b"]


def test_brackets_follow_one_another_and_the_last_takes_what_is_left():
    policy = PausingPolicy(n_trials=5, max_resource=2, reduction_factor=2, keep_min=1,
                           bracket_size=2)
    trained = drive(policy, {f"t{k}": [0.1 * k, 0.1 * k] for k in range(5)})
    assert sum(v == 2 for v in trained.values()) == 3  # one per bracket (2, 2, 1)


def test_the_floor_of_kept_trials_scales_with_the_bracket():
    sizes = (4, 12, 13, 16, 24, 25, 40, 48, 49, 60, 81, 82, 100, 120, 121, 169, 170)
    assert [auto_keep_min(n) for n in sizes] == [2, 2, 3, 3, 3, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6,
                                                 6, 7]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="reduction_factor must be > 1"):
        PausingPolicy(n_trials=4, max_resource=4, reduction_factor=1)
    with pytest.raises(ValueError, match="learns from completed trials"):
        PausingPolicy(n_trials=4, max_resource=4, predictor="xtrial_curve")
    policy = PausingPolicy(n_trials=1, max_resource=4)
    policy.add("a")
    with pytest.raises(ValueError, match="n_trials=1"):
        policy.add("b")


def test_a_nan_dropped_by_the_host_still_stops_the_trial():
    # Was: an empty history returned "no_reports" before the diverged check, so a host
    # that drops NaN reports kept the trial running, never judged.
    policy = PausingPolicy(n_trials=2, max_resource=4, reduction_factor=2, keep_min=1)
    policy.add("a")
    assert policy.report("a", TrialHistory(), reported=float("nan")).action == "stop"


def test_a_trial_that_ends_early_lets_its_rung_close():
    # Was: complete() never closed the rung, so the rest of the bracket stayed paused.
    policy = PausingPolicy(n_trials=2, max_resource=4, reduction_factor=2, keep_min=1)
    policy.add("a")
    policy.report("a", curve([0.9]))
    policy.add("b")
    policy.complete("b")  # its host ended it before the rung
    assert policy.promoted() == ["a"]


def test_a_trial_no_later_arrival_can_push_out_is_promoted_before_its_rung_closes():
    policy = PausingPolicy(n_trials=4, max_resource=4, reduction_factor=2, keep_min=1)
    for name, value in (("a", 0.5), ("b", 0.9), ("c", 0.7)):
        policy.add(name)
        policy.report(name, curve([value]))
    # 3 of 4 arrived, 2 will be kept: whatever d reports, b is one of them; c is not sure
    assert policy.promoted() == ["b"] and policy.status("c") == "paused"
    policy.add("d")
    policy.report("d", curve([0.6]))
    assert policy.promoted() == ["b", "c"] and sorted(policy.dropped()) == ["a", "d"]
    waiting = PausingPolicy(n_trials=4, max_resource=4, reduction_factor=2, keep_min=1,
                            promote_early=False)
    for name, value in (("a", 0.5), ("b", 0.9), ("c", 0.7)):
        waiting.add(name)
        waiting.report(name, curve([value]))
    assert waiting.promoted() == []


def simulate(policy, curves, workers, durations):
    """Hosts ``workers`` trials side by side, event by event (an epoch of trial ``t``
    takes ``durations[t]``); a trial promoted as it arrives trains on at once, a
    paused one waits for a free worker. Returns each trial's epochs, the end time
    and the trials' order of first completion."""
    import heapq

    pending, progress, running, clock, done = list(curves), {}, [], 0.0, []
    while True:
        while len(running) < workers:
            job = policy.next_job()
            if job is None:
                break
            kind, trial_id, _ = job
            if kind == "new":
                trial_id = pending.pop(0)
                policy.add(trial_id)
            heapq.heappush(running, (clock + durations[trial_id], trial_id))
        if not running:
            break
        clock, trial_id = heapq.heappop(running)
        epoch = progress.get(trial_id, 0) + 1
        progress[trial_id] = epoch
        values = curves[trial_id][:epoch]
        order = policy.report(trial_id, curve(values))
        if order.action == "pause" and policy.status(trial_id) == "promoted":
            policy.resume(trial_id)  # as NCPScheduler does: no pause needed
        elif order.action != "continue":
            continue
        if epoch == len(curves[trial_id]):
            policy.complete(trial_id)
            done.append(trial_id)
            continue
        heapq.heappush(running, (clock + durations[trial_id], trial_id))
    assert policy.finished()
    return progress, clock, done


@pytest.mark.parametrize("seed", range(40))
def test_promoting_early_decides_as_the_closed_rung_and_never_ends_later(seed):
    import random

    rng = random.Random(seed)
    n, epochs = rng.choice([(6, 4), (16, 8), (40, 8), (24, 9)])
    rf = rng.choice([2, 3])
    keep = rng.choice([None, 1, 2, 4])
    curves, durations = {}, {}
    for k in range(n):
        quality = rng.random()
        values = [quality * (1 - 0.6 ** (e + 1)) + rng.gauss(0, 0.02) for e in range(epochs)]
        if rng.random() < 0.1:  # diverges somewhere
            values[rng.randrange(epochs)] = math.nan
        curves[f"t{k:02d}"] = values
        durations[f"t{k:02d}"] = rng.uniform(0.5, 2.0)
    if rng.random() < 0.5:  # coarse values: predictions tie, also at a rung's cut
        curves = {k: [v if math.isnan(v) else round(v * 10) / 10 for v in c]
                  for k, c in curves.items()}
    workers = rng.choice([1, 2, 4])
    results = {}
    for early in (False, True):
        policy = PausingPolicy(n_trials=n, max_resource=epochs, reduction_factor=rf,
                               keep_min=keep, promote_early=early)
        results[early] = simulate(policy, curves, workers, durations), policy
    (waited, waited_end, _), waited_policy = results[False]
    (eager, eager_end, _), eager_policy = results[True]
    assert eager == waited  # every trial trains the same epochs
    assert sorted(eager_policy.dropped()) == sorted(waited_policy.dropped())
    if workers == 1:
        assert eager_end == pytest.approx(waited_end)  # the same epochs, one at a time
