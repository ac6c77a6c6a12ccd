"""The pausing benchmark's simulator (research.pausing_bench) on synthetic runs."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest

import research.cli as cli
from research.budget_bench import replay, study_trials, workload_from_rows
from research.pausing_bench import (
    BUDGET_NAMES,
    DEFAULT,
    CheckpointCost,
    checkpoint_for,
    keep_min_for,
    label,
    make_host,
    simulate,
    small_trials,
)
from tests.synthetic_runs import make_runs

optuna.logging.set_verbosity(optuna.logging.ERROR)

# 8 trials x 8 epochs, rf 2, at least 2 kept: rungs after epochs 1, 2, 4, then 8.
# Rung 1: all 8 arrive, 4 go on; rung 2: 2 go on; rung 4: 2 go on and complete.
HALVING = "pause,rf=2,keep=2,bracket=all"


@pytest.fixture
def workload():
    # make_runs has no epoch_seconds: unit time per epoch
    return workload_from_rows("synthetic", make_runs(n=8, epochs=8, seed=3))


def test_epochs_pauses_and_resumes_are_counted_by_hand(workload):
    order = study_trials(workload, 0)
    cost = CheckpointCost(save=0.5, restore=0.25)
    runs = {rule: simulate(workload, rule, order, checkpoint=cost)
            for rule in (HALVING + ",early=off", HALVING)}
    for run in runs.values():
        assert run["epochs"] == 8 * 1 + 4 * 1 + 2 * 2 + 2 * 4
        assert run["epochs_share"] == pytest.approx(24 / 64)
        # a checkpoint written at each rung and read back at each promotion, except for
        # a trial promoted as it arrives (its own arrival closed the rung, or no later
        # one could push it out): it trains on, as on Ray
        assert run["pauses"] - run["resumes"] == 6 and run["resumes"] <= 4 + 2 + 2
        assert run["checkpoint_seconds"] == pytest.approx(
            run["pauses"] * 0.5 + run["resumes"] * 0.25)
        assert run["seconds_share"] == pytest.approx(
            (24 + run["checkpoint_seconds"]) / 64)
        assert run["n_completed"] == 2
        assert run["n_paused_for_good"] == 6
    # here one rung was closed by a promoted trial's own arrival; promoting early spares
    # one more pause and resume
    assert runs[HALVING + ",early=off"]["resumes"] == 7 and runs[HALVING]["resumes"] == 6


def test_a_later_first_rung_is_counted_by_hand(workload):
    # min=2: rungs after epochs 2 and 4, then 8; 8 arrive at 2, 4 go on to 4, 2 complete
    run = simulate(workload, HALVING + ",min=2", study_trials(workload, 0))
    assert run["epochs"] == 8 * 2 + 4 * 2 + 2 * 4
    assert label(HALVING + ",min=2") == "pause rf2 keep 2 bracket all first rung 2"


def test_a_resumed_trial_continues_its_own_curve_where_it_stopped(workload):
    order = study_trials(workload, 1)
    run = simulate(workload, HALVING, order, concurrency=4)
    seen: dict[int, list[int]] = {}
    for position, epoch, value in run["trace"]:
        seen.setdefault(position, []).append(epoch)
        assert value == workload.values[int(order[position]), epoch - 1]
    for epochs in seen.values():  # 1, 2, 3, ...: no epoch trained twice, none skipped
        assert epochs == list(range(1, len(epochs) + 1))
    # the best two really were paused (other trials trained in between) and resumed
    finished = [p for p, epochs in seen.items() if len(epochs) == workload.n_steps]
    assert len(finished) == 2
    for position in finished:
        at = [i for i, (p, _, _) in enumerate(run["trace"]) if p == position]
        assert at[1] - at[0] > 1


def test_a_trial_diverged_at_its_first_epoch_stops_and_its_rung_closes():
    # Its history holds the NaN (dropping it left an empty history: the trial ran on
    # unjudged and the other 7 stayed paused at rung 1 for good).
    rows = make_runs(n=8, epochs=8, seed=3)
    for step in rows[0]["curve"]:
        step["val_accuracy"] = None
    rows[0]["final_val_accuracy"] = None
    workload = workload_from_rows("synthetic", rows)
    order = study_trials(workload, 0)
    run = simulate(workload, HALVING, order)
    diverged = int(np.flatnonzero(order == 0)[0])
    assert [e for p, e, _ in run["trace"] if p == diverged] == [1]
    # 1 + rung 1: 7 arrive, max(2, 3) go on; rung 2: 2; rung 4: 2 complete
    assert run["epochs"] == 1 + 7 + 3 * 1 + 2 * 2 + 2 * 4
    assert run["n_completed"] == 2


def test_a_rule_left_waiting_is_an_error(workload, monkeypatch):
    from ncp_search.core.pausing import PausingPolicy

    monkeypatch.setattr(PausingPolicy, "next_job", lambda self: None
                        if self._members else ("new", None, 1.0))
    with pytest.raises(RuntimeError, match="has not finished"):
        simulate(workload, HALVING, study_trials(workload, 0))


def test_four_workers_wait_at_the_rung_barrier(workload):
    order = study_trials(workload, 2)
    # Unit epochs, no checkpoint cost: rung 1 takes two waves (t=2), rung 2 one
    # epoch (t=3), epochs 3-4 of the 2 promoted (t=5: two workers idle), then 5-8 (t=9).
    assert simulate(workload, HALVING, order, concurrency=4)["makespan"] == pytest.approx(9)
    assert simulate(workload, "nop", order, concurrency=4)["makespan"] == pytest.approx(16)
    assert simulate(workload, HALVING, order)["makespan"] == pytest.approx(24)
    # Saves (0.5 s) keep a worker busy after each pause, restores (0.25 s) come before
    # each resume: the waves of rung 1 end at 1 (+0.5) and 2.5 (+0.5); rung 2 at
    # 3 + 0.25 + 1 (+0.5); epochs 3-4 at 4.75 + 0.25 + 2 = 7; the two workers idle since
    # 4.75 take epochs 5-8 at once: 7 + 0.25 + 4 = 11.25, had every arrival paused. A
    # trial promoted as it arrives trains on without a save and a restore, and promoting
    # early starts the promoted sooner: both end before that.
    cost = CheckpointCost(save=0.5, restore=0.25)
    waiting = simulate(workload, HALVING + ",early=off", order, concurrency=4, checkpoint=cost)
    early = simulate(workload, HALVING, order, concurrency=4, checkpoint=cost)
    assert early["makespan"] <= waiting["makespan"] < 11.25


@pytest.mark.parametrize("concurrency", [1, 4])
def test_default_replay_makes_the_budget_benchmarks_decisions(concurrency):
    workload = workload_from_rows("synthetic", make_runs(n=12, epochs=10, seed=0))
    for seed in range(3):
        theirs = replay(workload, BUDGET_NAMES[0], seed, concurrency)
        mine = simulate(workload, DEFAULT, study_trials(workload, seed),
                        concurrency=concurrency, seed=seed)
        assert mine["epochs"] == theirs["epochs"]
        assert mine["curve"] == theirs["curve"]
        assert mine["makespan"] == pytest.approx(theirs["makespan"])
        assert mine["final_regret"] == pytest.approx(theirs["final_regret"])
    assert theirs["n_pruned"] > 0  # the case decides something


def test_tune_hyperband_runs_every_trial_to_an_end(workload):
    pytest.importorskip("ray.tune")
    order = study_trials(workload, 0)
    for name in ("tune_hyperband,rf=2", "tune_bohb,rf=2"):
        run = simulate(workload, name, order, concurrency=4)
        assert run["never_started"] == 0
        assert run["pauses"] > 0 and run["resumes"] > 0
        positions: dict[int, list[int]] = {}
        for position, epoch, _ in run["trace"]:
            positions.setdefault(position, []).append(epoch)
        assert all(e == list(range(1, len(e) + 1)) for e in positions.values())


def test_keep_settings_and_rule_names():
    assert keep_min_for("auto", 60) == 4  # max(3, round(0.5 * sqrt(60)))
    assert keep_min_for("s0.7", 60) == 5  # the former floor
    assert keep_min_for("4", 20) == 4
    assert [keep_min_for("s0.6", n) for n in (16, 24, 40, 100)] == [2, 3, 4, 6]
    assert keep_min_for("f0.05", 20) == 2
    with pytest.raises(ValueError, match="keep must be"):
        keep_min_for("x", 10)
    with pytest.raises(ValueError, match="unknown rule"):
        make_host("halving", 10, 10, 1.0)
    with pytest.raises(ValueError, match="takes rf, keep, bracket"):
        make_host("pause,eta=2", 10, 10, 1.0)
    assert label(HALVING) == "pause rf2 keep 2 bracket all"


def test_small_studies_draw_16_to_24_trials():
    workload = workload_from_rows("synthetic", make_runs(n=40, epochs=4, seed=0))
    sizes = {len(small_trials(workload, seed)) for seed in range(30)}
    assert min(sizes) >= 16 and max(sizes) <= 24 and len(sizes) > 3


def bench_pausing(tmp_path, *options):
    """``bench pausing`` on a synthetic table of 12 trials x 6 epochs; its JSON report."""
    table = tmp_path / "synthetic.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in make_runs(n=12, epochs=6)))
    out = tmp_path / "pausing.json"
    args = cli.build_parser().parse_args([
        "bench", "pausing", "--table", str(table), "--taskset", "none", *options,
        "--budget-json", str(tmp_path / "absent.json"), "--json", str(out)])
    assert args.func(args) == 0
    return json.loads(out.read_text())


def test_command_writes_the_report(tmp_path):
    report = bench_pausing(tmp_path, "--seeds", "2", "--rules", "nop", DEFAULT, HALVING,
                           "pause,rf=3,keep=auto,bracket=half",
                           "--text", str(tmp_path / "pausing.txt"))
    unit = report["units"][0]
    assert set(unit["modes"]) == {"large sequential", "large 4 in flight", "small sequential"}
    rows = unit["modes"]["large sequential"]["summary"]
    assert rows["nop"]["epochs_share"] == 1.0
    assert rows[HALVING]["epochs_share"] == pytest.approx((12 + 6 + 3 * 2 + 2 * 2) / 72)
    # the default's floor must scale with the bracket: fixed floors are not picked
    assert report["choice"]["pick"] == "pause,rf=3,keep=auto,bracket=half"
    assert report["choice_any_floor"]["pick"] in (HALVING, "pause,rf=3,keep=auto,bracket=half")
    assert np.isfinite(rows[DEFAULT]["epochs_vs_default"])
    assert "targets" in (tmp_path / "pausing.txt").read_text()


@pytest.mark.parametrize("seed", range(6))
def test_training_ahead_fills_idle_workers_and_changes_no_decision(seed):
    # ahead=on: a worker with nothing to run trains the best paused trial of an open rung
    # on, its reports held back until the rung decides. The same trials complete and
    # every other trial is paused for good at the same rung; the epochs trained ahead
    # of a trial the rung drops are the only extra ones, and no epoch runs twice.
    workload = workload_from_rows("synthetic", make_runs(n=24, epochs=12, seed=seed))
    order = study_trials(workload, seed)
    rule = "pause,rf=2,keep=2,bracket=all"
    base = simulate(workload, rule, order, concurrency=4)
    ahead = simulate(workload, rule + ",ahead=on", order, concurrency=4)
    assert label(rule + ",ahead=on").endswith(" ahead")

    def last_epochs(run):
        reached = {}
        for position, epoch, _ in run["trace"]:
            reached[position] = max(reached.get(position, 0), epoch)
        return reached

    pairs = [(p, e) for p, e, _ in ahead["trace"]]
    assert len(pairs) == len(set(pairs)), "an epoch ran twice"
    assert ahead["final_regret"] == base["final_regret"]
    assert ahead["n_completed"] == base["n_completed"] == 2
    done = {p for p, e in last_epochs(base).items() if e == 12}
    assert {p for p, e in last_epochs(ahead).items() if e == 12} == done
    assert all(last_epochs(ahead)[p] >= e for p, e in last_epochs(base).items())
    assert ahead["epochs"] >= base["epochs"]
    assert ahead["makespan"] < base["makespan"]  # 19-20 against 21-22 unit epochs here
    sequential = simulate(workload, rule + ",ahead=on", order)
    assert sequential["epochs"] == simulate(workload, rule, order)["epochs"]  # never idle


def test_checkpoint_costs_as_fractions_of_an_epoch(tmp_path):
    report = bench_pausing(tmp_path, "--seeds", "1", "--no-small", "--concurrency", "1",
                           "--rules", "nop", DEFAULT, HALVING, "--checkpoint-epochs", "0.5",
                           "0.25")
    row = report["units"][0]["modes"]["large sequential"]["summary"][HALVING]
    pauses, resumes = row["pauses"], row["resumes"]
    assert pauses > 0 and resumes > 0
    # unit epochs: each pause costs 0.5 of one, each resume 0.25
    assert row["seconds_share"] * 72 == pytest.approx(
        row["epochs_share"] * 72 + 0.5 * pauses + 0.25 * resumes)


def test_measured_checkpoint_costs_are_fractions_of_an_epoch_measured_beside_them(workload):
    """The checkpoint seconds were once taken as they were measured, against epochs
    recorded at another time: on a busy machine a save measured 4x what it costs
    beside an epoch. Now the fractions of an epoch measured with them count, scaled
    by the workload's recorded epoch (unit time here)."""
    side_by_side = {"save": 0.2, "restore": 0.6, "restore_memory": 0.02,
                    "epoch_measured": 2.0, "save_epochs": 0.1, "restore_epochs": 0.3,
                    "restore_memory_epochs": 0.01, "epoch_seconds_median": 0.5}
    measured = {"synthetic": side_by_side}
    assert checkpoint_for(workload, measured) == CheckpointCost(0.1, 0.3)
    assert checkpoint_for(workload, measured, "memory") == CheckpointCost(0.1, 0.01)
    # a workload without measured models takes the tables' median fractions
    assert checkpoint_for(workload, {"other": side_by_side}) == CheckpointCost(0.1, 0.3)
    # an earlier report's absolute seconds stay as they were
    old = {"synthetic": {"save": 0.2, "restore": 0.6, "epoch_seconds_median": 0.5}}
    assert checkpoint_for(workload, old) == CheckpointCost(0.2, 0.6)
    with pytest.raises(ValueError, match="no resume from memory"):
        checkpoint_for(workload, old, "memory")
    with pytest.raises(ValueError, match="resume must be one of"):
        checkpoint_for(workload, measured, "disk")


def _timed_workload(slow: float):
    """6 runs x 4 epochs; at rung 1 (rf 2, keep 2: 3 of 6 go on) the cut falls on run 2
    (0.800, ``slow`` seconds an epoch) and run 3 (0.798, 1 s) is within the tolerance
    (0.5 points) below it; the others are far from the cut."""
    firsts = [0.90, 0.85, 0.80, 0.798, 0.50, 0.40]
    rows = []
    for i, first in enumerate(firsts):
        seconds = slow if i == 2 else 1.0
        curve = [{"step": 0, "val_accuracy": 0.1}] + [
            {"step": t, "val_accuracy": first + 0.01 * (t - 1) - 0.001 * i,
             "epoch_seconds": seconds} for t in range(1, 5)]
        rows.append({"trial": f"t{i}", "config": {"index": i, "mode": "observer"},
                     "curve": curve, "final_val_accuracy": curve[-1]["val_accuracy"]})
    return workload_from_rows("timed", rows)


def _trained(run) -> dict[int, int]:
    out: dict[int, int] = {}
    for position, epoch, _ in run["trace"]:
        out[position] = max(out.get(position, 0), epoch)
    return out


@pytest.mark.parametrize("cost", ["tie", "tol"])
def test_cost_aware_promotion_keeps_the_cheaper_of_two_trials_near_the_cut(cost):
    order = np.arange(6)
    slow = _timed_workload(2.0)
    plain = simulate(slow, HALVING, order)
    aware = simulate(slow, f"{HALVING},cost={cost}", order)
    assert _trained(plain)[2] > 1 and _trained(plain)[3] == 1  # ranked: run 2 goes on
    assert _trained(aware)[2] == 1 and _trained(aware)[3] > 1  # by cost: run 3 instead
    assert aware["epochs"] == plain["epochs"]  # as many kept
    assert aware["seconds"] < plain["seconds"]
    # outside the band nothing moves: a band of 0.1 tolerance leaves run 3 out
    narrow = simulate(slow, f"{HALVING},cost={cost},band=0.1", order)
    assert narrow["trace"] == plain["trace"]
    # equal costs change nothing at all (e.g. Taskset's unit time)
    even = _timed_workload(1.0)
    assert simulate(even, f"{HALVING},cost={cost}", order)["trace"] == \
        simulate(even, HALVING, order)["trace"]


def test_cost_tol_swaps_only_a_trial_more_than_slow_times_slower():
    order = np.arange(6)
    workload = _timed_workload(1.4)  # 1.4x slower than run 3
    plain = simulate(workload, HALVING, order)
    assert simulate(workload, f"{HALVING},cost=tol", order)["trace"] == plain["trace"]
    assert simulate(workload, f"{HALVING},cost=tol,slow=1.3", order)["trace"] != \
        plain["trace"]
    tie = simulate(workload, f"{HALVING},cost=tie", order)  # any cheaper one goes first
    assert _trained(tie)[3] > 1 and _trained(tie)[2] == 1


def test_cost_options_are_checked_and_labelled():
    assert label(f"{HALVING},cost=tie,band=0.5") == \
        "pause rf2 keep 2 bracket all cost tie band 0.5"
    for bad in ("cost=time", "band=0.5", "slow=2"):
        with pytest.raises(ValueError):
            make_host(f"{HALVING},{bad}", 8, 8, 1.0)
