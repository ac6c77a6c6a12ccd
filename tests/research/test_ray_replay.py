"""Replaying recorded runs through real Ray Tune runs (research.ray_replay)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install 'ncp-search[ray]'")

import research.ray_replay as ray_replay  # noqa: E402
from tests.synthetic_runs import make_runs  # noqa: E402

EPOCHS = 4


def _designed_table(curves: list[list[float]], seed: int) -> list[dict]:
    """A table whose run ``order[k]`` has curve ``curves[k]``, ``order`` being the
    permutation that ``seed`` gives: trial k of the replay replays ``curves[k]``."""
    order = np.random.default_rng(seed).permutation(len(curves))
    table: list[dict] = [{}] * len(curves)
    for k, index in enumerate(order):
        curve = [{"step": 0, "val_accuracy": 0.1, "beta_eff": 1.0}] + [
            {"step": s + 1, "val_accuracy": v, "beta_eff": 1.0} for s, v in enumerate(curves[k])
        ]
        table[int(index)] = {"trial": f"k{k}", "config": {"mode": "observer"}, "curve": curve,
                             "final_val_accuracy": curves[k][-1]}
    return table


# Trial by trial (one at a time): 0.90 completes; the best run (0.95) starts slowly and
# ncp_percentile:best stops it at epoch 2 (best so far 0.30 < 0.90); 0.50 is stopped at epoch 2;
# 0.92 completes. FIFO completes all four.
CURVES = [[0.9] * EPOCHS, [0.3, 0.3, 0.3, 0.95], [0.5] * EPOCHS, [0.92] * EPOCHS]


@pytest.fixture(scope="module")
def designed(ray_session):
    table = _designed_table(CURVES, seed=3)
    ray_replay.NCP_SETTINGS["n_startup_trials"] = 1  # 4 trials: decide after the first
    try:
        return ray_replay.compare(table, schedulers=["fifo", "ncp_percentile:best"], seeds=[3],
                                  concurrency=1)
    finally:
        ray_replay.NCP_SETTINGS.clear()


@pytest.mark.slow
def test_fifo_consumes_every_epoch_and_regret_by_hand(designed):
    fifo = next(r for r in designed["runs"] if r["scheduler"] == "fifo")
    assert fifo["epochs"] == fifo["epochs_tune"] == 4 * EPOCHS
    assert fifo["n_stopped"] == 0 and fifo["restarts"] == 0
    assert fifo["started"] == fifo["order"]  # one at a time: trials start in the seeded order
    regrets = [r for _, r in fifo["curve"]]
    assert [e for e, _ in fifo["curve"]] == [4, 8, 12, 16]
    assert regrets == pytest.approx([5.0, 0.0, 0.0, 0.0])
    assert fifo["final_regret"] == pytest.approx(0.0)


@pytest.mark.slow
def test_stopping_scheduler_consumes_fewer_epochs_and_regret_by_hand(designed):
    ncp = next(r for r in designed["runs"] if r["scheduler"] == "ncp_percentile:best")
    assert ncp["epochs"] == ncp["epochs_tune"] == 4 + 2 + 2 + 4
    assert ncp["n_stopped"] == 2
    assert [e for e, _ in ncp["curve"]] == [4, 6, 8, 12]
    # the best completed trial is 0.92, 3 points below the table's best (0.95)
    assert [r for _, r in ncp["curve"]] == pytest.approx([5.0, 5.0, 5.0, 3.0])
    assert ncp["final_regret"] == pytest.approx(3.0)
    summary = designed["summary"]
    assert summary["ncp_percentile:best"]["epochs_vs_fifo"] == pytest.approx(12 / 16)
    assert summary["ncp_percentile:best"]["reached"] == 0
    assert math.isinf(summary["ncp_percentile:best"]["epochs_to_tolerance"])
    assert summary["fifo"]["epochs_to_tolerance"] == 8


@pytest.mark.slow
def test_concurrent_replay_with_pausing_scheduler(ray_session, tmp_path):
    runs = make_runs(8, epochs=5, seed=1)
    report = ray_replay.compare(runs, schedulers=["async_hyperband", "median_stopping"],
                                seeds=[0], concurrency=2)
    by_name = {r["scheduler"]: r for r in report["runs"]}
    for result in by_name.values():
        assert result["n_trials"] == 8 and result["restarts"] == 0
        assert result["epochs"] == result["epochs_tune"] < 8 * 5
        assert sorted(result["started"]) == list(range(8))
    # the median rule yields to pending trials while it lacks samples: paused trials
    # resume from their checkpoint without replaying an epoch
    assert by_name["median_stopping"]["resumes"] > 0
    ray_replay.plot({**report, "summary": ray_replay.summarize(report["runs"], 0.5)},
                    str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 1000


def _result(name, seed, epochs, curve, stopped=0):
    return {"scheduler": name, "seed": seed, "epochs": epochs, "curve": curve,
            "final_regret": curve[-1][1], "n_stopped": stopped, "resumes": 0, "restarts": 0,
            "seconds": 1.0, "mean_active": 1.0}


def test_summary_arithmetic():
    results = [
        _result("fifo", 0, 100, [(20, 3.0), (40, 0.2), (100, 0.0)]),
        _result("fifo", 1, 100, [(20, 1.0), (100, 1.0)]),
        _result("async_hyperband", 0, 30, [(20, 3.0), (30, 1.0)], stopped=5),
        _result("async_hyperband", 1, 30, [(20, 0.4), (30, 0.4)], stopped=5),
        _result("median_stopping", 0, 50, [(20, 3.0), (50, 0.0)], stopped=3),
        _result("median_stopping", 1, 70, [(20, 0.0), (70, 0.0)], stopped=2),
        _result("ncp_percentile:best", 0, 20, [(20, 0.0)], stopped=8),
        _result("ncp_percentile:best", 1, 40, [(20, 0.5), (40, 0.0)], stopped=6),
    ]
    summary = ray_replay.summarize(results, tolerance=0.5)
    assert list(summary) == ["fifo", "async_hyperband", "median_stopping", "ncp_percentile:best"]
    assert summary["fifo"]["epochs"] == 100 and summary["fifo"]["epochs_vs_fifo"] == 1.0
    assert summary["fifo"]["final_regret"] == pytest.approx(0.5)
    assert summary["fifo"]["reached"] == 1 and summary["fifo"]["epochs_to_tolerance"] == 40
    assert summary["async_hyperband"]["epochs_vs_fifo"] == pytest.approx(0.3)
    assert summary["async_hyperband"]["final_regret"] == pytest.approx(0.7)
    assert summary["async_hyperband"]["max_final_regret"] == pytest.approx(1.0)
    assert summary["async_hyperband"]["epochs_to_tolerance"] == 20
    assert summary["median_stopping"]["epochs"] == 60
    assert summary["median_stopping"]["epochs_to_tolerance"] == pytest.approx(35)
    assert summary["ncp_percentile:best"]["epochs_to_tolerance"] == pytest.approx(20)  # 0.5 <= 0.5
    assert summary["ncp_percentile:best"]["n_stopped"] == 7
    # best built-in: lowest mean regret (median 0.0) beats fewer epochs (ASHA, 0.7)
    assert ray_replay.best_built_in(summary) == "median_stopping"
    target = ray_replay.targets(summary)["ncp_percentile:best"]
    assert target["epochs_vs_fifo"] == pytest.approx(0.3) and not target["fifo_target_met"]
    assert target["epochs_vs_best"] == pytest.approx(0.5)
    assert target["regret_not_worse"] and target["best_target_met"]
    text = ray_replay.format_summary({"tolerance": 0.5, "summary": summary})
    assert "best built-in (lowest mean final regret, then fewest epochs): median_stopping" in text
    assert ("target ncp_percentile:best: 0.30 of FIFO's epochs (<= 0.25: not met); 0.50x "
            "median_stopping") in text
    row = next(line for line in text.splitlines() if line.startswith("ncp_percentile:best"))
    assert row.split()[1:4] == ["30", "0.30", "0.50"]


def test_targets_need_no_worse_regret():
    summary = {
        "fifo": {"epochs": 100.0, "epochs_vs_fifo": 1.0, "final_regret": 0.0},
        "async_hyperband": {"epochs": 30.0, "epochs_vs_fifo": 0.3, "final_regret": 0.1},
        "ncp_percentile:best": {"epochs": 10.0, "epochs_vs_fifo": 0.1, "final_regret": 0.2},
    }
    target = ray_replay.targets(summary)["ncp_percentile:best"]
    assert target["fifo_target_met"] and not target["regret_not_worse"]
    assert not target["best_target_met"]


def test_epochs_to_reach_and_scheduler_names():
    assert ray_replay.epochs_to_reach([(10, 5.0), (20, 0.4), (30, 0.0)], 0.5) == 20
    assert math.isinf(ray_replay.epochs_to_reach([(10, math.inf), (20, 5.0)], 0.5))
    # The registry's names: ncp (and its older Ray name ncp_asha) is ASHA everywhere.
    assert ray_replay.make_scheduler("ncp:ncp_raw", 20).settings()["rule"] == "asha"
    assert ray_replay.make_scheduler("ncp_asha:ncp_raw", 20).settings()["rule"] == "asha"
    assert ray_replay.make_scheduler("ncp_percentile:pow3", 20).settings()["rule"] == (
        "percentile")
    for name in ray_replay.DEFAULT_SCHEDULERS:  # every one prepares trials when added
        assert isinstance(ray_replay.make_scheduler(name, 20), ray_replay._TrialPathOnAdd)
    with pytest.raises(ValueError, match="ncp:<predictor>"):
        ray_replay.make_scheduler("asha", 20)
    with pytest.raises(ValueError, match="predictor"):
        ray_replay.make_scheduler("ncp:no_such_predictor", 20)


def test_slim_keeps_accuracy_beta_and_final():
    runs = make_runs(3, epochs=4, seed=0)
    slim = ray_replay.slim(runs)
    assert len(slim[0]["val_accuracy"]) == 4 and len(slim[0]["beta_eff"]) == 4
    assert slim[1]["val_accuracy"][-1] == runs[1]["curve"][4]["val_accuracy"]
    assert slim[2]["final"] == runs[2]["final_val_accuracy"]


class _StubTrial:
    def __init__(self, index):
        self.trial_id = f"t{index}"
        self.status = "PENDING"
        self.prepared = False

    def init_local_path(self):
        self.prepared = True


class _StubController:
    def __init__(self, scheduler):
        self.scheduler, self.stopped = scheduler, []

    def stop_trial(self, trial):  # as TuneController.stop_trial does for a PAUSED trial
        self.stopped.append(trial.trial_id)
        self.scheduler.on_trial_remove(self, trial)
        trial.status = "TERMINATED"


@pytest.mark.parametrize("fixed", [False, True])
def test_hyperband_fix_stops_a_trial_left_paused_in_a_finished_bracket(fixed):
    from ray.tune.schedulers import HyperBandScheduler

    cls = ray_replay.HyperBandFixed if fixed else HyperBandScheduler
    scheduler = cls(max_t=4, reduction_factor=2, metric="acc", mode="max",
                    time_attr="training_iteration")
    controller = _StubController(scheduler)
    trials = [_StubTrial(i) for i in range(3)]
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    bracket = scheduler._trial_info[trials[0]][0]
    assert bracket._halves == 0 and bracket._cumul_r == 4  # first bracket: no halving
    for trial in trials:
        bracket.update_trial_stats(trial, {"training_iteration": 4, "acc": 0.5})
    # trial 0 was told to PAUSE at its last epoch while the others still ran; they
    # finished and the bracket was cleaned up while trial 0 was still saving
    for trial in trials[1:]:
        trial.status = "TERMINATED"
        bracket.cleanup_trial(trial)
    trials[0].status = "PAUSED"
    assert bracket.finished()
    assert scheduler.choose_trial_to_run(controller) is None
    assert controller.stopped == (["t0"] if fixed else [])  # without the fix: paused forever
    assert all(t.prepared for t in trials) == fixed  # the mixin prepares trials on add


# Six trials of 4 epochs for ncp_pause (PausingPolicy: rf 2, min_resource 1, keep_min
# auto_keep_min(6) = 2, one bracket): rung 1 keeps 3 of 6 by best-so-far (0.70, 0.65,
# 0.60), rung 2 keeps 2 of 3 (0.80, 0.72), those run to epoch 4: 6 + 3 + 2 * 2 = 13
# epochs; the late bloomer (0.30 -> 0.92) is paused for good at epoch 1, so the best
# completed final is 0.88, 4 points below the table's best.
PAUSE_CURVES = [[0.50, 0.55, 0.60, 0.65], [0.70, 0.72, 0.74, 0.76], [0.30, 0.90, 0.91, 0.92],
                [0.60, 0.61, 0.62, 0.63], [0.65, 0.80, 0.85, 0.88], [0.20, 0.25, 0.30, 0.35]]
# ncp_pause (rf 3, at least 2 kept): rungs after epochs 1 and 3; the best 2 at epoch 1
# (0.70 and 0.65) go on to 3 and, 2 of 2 kept there, to the end
PAUSE_EPOCHS = [1, 4, 1, 1, 4, 1]  # epochs each curve trains under ncp_pause


@pytest.mark.slow
def test_ncp_pause_pauses_resumes_and_continues_each_curve(ray_session):
    from research.budget_bench import workload_from_rows
    from research.pausing_bench import simulate

    seed = 0
    table = _designed_table(PAUSE_CURVES, seed=seed)
    result = ray_replay.replay(table, "ncp_pause", seed, concurrency=1, trace=True)
    order = result["order"]
    # epochs counted once: each trial's epochs arrive 1, 2, ... without a repeat, a
    # resumed trial goes on at the epoch after its pause (its checkpoint's)
    per_run: dict[int, list[int]] = {}
    for run, epoch in result["trace"]:
        if epoch > 0:  # -1 marks a (re)start
            per_run.setdefault(run, []).append(epoch)
    starts = [run for run, epoch in result["trace"] if epoch < 0]
    assert len(starts) == 6 + result["resumes"]
    assert all(epochs == list(range(1, len(epochs) + 1)) for epochs in per_run.values())
    assert [len(per_run[order[k]]) for k in range(6)] == PAUSE_EPOCHS
    assert result["epochs"] == result["epochs_tune"] == 12 and result["restarts"] == 0
    assert result["final_regret"] == pytest.approx(4.0)  # 0.92 starts at 0.30: dropped
    # 8 arrivals at a rung (6, then 2). Waiting for each whole rung, the last arrival
    # closes it and Tune stops it (dropped) or lets it train on (promoted) instead of
    # pausing it: at most 5 + 1 pauses, and at most 2 + 1 resumes. Promoting early (the
    # default), a trial promoted as it arrives trains on: fewer; how many depends on the
    # order Tune starts trials in, the epochs of each trial do not
    assert result["pauses"] <= 6 and result["resumes"] <= 3
    assert result["pauses"] - result["resumes"] <= 4 and result["n_stopped"] == 4
    # the simulator's rule `pause` on the same trials and order: the same epochs per trial
    workload = workload_from_rows("designed", table)
    simulated = simulate(workload, "pause,rf=3,keep=auto,bracket=all", np.array(order))
    waiting = simulate(workload, "pause,rf=3,keep=auto,bracket=all,early=off",
                       np.array(order))
    assert simulated["epochs"] == waiting["epochs"] == 12
    # the simulator pauses a dropped closer too (Tune stops it): 6 at rung 1, one at rung
    # 3 (its closer, promoted, trains on); 2 + 1 resumes. Promoting early spares nothing
    # here: no trial is certain of the best 2 before its rung's last arrival
    assert (waiting["pauses"], waiting["resumes"]) == (7, 3)
    assert (simulated["pauses"], simulated["resumes"]) == (7, 3)
    assert simulated["final_regret"] == pytest.approx(result["final_regret"])
    sim_epochs = [max(e for p, e, _ in simulated["trace"] if p == k) for k in range(6)]
    assert sim_epochs == PAUSE_EPOCHS


def test_ncp_pause_is_the_registry_scheduler():
    from ncp_search.core.pausing import PausingPolicy, auto_keep_min
    from ncp_search.integrations import registry

    scheduler = ray_replay.make_scheduler("ncp_pause", 20, n_trials=60)
    assert isinstance(scheduler, ray_replay._TrialPathOnAdd)
    assert isinstance(scheduler.policy, PausingPolicy)
    made = registry.SCHEDULERS["ncp_pause"].make({}, 20, n_trials=60, metric="m", mode="max")
    assert scheduler.policy.settings() == made.policy.settings()
    assert scheduler.policy.keep_min == auto_keep_min(60) and scheduler.policy.bracket_size == 60
    assert scheduler.policy.reduction_factor == registry.PAUSE_REDUCTION_FACTOR
    assert "ncp_pause" in ray_replay.PAUSING  # its trials report checkpoints
    default = ray_replay.make_scheduler("ncp", 20)
    assert default.settings()["reduction_factor"] == 3 and default.settings()["grace_period"] == 1
    with pytest.raises(ValueError, match="n_trials"):
        ray_replay.make_scheduler("ncp_pause", 20)
    with pytest.raises(ValueError, match="takes the settings"):
        ray_replay.make_scheduler("ncp_pause,rf=3", 20, n_trials=6)
