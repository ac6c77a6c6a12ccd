"""NCPScheduler through Ray Tune's scheduler hooks, with trial stubs."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")

from ray.tune.schedulers import TrialScheduler  # noqa: E402

from ncp_search.integrations.ray.scheduler import NCPScheduler  # noqa: E402
from tests.integrations.tune_fakes import Trial  # noqa: E402

# The percentile rule with the 0.1 defaults these tests were written for.
RULE_01 = {"rule": "percentile", "grace_period": 2}
PERCENTILE = {"rule": "percentile"}  # the rule these tests are about (0.1 default)

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


def feed(scheduler, trial, values, start=1, beta=1.0, metric="acc"):
    decisions = []
    for i, value in enumerate(values, start=start):
        result = {"training_iteration": i, metric: value}
        if beta is not None:
            result["beta_eff"] = beta
        decisions.append(scheduler.on_trial_result(None, trial, result))
    return decisions


def finished(scheduler, name, values, metric="acc"):
    trial = Trial(name)
    scheduler.on_trial_add(None, trial)
    feed(scheduler, trial, values, metric=metric)
    scheduler.on_trial_complete(None, trial, {"training_iteration": len(values),
                                              metric: values[-1]})


@pytest.mark.parametrize("mode, sign", [("max", 1.0), ("min", -1.0)])
def test_percentile_rule_stops_a_bad_trial_in_both_modes(mode, sign):
    scheduler = NCPScheduler(**PERCENTILE, metric="acc", mode=mode, max_t=6, grace_period=2,
                             n_startup_trials=4)
    for i in range(4):
        finished(scheduler, f"done{i}", [sign * (0.6 + 0.05 * i)] * 6)
    bad, good = Trial("bad"), Trial("good")
    scheduler.on_trial_add(None, bad)
    scheduler.on_trial_add(None, good)
    assert feed(scheduler, bad, [sign * 0.1] * 3) == [CONTINUE, STOP, STOP]
    assert feed(scheduler, good, [sign * 0.95] * 3) == [CONTINUE] * 3


def test_a_stopped_trial_is_not_counted_as_a_final():
    # Tune calls on_trial_complete for trials the scheduler stopped, too.
    scheduler = NCPScheduler(**PERCENTILE, metric="acc", mode="max", max_t=6, grace_period=2,
                             n_startup_trials=3)
    for i in range(3):
        finished(scheduler, f"done{i}", [0.8 + 0.01 * i] * 6)
    bad = Trial("bad")
    scheduler.on_trial_add(None, bad)
    assert feed(scheduler, bad, [0.1] * 2) == [CONTINUE, STOP]
    scheduler.on_trial_complete(None, bad, {"training_iteration": 2, "acc": 0.1})
    scheduler.on_trial_remove(None, bad)
    tracks = scheduler.state()["tracks"]
    assert tracks["bad"]["final"] is None
    assert sum(t["final"] is not None for t in tracks.values()) == 3
    assert tracks["bad"]["predictions"][-1][1] == pytest.approx(0.1)  # its prediction stays


def test_grace_period_and_first_trial():
    scheduler = NCPScheduler(**PERCENTILE, metric="acc", mode="max", grace_period=3, max_t=10)
    first = Trial("first")
    scheduler.on_trial_add(None, first)
    assert feed(scheduler, first, [0.1] * 5) == [CONTINUE] * 5  # nothing to compare with


def test_asha_on_predictions():
    scheduler = NCPScheduler(metric="acc", mode="max", rule="asha", grace_period=1,
                             reduction_factor=2, max_t=8)
    decisions = {}
    for i, value in enumerate([0.9, 0.8, 0.7, 0.6]):
        trial = Trial(f"t{i}")
        scheduler.on_trial_add(None, trial)
        decisions[trial.trial_id] = feed(scheduler, trial, [value])[0]
    # rung 1 keeps the top half of what it has seen: the later, worse trials stop
    assert decisions == {"t0": CONTINUE, "t1": STOP, "t2": STOP, "t3": STOP}


def test_missing_metric_and_beta_fail_open_with_one_warning():
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", predictor="ncp_raw", max_t=6)
    for i in range(3):
        finished(scheduler, f"d{i}", [0.8] * 6)
    trial = Trial("x")
    scheduler.on_trial_add(None, trial)
    with pytest.warns(RuntimeWarning, match="missing, non-numeric"):
        assert scheduler.on_trial_result(None, trial, {"training_iteration": 1}) == CONTINUE
    with pytest.warns(RuntimeWarning, match="beta_eff"):
        decisions = feed(scheduler, trial, [0.1] * 4, beta=None)
    assert decisions == [CONTINUE] * 4


def test_needs_metric_and_mode():
    scheduler = NCPScheduler()
    with pytest.raises(ValueError, match="metric and a mode"):
        scheduler.on_trial_add(None, Trial("a"))
    assert scheduler.set_search_properties("acc", "max")
    assert not scheduler.set_search_properties("loss", None)  # already set
    scheduler.on_trial_add(None, Trial("a"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "up"}, "mode"), ({"grace_period": 0}, "grace_period"),
     ({"max_t": 1, "grace_period": 2}, "max_t"), ({"predictor": "oracle"}, "predictor"),
     ({"rule": "bohb"}, "rule"), ({"percentile": -1}, "percentile"),
     ({"reduction_factor": 1}, "reduction_factor")],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NCPScheduler(**kwargs)


def test_save_restore_round_trip(tmp_path):
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6)
    for i in range(3):
        finished(scheduler, f"d{i}", [0.7 + 0.05 * i] * 6)
    running = Trial("running")
    scheduler.on_trial_add(None, running)
    feed(scheduler, running, [0.5, 0.55])
    path = tmp_path / "scheduler.json"
    scheduler.save(str(path))
    restored = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6)
    restored.restore(str(path))
    assert restored.state() == scheduler.state()
    # the restored scheduler decides exactly as the original
    assert feed(restored, running, [0.1], start=3) == feed(scheduler, running, [0.1], start=3)


def test_state_path_brings_histories_back(tmp_path):
    path = tmp_path / "exp" / "ncp_scheduler.jsonl"
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6, state_path=str(path))
    for i in range(3):
        finished(scheduler, f"d{i}", [0.7 + 0.05 * i] * 6)
    running = Trial("running")
    scheduler.on_trial_add(None, running)
    feed(scheduler, running, [0.5, 0.55])
    # what Tuner.restore hands back: the scheduler as configured, with empty state
    fresh = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6, state_path=str(path))
    fresh.on_trial_add(None, running)
    assert fresh.state() == scheduler.state()
    # and decides exactly as the original
    assert feed(fresh, running, [0.1], start=3) == feed(scheduler, running, [0.1], start=3)
    corrupt = tmp_path / "bad.jsonl"
    corrupt.write_bytes(b"not a journal")
    empty = NCPScheduler(**RULE_01, metric="acc", mode="max", state_path=str(corrupt))
    empty.on_trial_add(None, Trial("a"))
    assert empty.state()["tracks"] == {"a": empty.state()["tracks"]["a"]}
    assert corrupt.read_bytes() == b"not a journal"  # not written over


def test_a_restarted_trial_does_not_double_its_history():
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6)
    trial = Trial("t")
    scheduler.on_trial_add(None, trial)
    feed(scheduler, trial, [0.5, 0.6, 0.7])
    feed(scheduler, trial, [0.55, 0.65], start=2)  # restored from its step-1 checkpoint
    track = scheduler.state()["tracks"]["t"]
    assert track["t"] == [1.0, 2.0, 3.0]
    assert track["values"] == [0.5, 0.55, 0.65]


def test_a_trial_restored_from_a_later_checkpoint_keeps_its_earlier_rung_values():
    # Was: a restart dropped all of the trial's rung values, also those of rungs before
    # its checkpoint, which it never reports again: later trials met an emptier rung.
    scheduler = NCPScheduler(rule="asha", metric="acc", mode="max", max_t=9, grace_period=1,
                             reduction_factor=3)
    trial = Trial("t")
    scheduler.on_trial_add(None, trial)
    feed(scheduler, trial, [0.9, 0.9, 0.9, 0.9])
    feed(scheduler, trial, [0.9], start=4)  # restored from its step-3 checkpoint
    rungs = dict(scheduler.state()["rungs"])
    assert rungs[1.0] == {"t": pytest.approx(0.9)} and rungs[3.0] == {"t": pytest.approx(0.9)}
    low = Trial("low")
    scheduler.on_trial_add(None, low)
    assert feed(scheduler, low, [0.5]) == [STOP]


def test_trial_resources_without_ray_running():
    from ncp_search.integrations.ray.trainable import trial_resources

    assert trial_resources(cpus=2) == {"cpu": 2}
    with pytest.raises(ValueError, match="cpus"):
        trial_resources(cpus=0)
    with pytest.raises(ValueError, match="gpus_per_trial"):
        trial_resources(gpus_per_trial=0)


def test_trial_resources_with_gpus(monkeypatch):
    import ray

    from ncp_search.integrations.ray.trainable import trial_resources

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 2.0})
    assert trial_resources() == {"cpu": 1.0, "gpu": 1.0}
    assert trial_resources(gpus_per_trial=0.25) == {"cpu": 1.0, "gpu": 0.25}


# -- the inputs and restarts the old scheduler broke on -----------------------------------
def test_no_stop_before_startup_trials_completed():
    # Was: 4 trials running, none completed: 3 of the first wave stopped by comparing
    # them with each other.
    scheduler = NCPScheduler(**PERCENTILE, metric="acc", mode="max", max_t=10, grace_period=1)
    wave = [Trial(f"w{i}") for i in range(4)]
    for trial in wave:
        scheduler.on_trial_add(None, trial)
    decisions = []
    for step in range(1, 6):
        for i, trial in enumerate(wave):
            decisions.append(feed(scheduler, trial, [0.2 * (i + 1)], start=step)[0])
    assert set(decisions) == {CONTINUE}


def test_a_nan_final_leaves_the_rule_on_for_the_others():
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6, n_startup_trials=3)
    for i in range(3):
        finished(scheduler, f"d{i}", [0.8 + 0.01 * i] * 6)
    broken = Trial("nan")
    scheduler.on_trial_add(None, broken)
    feed(scheduler, broken, [0.85] * 6)
    with pytest.warns(RuntimeWarning, match="without a finite"):
        scheduler.on_trial_complete(None, broken, {"training_iteration": 6, "acc": float("nan")})
    bad = Trial("bad")
    scheduler.on_trial_add(None, bad)
    assert STOP in feed(scheduler, bad, [0.1] * 3)


@pytest.mark.parametrize("bad_value", [None, "0.9", [0.1]])
def test_non_numeric_metrics_fail_open_and_never_raise(bad_value):
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6, n_startup_trials=3)
    for i in range(3):
        finished(scheduler, f"d{i}", [0.8] * 6)
    trial = Trial("x")
    scheduler.on_trial_add(None, trial)
    with pytest.warns(RuntimeWarning, match="non-numeric"):
        assert feed(scheduler, trial, [bad_value] * 3) == [CONTINUE] * 3
        scheduler.on_trial_complete(None, trial, {"training_iteration": 3, "acc": bad_value})
    later = Trial("later")
    scheduler.on_trial_add(None, later)
    assert STOP in feed(scheduler, later, [0.1] * 3)  # the rule still works for others


def test_a_completed_trial_rerun_after_restore_is_never_judged_by_its_own_final():
    # Was: after Tuner.restore a COMPLETE 0.982 trial re-run by Tune was compared with its
    # own earlier final and stopped (and lost its model).
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6, n_startup_trials=3)
    for i in range(2):
        finished(scheduler, f"d{i}", [0.5] * 6)
    finished(scheduler, "star", [0.7, 0.8, 0.9, 0.95, 0.97, 0.982])
    star = Trial("star")
    scheduler.on_trial_add(None, star)
    assert feed(scheduler, star, [0.3, 0.35, 0.4, 0.6, 0.8, 0.982]) == [CONTINUE] * 6
    track = scheduler.state()["tracks"]["star"]
    assert track["completed_once"] and track["final"] is None  # out of the pool until done
    assert scheduler.num_stopped == 0
    scheduler.on_trial_complete(None, star, {"training_iteration": 6, "acc": 0.982})
    assert scheduler.state()["tracks"]["star"]["final"] == pytest.approx(0.982)


def test_grace_period_counts_time_attr_not_results():
    scheduler = NCPScheduler(
        **PERCENTILE, metric="acc", mode="max", time_attr="epoch", grace_period=15,
                             max_t=100, n_startup_trials=1)
    done = Trial("d")
    scheduler.on_trial_add(None, done)
    for t in (10, 20, 30):
        scheduler.on_trial_result(None, done, {"epoch": t, "acc": 0.9})
    scheduler.on_trial_complete(None, done, {"epoch": 30, "acc": 0.9})
    bad = Trial("b")
    scheduler.on_trial_add(None, bad)
    decisions = [scheduler.on_trial_result(None, bad, {"epoch": t, "acc": 0.1})
                 for t in (10, 20)]
    assert decisions == [CONTINUE, STOP]  # was: no decision before the second result... of 2


def test_no_stop_at_the_last_step():
    scheduler = NCPScheduler(**PERCENTILE, metric="acc", mode="max", max_t=3, grace_period=1,
                             n_startup_trials=1)
    finished(scheduler, "d", [0.9] * 3)
    late = Trial("late")
    scheduler.on_trial_add(None, late)
    assert scheduler.decide("late", {"training_iteration": 3, "acc": 0.1}).reason == "last_step"


def test_kappa_and_cross_trial_predictors_are_fed():
    def scheduler_with(**kwargs):
        scheduler = NCPScheduler(**PERCENTILE, metric="acc", mode="max", max_t=4, grace_period=1,
                                 n_startup_trials=5, **kwargs)
        for i, final in enumerate((0.5, 0.6, 0.75, 0.85, 0.95)):
            finished(scheduler, f"d{i}", [0.3, 0.35, 0.4 + 0.01 * i, final])
        return scheduler

    plain, relaxed = scheduler_with(), scheduler_with(kappa=3.0)
    for scheduler, expected in ((plain, [STOP]), (relaxed, [CONTINUE])):
        trial = Trial("x")
        scheduler.on_trial_add(None, trial)
        assert feed(scheduler, trial, [0.33]) == expected
    xtrial = scheduler_with(predictor="xtrial_curve")
    decision = xtrial.decide("y", {"training_iteration": 3, "acc": 0.43})
    assert decision.reason in ("below", "not_below")
    assert decision.value != pytest.approx(0.43)  # learnt from the 5 peers, not `last`


def test_probe_terms_are_read_from_results_and_unfeedable_predictors_refused():
    scheduler = NCPScheduler(**PERCENTILE, metric="acc", mode="max", max_t=6, grace_period=2,
                             predictor="ncp_feature_norm", n_startup_trials=1)
    finished(scheduler, "d", [0.9] * 6)
    trial = Trial("t")
    scheduler.on_trial_add(None, trial)
    for t, (acc, beta, norm) in enumerate([(0.5, 4.0, 1.0), (0.6, 2.0, 1.5)], start=1):
        decision = scheduler.decide("t", {"training_iteration": t, "acc": acc,
                                          "beta_eff": beta, "probe_feature_norm": norm})
    assert decision.reason in ("below", "not_below") and decision.value != 0.6
    with pytest.raises(ValueError, match="beta_eff_batch2"):
        NCPScheduler(predictor="ncp_two_batch")


def test_a_planted_pickle_at_state_path_runs_no_code(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("ran",))

    planted = tmp_path / "ncp_scheduler.jsonl"
    planted.write_bytes(pickle.dumps(Payload()))
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", state_path=str(planted))
    scheduler.on_trial_add(None, Trial("a"))
    feed(scheduler, Trial("a"), [0.5, 0.6])
    assert not marker.exists()
    assert planted.read_bytes() == pickle.dumps(Payload())  # not appended to either


def test_the_journal_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "ncp_scheduler.jsonl"
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6, state_path=str(path))
    finished(scheduler, "d", [0.8] * 6)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"e": "result", "id": "x", "t": 1')  # killed mid-write
    fresh = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6, state_path=str(path))
    fresh.on_trial_add(None, Trial("y"))
    assert fresh.state()["tracks"]["d"]["final"] == pytest.approx(0.8)
    assert "x" not in fresh.state()["tracks"]


def test_incumbent_test_in_ray():
    def scheduler_with(alpha):
        scheduler = NCPScheduler(metric="acc", mode="max", max_t=10, grace_period=1,
                                 rule="asha", reduction_factor=9, incumbent_alpha=alpha)
        for i, final in enumerate((0.6, 0.7, 0.8, 0.85, 0.9, 0.95)):
            finished(scheduler, f"d{i}", [0.5] * 9 + [final])
        return scheduler
    for alpha, expected in ((None, CONTINUE), (0.3, STOP)):
        scheduler = scheduler_with(alpha)
        trial = Trial("x")
        scheduler.on_trial_add(None, trial)
        assert feed(scheduler, trial, [0.1] * 3, start=2)[-1] == expected
    scheduler = scheduler_with(0.3)
    scheduler.on_trial_add(None, Trial("y"))
    assert feed(scheduler, Trial("y"), [0.6] * 3, start=2) == [CONTINUE] * 3


def test_a_trial_stopped_again_after_a_restart_counts_once():
    scheduler = NCPScheduler(**RULE_01, metric="acc", mode="max", max_t=6, n_startup_trials=1)
    finished(scheduler, "d", [0.9] * 6)
    bad = Trial("bad")
    scheduler.on_trial_add(None, bad)
    assert feed(scheduler, bad, [0.1] * 2)[-1] == STOP
    assert feed(scheduler, bad, [0.1] * 2)[-1] == STOP  # restarted from scratch, stopped again
    assert scheduler.num_stopped == 1 and "num_stopped=1" in scheduler.debug_string()


def test_default_is_asha_with_grace_1_and_percentile_settings_need_their_rule():
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=20)
    assert scheduler.policy.name == "asha" and scheduler.policy.rungs(20) == [1.0, 3.0, 9.0]
    for kwargs in ({"percentile": 25.0}, {"n_startup_trials": 3}, {"kappa": 1.0}):
        with pytest.raises(ValueError, match="rule='percentile'"):
            NCPScheduler(**kwargs)
        NCPScheduler(rule="percentile", **kwargs)


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_diverged_metric_stops_the_trial_at_once(mode, bad, tmp_path):
    # Was: a NaN or infinite metric failed open and the diverged trial ran to max_t.
    path = tmp_path / "journal.jsonl"
    scheduler = NCPScheduler(metric="acc", mode=mode, max_t=10, state_path=str(path))
    trial = Trial("diverged")
    scheduler.on_trial_add(None, trial)
    assert feed(scheduler, trial, [0.5, 0.5, bad]) == [CONTINUE, CONTINUE, STOP]
    assert scheduler.num_stopped == 1
    scheduler.on_trial_complete(None, trial, {"training_iteration": 3, "acc": bad})
    restored = NCPScheduler(metric="acc", mode=mode, max_t=10, state_path=str(path))
    restored._load_once()
    assert restored.num_stopped == 1 and restored.state()["tracks"]["diverged"]["final"] is None
    # at max_t the trial has used its budget: not stopped; kept with prune_diverged=False
    last = Trial("last")
    scheduler.on_trial_add(None, last)
    assert feed(scheduler, last, [bad], start=10) == [CONTINUE]
    keep = NCPScheduler(metric="acc", mode=mode, max_t=10, prune_diverged=False)
    kept = Trial("kept")
    keep.on_trial_add(None, kept)
    with pytest.warns(RuntimeWarning, match="non-numeric"):
        assert feed(keep, kept, [0.5, bad, bad]) == [CONTINUE] * 3


def test_errored_trials_leave_the_percentile_reference():
    # Was: Tune calls neither on_trial_complete nor on_trial_remove for an ERROR trial
    # and NCPScheduler had no on_trial_error, so errored trials' predictions stayed in
    # the reference: three of them moved the threshold from 0.85 to 0.10.
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=10, rule="percentile",
                             n_startup_trials=1, grace_period=1)
    for k in range(3):  # start-up: nothing completed yet, so they run on, then error
        broken = Trial(f"err{k}")
        scheduler.on_trial_add(None, broken)
        feed(scheduler, broken, [0.05, 0.1])
        scheduler.on_trial_error(None, broken)
    done = Trial("done")
    scheduler.on_trial_add(None, done)
    feed(scheduler, done, [0.85] * 10)
    scheduler.on_trial_complete(None, done, {"training_iteration": 10, "acc": 0.85})
    judged = Trial("judged")
    scheduler.on_trial_add(None, judged)
    decision = scheduler.decide("judged", {"training_iteration": 1, "acc": 0.5})
    assert decision.threshold == pytest.approx(0.85) and decision.stop


def test_a_trial_stopped_before_a_restore_and_rerun_is_stopped_again_at_its_step():
    # Was (a loaded kill -9 and resume of an ASHA sweep): the completed trial's rerun
    # dropped its rung value, so the trial stopped below it before the kill was judged
    # against an empty rung when Tune ran it again, continued, and completed with its
    # stop-step value as a final; num_stopped lost it.
    scheduler = NCPScheduler(rule="asha", metric="acc", mode="max", max_t=3, grace_period=1)
    finished(scheduler, "star", [0.96, 0.92, 0.98])
    low = Trial("low")
    scheduler.on_trial_add(None, low)
    assert feed(scheduler, low, [0.2]) == [STOP]
    assert scheduler.num_stopped == 1
    # Tuner.restore: Tune runs both again from their first epoch
    star = Trial("star")
    scheduler.on_trial_add(None, star)
    assert feed(scheduler, star, [0.96, 0.92, 0.98]) == [CONTINUE] * 3
    scheduler.on_trial_complete(None, star, {"training_iteration": 3, "acc": 0.98})
    scheduler.on_trial_add(None, low)
    assert scheduler.num_stopped == 1  # stopped once, counted once while it reruns
    assert scheduler.decide("low", {"training_iteration": 1, "acc": 0.2}).reason == (
        "stopped_before_restore")
    scheduler.on_trial_complete(None, low, {"training_iteration": 1, "acc": 0.2})
    state = scheduler.state()
    assert state["num_stopped"] == 1 and state["tracks"]["low"]["final"] is None
    assert dict(state["rungs"])[1.0]["star"] == pytest.approx(0.96)  # its rung value kept
    later = Trial("later")  # the others are still judged against the star's rung value
    scheduler.on_trial_add(None, later)
    assert feed(scheduler, later, [0.5]) == [STOP]


def test_a_trial_stopped_before_a_restore_continues_until_its_stop_step():
    scheduler = NCPScheduler(rule="asha", metric="acc", mode="max", max_t=9, grace_period=1,
                             reduction_factor=3, predictor="last")
    finished(scheduler, "star", [0.9] * 9)
    slow = Trial("slow")
    scheduler.on_trial_add(None, slow)
    assert feed(scheduler, slow, [0.95, 0.95, 0.5]) == [CONTINUE, CONTINUE, STOP]
    decisions = feed(scheduler, slow, [0.1, 0.1, 0.5])  # rerun: worse at the first rung
    assert decisions == [CONTINUE, CONTINUE, STOP]
    assert scheduler.num_stopped == 1
