"""Stop policies (ncp_search.core.policy) and the trial pool (ncp_search.core.pool),
host-free: the guard order and reference pools every adapter inherits."""

from __future__ import annotations

import math

import pytest

from ncp_search.core.history import TrialHistory
from ncp_search.core.policy import (
    AshaPolicy,
    PercentilePolicy,
    StaticView,
    build_policy,
    make_policy,
)
from ncp_search.core.pool import TrialPool


def history(values, first=0, final=None):
    return TrialHistory.from_reports({first + i: v for i, v in enumerate(values)}, final=final)


def test_guard_order_last_step_before_rerun_before_diverged():
    policy = AshaPolicy(max_step=5)
    nan_at_last = history([0.5] * 5 + [math.nan])
    assert policy.decide(nan_at_last, StaticView()).decision.reason == "last_step"
    nan_early = history([0.5, math.nan])
    assert policy.decide(nan_early, StaticView(), rerun=True).decision.reason == \
        "completed_before_restore"
    verdict = policy.decide(nan_early, StaticView())
    assert verdict.stop and verdict.decision.reason == "diverged"
    kept = AshaPolicy(max_step=5, prune_diverged=False).decide(nan_early, StaticView())
    assert not kept.stop and kept.decision.reason == "no_value"
    assert policy.decide(TrialHistory(), StaticView()).decision.reason == "no_reports"
    missing = policy.decide(history([0.5]), StaticView(), reported=None)
    assert missing.decision.reason == "no_value" and not missing.stop


def test_asha_compares_at_the_first_report_past_a_rung_and_returns_its_rung():
    policy = AshaPolicy(reduction_factor=3, min_resource=1, first_step=0, max_step=20)
    view = StaticView(rungs={0.0: [0.7, 0.8, 0.9], 2.0: [0.5]})
    verdict = policy.decide(history([0.6]), view)
    assert verdict.stop and verdict.rung == 0.0
    assert verdict.decision.threshold == pytest.approx(0.8333333)
    between = policy.decide(history([0.95, 0.95]), view)
    assert between.decision.reason == "already_at_rung" and between.rung is None
    strided = policy.decide(TrialHistory.from_reports({0: 0.95, 3: 0.4}), view)
    assert strided.rung == 2.0 and not strided.stop  # step 3 is the first past rung 2
    assert policy.decide(history([0.1]), StaticView()).decision.reason == "empty_reference"


def test_the_incumbent_test_never_runs_in_warm_up():
    done = {k: history([0.5] * 9 + [f], final=f) for k, f in
            enumerate((0.6, 0.7, 0.8, 0.85, 0.9, 0.95))}
    policy = AshaPolicy(min_resource=3, max_step=9, incumbent_alpha=0.3)
    view = StaticView(done=done)
    assert policy.decide(history([0.1]), view).decision.reason == "warmup"
    late = policy.decide(history([0.1, 0.1, 0.1, 0.1]), view)  # past rung 2, between rungs
    assert late.stop and late.decision.reason == "below_incumbent"


def test_percentile_policy_pool_and_startup():
    policy = PercentilePolicy(n_startup_trials=2, n_warmup_steps=1, max_step=10)
    done = {"a": history([0.8] * 10, final=0.8)}
    assert policy.decide(history([0.1, 0.1]), StaticView(done=done)).decision.reason == \
        "startup"
    done["b"] = history([0.9] * 10, final=0.9)
    verdict = policy.decide(history([0.1, 0.1]), StaticView(done=done, latest=[0.2]))
    assert verdict.stop and verdict.decision.threshold == pytest.approx(0.8)
    assert policy.decide(history([0.1]), StaticView(done=done)).decision.reason == "warmup"


def test_settings_are_refused_with_optuna_style_messages():
    with pytest.raises(ValueError, match="reduction_factor must be > 1, but got"):
        AshaPolicy(reduction_factor=1)
    with pytest.raises(ValueError, match="percentile must be in \\[0, 100\\]"):
        PercentilePolicy(percentile=120)
    with pytest.raises(ValueError, match="incumbent_alpha must be in \\(0, 1\\)"):
        AshaPolicy(incumbent_alpha=1.5)
    with pytest.raises(TypeError, match="prune_diverged must be True or False"):
        AshaPolicy(prune_diverged="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="only apply to rule='percentile'"):
        build_policy("asha", "host", percentile=60)
    with pytest.raises(ValueError, match="rule must be one of"):
        make_policy("median")
    with pytest.raises(TypeError):
        make_policy("asha", percentile=50)  # AshaPolicy has no percentile


def test_a_policy_pickles_without_its_caches():
    import pickle

    policy = AshaPolicy(predictor="xtrial_curve", max_step=9)
    copy = pickle.loads(pickle.dumps(policy))
    assert copy.settings() == policy.settings()


def test_the_pool_leaves_errored_and_removed_trials_out_of_every_reference():
    pool = TrialPool()
    for trial_id, value in (("a", 0.9), ("err", 0.1), ("gone", 0.2)):
        pool.apply({"e": "result", "id": trial_id, "t": 1, "v": value})
        pool.apply({"e": "decision", "id": trial_id, "t": 1, "p": value, "stop": False,
                    "rung": 1})
    pool.apply({"e": "error", "id": "err"})
    pool.apply({"e": "remove", "id": "gone"})
    view = pool.view("new")
    assert view.rung_values(1) == [0.9]
    assert view.latest_predictions() == [0.9]
    # a restart (t going back) brings an errored trial back in, from scratch
    pool.apply({"e": "result", "id": "err", "t": 1, "v": 0.3})
    assert not pool.tracks["err"].failed and pool.tracks["err"].t == [1.0]
    rebuilt = TrialPool.replay([{"e": "result", "id": "x", "t": 1, "v": 0.5},
                                {"e": "bogus", "id": "x"}, {"e": "complete", "id": "x",
                                                             "final": 0.5}])
    assert rebuilt.view("y").finals() == [0.5]
