"""The budget benchmark (research.budget_bench), the i-Epoch pruner and the Taskset
converter."""

from __future__ import annotations

import gzip
import json
import math
import os

import numpy as np
import optuna
import pytest

import research.cli as cli
from research.budget_bench import (
    BUILT_IN,
    NCP,
    bench_workload,
    label,
    make_rule,
    replay,
    study_trials,
    workload_from_rows,
)
from research.iepoch import IEpochPruner
from research.replay_common import parse_spec
from research.taskset import convert, diverged, task_name, taskset_folder, write_table
from tests.synthetic_runs import make_runs

optuna.logging.set_verbosity(optuna.logging.ERROR)


# ---------------------------------------------------------------- i-Epoch
def _trial(study: optuna.Study, values: list[float]) -> bool:
    """Report ``values`` at steps 1.. and tell; True if the pruner stopped it."""
    trial = study.ask()
    for step, value in enumerate(values, start=1):
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return True
    study.tell(trial, values[-1])
    return False


def test_iepoch_keeps_only_the_top_tenth_at_step_i_by_hand():
    study = optuna.create_study(direction="maximize", pruner=IEpochPruner(epochs=2, keep=0.1))
    # Trial 0 is alone at step 2: it continues. Trial 1 (0.5 < 0.6 at step 2) is pruned
    # there (1 of 2 is allowed, and one is better). Trial 2 is the new best: it continues.
    assert not _trial(study, [0.1, 0.6, 0.7])
    assert _trial(study, [0.9, 0.5, 0.95])  # judged at step 2, not at its good step 1
    assert study.trials[1].last_step == 2
    assert not _trial(study, [0.1, 0.8, 0.2])
    # 8 more trials below 0.8: with n <= 10 at step 2 only the best continues.
    for k in range(7):
        assert _trial(study, [0.0, 0.3 + 0.01 * k, 0.0])
    # The 11th trial at step 2 (n = 11): ceil(1.1) = 2 may continue; one is better.
    assert not _trial(study, [0.0, 0.7, 0.0])
    # A NaN at step 2 is pruned; a trial is never judged before step 2.
    assert _trial(study, [0.0, math.nan, 0.0])
    assert study.trials[-1].last_step == 2


def test_iepoch_minimize_and_arguments():
    study = optuna.create_study(direction="minimize", pruner=IEpochPruner(epochs=1))
    assert not _trial(study, [0.5, 0.4])
    assert _trial(study, [0.6, 0.1])  # worse loss at step 1
    assert not _trial(study, [0.3, 0.3])
    with pytest.raises(ValueError, match="epochs=0"):
        IEpochPruner(epochs=0)
    with pytest.raises(ValueError, match="keep=0"):
        IEpochPruner(keep=0)


# ---------------------------------------------------------------- Taskset converter
ENTRIES = [
    {"hp": {"learning_rate": 0.01, "beta1": 0.9}, "train": {"loss": [0.7, 0.6, 0.5]},
     "valid": {"loss": [0.71, 0.62, 0.55]}, "test": {"loss": [0.72, 0.63, 0.56]}},
    {"hp": {"learning_rate": 3.0, "beta1": 0.5}, "train": {"loss": [0.7, float("nan"), 1e15]},
     "valid": {"loss": [0.70, float("nan"), 5e14]}, "test": {"loss": [0.7, 0.7, 0.7]}},
]


@pytest.fixture()
def taskset_file(tmp_path):
    path = tmp_path / "FixedTextRNNClassification_imdb_patch32_TINY_bs8.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump(ENTRIES, handle)  # writes bare NaN, as the public files do
    return path


def test_convert_keeps_diverged_runs_as_they_are(taskset_file, tmp_path):
    rows = convert(taskset_file)
    assert task_name(taskset_file) == "taskset_patch32_TINY_bs8"
    assert [r["trial"] for r in rows] == ["c0000", "c0001"]
    first, second = rows
    assert first["metric"] == "val_loss" and first["direction"] == "minimize"
    assert first["config"] == {"learning_rate": 0.01, "beta1": 0.9, "index": 0,
                               "mode": "observer"}
    assert [s["step"] for s in first["curve"]] == [0, 1, 2]
    assert first["curve"][1] == {"step": 1, "val_loss": 0.62, "train_loss": 0.6,
                                 "test_loss": 0.63}
    assert first["final_val_loss"] == 0.55
    assert math.isnan(second["curve"][1]["val_loss"])
    assert second["final_val_loss"] == 5e14  # huge finite losses stay
    assert diverged(rows) == 1
    out = tmp_path / "table.jsonl"
    write_table(rows, out)
    back = [json.loads(line) for line in out.read_text().splitlines()]
    assert back[1]["curve"][1]["val_loss"] is None  # NaN as null, the table format's NaN
    workload = workload_from_rows("tiny", back + back + back)  # 6 runs
    assert workload.direction == "minimize" and workload.scale == 1.0
    assert workload.n_steps == 2 and not workload.timed
    assert np.isnan(workload.values[1, 0])


def test_convert_refuses_a_malformed_entry(tmp_path):
    path = tmp_path / "bad.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump([{"hp": {}, "valid": {"loss": [1, 2]}, "train": {"loss": [1]}}], handle)
    with pytest.raises(ValueError, match="train.loss has 1 points"):
        convert(path)


def test_taskset_folder_from_the_environment(taskset_file, monkeypatch):
    monkeypatch.setenv("NCP_SEARCH_TASKSET", str(taskset_file.parent))
    assert taskset_folder() == taskset_file.parent
    monkeypatch.setenv("NCP_SEARCH_TASKSET", str(taskset_file.parent / "absent"))
    assert taskset_folder() is None
    monkeypatch.delenv("NCP_SEARCH_TASKSET")
    assert taskset_folder() is None  # no default folder outside the repository


def test_real_taskset_files_convert():
    folder = taskset_folder()
    if folder is None:
        pytest.skip("no Taskset folder: set NCP_SEARCH_TASKSET")
    from research.taskset import task_files

    rows = convert(task_files(folder)[0])
    assert len(rows) > 100 and len(rows[0]["curve"]) == 51
    assert diverged(rows) > 0  # the files hold diverged runs; they are kept


# ---------------------------------------------------------------- names and replay
def test_rule_names_parse_and_build():
    assert parse_spec("ncp:ncp_raw+shuffled,rf=3,alpha=0.2") == parse_spec(
        "ncp:ncp_raw+shuffled,rf=3,alpha=0.2")
    spec = parse_spec("ncp:ncp_raw+shuffled,rf=3,alpha=0.2")
    assert (spec.head, spec.predictor, spec.shuffled) == ("ncp", "ncp_raw", True)
    assert spec.options == {"rf": 3.0, "alpha": 0.2}
    pruner = make_rule("ncp:best,rf=4,alpha=0.1", 20)
    assert (pruner.rule, pruner.reduction_factor, pruner.incumbent_alpha) == ("asha", 4.0, 0.1)
    assert pruner.max_step == 20 and pruner.min_resource == 1
    assert isinstance(make_rule("successive_halving,rf=3", 20),
                      optuna.pruners.SuccessiveHalvingPruner)
    assert make_rule("iepoch,i=3", 20).epochs == 3
    for name in (*BUILT_IN, *NCP):
        make_rule(name, 20)
        assert label(name)
    with pytest.raises(ValueError, match="takes the options"):
        make_rule("median,rf=3", 20)
    with pytest.raises(ValueError, match="key=number"):
        parse_spec("ncp:best,rf")


def test_concurrent_replay_interleaves_in_simulated_time():
    runs = make_runs(8, epochs=4, seed=1)
    for i, run in enumerate(runs):  # run i's epochs take i + 1 seconds
        for step in run["curve"][1:]:
            step["epoch_seconds"] = float(i + 1)
    workload = workload_from_rows("synthetic", runs)
    assert workload.timed
    sequential = replay(workload, "nop", seed=0, concurrency=1)
    parallel = replay(workload, "nop", seed=0, concurrency=4)
    total = sum(4 * (i + 1) for i in range(8))
    assert sequential["seconds"] == parallel["seconds"] == total
    assert sequential["makespan"] == total
    assert total / 4 <= parallel["makespan"] < total
    # the same trials in the same order for every rule of a seed
    assert list(study_trials(workload, 3)) == list(np.random.default_rng(3).permutation(8))


def test_smoke_two_seeds_on_a_synthetic_table():
    workload = workload_from_rows("synthetic", make_runs(16, epochs=6, seed=4))
    rules = ["nop", "median", "successive_halving,rf=3", "iepoch,i=1", "ncp_percentile:best",
             "ncp:best,rf=3", "ncp:best,rf=3,alpha=0.3"]
    for concurrency in (1, 4):
        bench = bench_workload(workload, rules, seeds=[0, 1], concurrency=concurrency)
        rows = bench["summary"]
        nop = rows["nop"]
        assert nop["epochs"] == 16 * 6 and nop["epochs_share"] == 1.0
        assert nop["regret_mean"] == 0.0 and nop["n_pruned"] == 0
        for row in rows.values():
            for key in ("epochs_share", "seconds_share", "false_prune_rate",
                        "good_prune_rate"):
                assert 0.0 <= row[key] <= 1.0, (row["label"], key, row[key])
            assert row["regret_worst"] >= row["regret_mean"] >= 0.0
        assert rows["median"]["epochs_share"] < 1.0
        assert rows["ncp:best,rf=3"]["n_pruned"] > 0


@pytest.mark.slow
def test_command_writes_the_report_and_plots(tmp_path, capsys):
    table = tmp_path / "synthetic.jsonl"
    write_table(make_runs(12, epochs=5, seed=2), table)
    code = cli.main(["bench", "budget", "--table", str(table), "--taskset", "none",
                     "--seeds", "2", "--rules", "nop", "median", "successive_halving,rf=3",
                     "ncp_percentile:best", "ncp:best,rf=3", "--beta-rules",
                     "ncp:ncp_raw,rf=3", "ncp:ncp_raw+shuffled,rf=3",
                     "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "== targets ==" in out and ("PASS" in out or "FAIL" in out)
    report = json.loads((tmp_path / "out.json").read_text())
    entry = report["workloads"]["synthetic"]
    assert set(entry["modes"]) == {"sequential", "4 in flight"}
    assert "ncp:ncp_raw+shuffled,rf=3" in entry["modes"]["sequential"]["summary"]
    assert os.path.getsize(tmp_path / "pareto_synthetic.png") > 1000
    again = tmp_path / "again"
    assert cli.main(["bench", "budget", "--replot", str(tmp_path / "out.json"),
                     "--plot", str(again)]) == 0
    assert os.path.getsize(again / "pareto_synthetic.png") > 1000


def test_ray_scheduler_names_take_options():
    pytest.importorskip("ray.tune", reason="optional dependency: pip install 'ncp-search[ray]'")
    import research.ray_replay as ray_replay

    asha = ray_replay.make_scheduler("async_hyperband,rf=3", 20)
    assert asha._reduction_factor == 3
    assert ray_replay.make_scheduler("async_hyperband", 20)._reduction_factor == 4
    ncp = ray_replay.make_scheduler("ncp:best,grace=1,rf=3,alpha=0.3", 20)
    settings = ncp.settings()
    assert (settings["grace_period"], settings["incumbent_alpha"]) == (1, 0.3)
    assert ncp.policy.rungs(settings["max_t"]) == [1, 3, 9]
    with pytest.raises(ValueError, match="options"):
        ray_replay.make_scheduler("fifo,kappa=1", 20)
    with pytest.raises(ValueError, match="unknown scheduler"):
        ray_replay.make_scheduler("fifo:best", 20)


def test_default_pick_beats_median_outright_not_only_as_safe():
    def row(epochs, regret, worst):
        return {"epochs_share": epochs, "regret_mean": regret, "regret_worst": worst}

    report = {"workloads": {"w": {"tolerance": 0.5, "modes": {"sequential": {"summary": {
        "median": row(0.30, 0.1, 0.4),
        "ncp_percentile:best": row(0.50, 0.0, 0.0),            # as safe, but dearer than the median
        "ncp:best,rf=3": row(0.20, 0.1, 0.4),  # beats the median outright
        "ncp:best,rf=4": row(0.15, 0.2, 0.4),  # cheaper, but loses more
    }}}}}}
    from research.budget_bench import pick_default

    pick = pick_default(report, ["ncp_percentile:best", "ncp:best,rf=3", "ncp:best,rf=4"])
    assert pick["rule"] == "ncp:best,rf=3"
    assert pick["scores"]["ncp_percentile:best"] == {"beats_median": 0, "safe_cells": 1, "cells": 1,
                                          "mean_epochs_share": 0.5,
                                          "mean_regret_in_tolerances": 0.0}


def test_default_pick_breaks_a_tie_by_regret_before_epochs():
    # Two rules beat the median in the same cells; the cheaper one loses more: the
    # safer one is picked (the 20-seed run's tie of rf 3 with and without alpha 0.1).
    def row(epochs, regret, worst):
        return {"epochs_share": epochs, "regret_mean": regret, "regret_worst": worst}

    def cell(safer, cheaper):
        return {"tolerance": 0.5, "modes": {"sequential": {"summary": {
            "median": row(0.30, 0.2, 0.4), "a": safer, "b": cheaper}}}}

    report = {"workloads": {"w1": cell(row(0.20, 0.0, 0.0), row(0.19, 0.1, 0.4)),
                            "w2": cell(row(0.40, 0.1, 0.4), row(0.35, 0.3, 0.6))}}
    from research.budget_bench import pick_default

    pick = pick_default(report, ["b", "a"])
    assert pick["scores"]["a"]["beats_median"] == pick["scores"]["b"]["beats_median"] == 1
    assert pick["scores"]["b"]["mean_epochs_share"] < pick["scores"]["a"]["mean_epochs_share"]
    assert pick["rule"] == "a"


# ---------------------------------------------------------------- Ray's ASHA rule in Optuna
def _stop_steps_optuna(curves: list[list[float]], direction: str, max_t: int) -> list[int | None]:
    from research.ray_asha import RayASHAPruner

    study = optuna.create_study(direction=direction,
                                pruner=RayASHAPruner(max_t=max_t, grace=1, reduction_factor=3))
    stops: list[int | None] = []
    for curve in curves:
        trial = study.ask()
        stop = None
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            if step < max_t and trial.should_prune():
                stop = step
                break
        study.tell(trial, state=optuna.trial.TrialState.PRUNED) if stop else study.tell(
            trial, curve[-1] if math.isfinite(curve[-1]) else 0.0)
        stops.append(stop)
    return stops


def _stop_steps_tune(curves: list[list[float]], mode: str, max_t: int) -> list[int | None]:
    pytest.importorskip("ray.tune", reason="optional dependency: pip install 'ncp-search[ray]'")
    from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

    class Stub:
        def __init__(self, trial_id: str) -> None:
            self.trial_id = trial_id

    scheduler = AsyncHyperBandScheduler(metric="v", mode=mode, max_t=max_t, grace_period=1,
                                        reduction_factor=3, brackets=1)
    stops: list[int | None] = []
    for number, curve in enumerate(curves):
        trial = Stub(f"t{number}")
        scheduler.on_trial_add(None, trial)
        stop = None
        for step, value in enumerate(curve, start=1):
            answer = scheduler.on_trial_result(None, trial, {"training_iteration": step,
                                                             "v": value})
            if step < max_t and answer == TrialScheduler.STOP:
                stop = step
                break
        scheduler.on_trial_complete(None, trial, {"training_iteration": step, "v": value})
        stops.append(stop)
    return stops


@pytest.mark.parametrize("direction, mode", [("maximize", "max"), ("minimize", "min")])
def test_ray_asha_rule_in_optuna_stops_where_tune_asha_stops(direction, mode):
    # The T1 reference: the replayed rule must decide as Tune's own scheduler on the same
    # sequence of trials (crossing curves, ties, a NaN at a rung).
    rng = np.random.default_rng(7)
    max_t = 12
    curves = []
    for _ in range(40):
        start, gain = rng.uniform(0.1, 0.6), rng.uniform(-0.2, 0.5)
        curve = [round(start + gain * (1 - 0.7 ** s) + rng.normal(0, 0.03), 2)
                 for s in range(1, max_t + 1)]
        curves.append(curve)
    curves[5][2] = float("nan")  # at rung 3
    curves[9] = list(curves[8])  # a tie
    optuna_stops = _stop_steps_optuna(curves, direction, max_t)
    assert optuna_stops == _stop_steps_tune(curves, mode, max_t)
    assert sum(s is not None for s in optuna_stops) > 10
    assert {s for s in optuna_stops if s} <= {1, 3, 9}


def test_ray_asha_rule_arguments():
    from research.ray_asha import RayASHAPruner

    assert RayASHAPruner(max_t=50).rungs == [1.0, 3.0, 9.0, 27.0]
    for kwargs in ({"max_t": 20, "grace": 0}, {"max_t": 20, "reduction_factor": 1},
                   {"max_t": 0}):
        with pytest.raises(ValueError, match="RayASHAPruner needs"):
            RayASHAPruner(**kwargs)


def test_budget_tables_render_every_rule_and_workload(tmp_path):
    from research.budget_tables import tables

    workload = workload_from_rows("synthetic", make_runs(10, epochs=4, seed=3))
    rules = ["nop", "median", "ray_asha,rf=3", "ncp:best,rf=3"]
    bench = bench_workload(workload, rules, seeds=[0, 1], concurrency=1)
    for row in bench["summary"].values():
        row.setdefault("cheapest_built_in", None)
        row.setdefault("vs_cheapest", float("nan"))
    report = {"workloads": {"synthetic": {"kind": "table",
                                          "modes": {"sequential": bench}}}}
    text = tables(report)
    assert text.count("| synthetic |") == 3  # three tables
    for name in rules:
        assert f"| {bench['summary'][name]['label']} |" in text
