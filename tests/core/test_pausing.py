"""PausingPolicy (ncp_search.core.pausing): brackets, rungs, promotions, no host."""

from __future__ import annotations

import math

import pytest

from ncp_search.core.history import TrialHistory
from ncp_search.core.pausing import PausingPolicy, auto_keep_min


def curve(values):
    return TrialHistory.from_reports({i: v for i, v in enumerate(values)})


def drive(policy, curves, workers=1):
    """Run every trial through the policy as a host with ``workers`` would; returns
    the epochs each trial trained and the order of events."""
    trained = {}
    progress = {}
    pending = list(curves)
    while not policy.finished():
        job = policy.next_job()
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


def test_a_rung_waits_for_every_live_trial_of_its_bracket():
    policy = PausingPolicy(n_trials=3, max_resource=4, reduction_factor=2, keep_min=1)
    for name, value in (("a", 0.9), ("b", 0.5)):
        policy.add(name)
        assert policy.report(name, curve([value])).action == "pause"
    assert policy.promoted() == []  # c has not arrived
    policy.add("c")
    policy.fail("c")  # a failed trial leaves the bracket: the rung closes without it
    assert policy.promoted() == ["a"] and policy.dropped() == ["b"]


def test_diverged_trials_stop_and_nan_predictions_rank_last():
    policy = PausingPolicy(n_trials=3, max_resource=4, reduction_factor=3, keep_min=1)
    policy.add("nan")
    assert policy.report("nan", curve([math.nan])).action == "stop"
    policy.add("low")
    policy.report("low", curve([0.2]))
    policy.add("high")
    policy.report("high", curve([0.3]))
    assert policy.promoted() == ["high"]


def test_brackets_follow_one_another_and_the_last_takes_what_is_left():
    policy = PausingPolicy(n_trials=5, max_resource=2, reduction_factor=2, keep_min=1,
                           bracket_size=2)
    trained = drive(policy, {f"t{k}": [0.1 * k, 0.1 * k] for k in range(5)})
    assert sum(v == 2 for v in trained.values()) == 3  # one per bracket (2, 2, 1)


def test_the_floor_of_kept_trials_scales_with_the_bracket():
    assert [auto_keep_min(n) for n in (4, 16, 24, 40, 60, 100)] == [2, 3, 3, 4, 5, 7]


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
