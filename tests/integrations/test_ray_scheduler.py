"""NCPScheduler through Ray Tune's scheduler hooks, with trial stubs."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")

from ray.tune.schedulers import TrialScheduler  # noqa: E402

from ncp_search.integrations.ray.scheduler import NCPScheduler  # noqa: E402

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


class Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


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
    scheduler = NCPScheduler(metric="acc", mode=mode, max_t=6, grace_period=2,
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
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=6, grace_period=2,
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
    scheduler = NCPScheduler(metric="acc", mode="max", grace_period=3, max_t=10)
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
    scheduler = NCPScheduler(metric="acc", mode="max", predictor="ncp_raw", max_t=6)
    for i in range(3):
        finished(scheduler, f"d{i}", [0.8] * 6)
    trial = Trial("x")
    scheduler.on_trial_add(None, trial)
    with pytest.warns(RuntimeWarning, match="missing or non-numeric"):
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
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=6)
    for i in range(3):
        finished(scheduler, f"d{i}", [0.7 + 0.05 * i] * 6)
    running = Trial("running")
    scheduler.on_trial_add(None, running)
    feed(scheduler, running, [0.5, 0.55])
    path = tmp_path / "scheduler.json"
    scheduler.save(str(path))
    restored = NCPScheduler(metric="acc", mode="max", max_t=6)
    restored.restore(str(path))
    assert restored.state() == scheduler.state()
    # the restored scheduler decides exactly as the original
    assert feed(restored, running, [0.1], start=3) == feed(scheduler, running, [0.1], start=3)


def test_state_path_brings_histories_back(tmp_path):
    path = tmp_path / "exp" / "ncp_scheduler.jsonl"
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=6, state_path=str(path))
    for i in range(3):
        finished(scheduler, f"d{i}", [0.7 + 0.05 * i] * 6)
    running = Trial("running")
    scheduler.on_trial_add(None, running)
    feed(scheduler, running, [0.5, 0.55])
    # what Tuner.restore hands back: the scheduler as configured, with empty state
    fresh = NCPScheduler(metric="acc", mode="max", max_t=6, state_path=str(path))
    fresh.on_trial_add(None, running)
    assert fresh.state() == scheduler.state()
    # and decides exactly as the original
    assert feed(fresh, running, [0.1], start=3) == feed(scheduler, running, [0.1], start=3)
    corrupt = tmp_path / "bad.jsonl"
    corrupt.write_bytes(b"not a journal")
    empty = NCPScheduler(metric="acc", mode="max", state_path=str(corrupt))
    empty.on_trial_add(None, Trial("a"))
    assert empty.state()["tracks"] == {"a": empty.state()["tracks"]["a"]}
    assert corrupt.read_bytes() == b"not a journal"  # not written over


def test_a_restarted_trial_does_not_double_its_history():
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=6)
    trial = Trial("t")
    scheduler.on_trial_add(None, trial)
    feed(scheduler, trial, [0.5, 0.6, 0.7])
    feed(scheduler, trial, [0.55, 0.65], start=2)  # restored from its step-1 checkpoint
    track = scheduler.state()["tracks"]["t"]
    assert track["t"] == [1.0, 2.0, 3.0]
    assert track["values"] == [0.5, 0.55, 0.65]


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
