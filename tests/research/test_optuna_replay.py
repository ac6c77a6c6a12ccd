"""Replaying recorded runs through real Optuna studies."""

from __future__ import annotations

import json
import math

import pytest

import research.cli as cli
from research.optuna_replay import compare, epochs_to_reach, make_pruner, replay
from tests.synthetic_runs import make_runs


def test_nop_consumes_every_epoch_and_finds_the_best():
    runs = make_runs(8, epochs=6)
    result = replay(runs, "nop", seed=0)
    assert result["epochs"] == 8 * 6 and result["n_pruned"] == 0
    assert result["final_regret"] == pytest.approx(0.0)


def test_pruners_save_epochs_and_same_order_per_seed():
    runs = make_runs(16, epochs=8, seed=2)
    report = compare(runs, pruners=["nop", "median", "ncp_percentile:best"], seeds=range(2))
    assert report["summary"]["median"]["epochs"] < report["summary"]["nop"]["epochs"]
    assert report["summary"]["ncp_percentile:best"]["n_pruned"] > 0
    on_predictions = "ncp_percentile/median:pow3"
    assert compare(runs, pruners=[on_predictions], seeds=[0])["summary"][on_predictions][
        "n_pruned"] > 0
    again = compare(runs, pruners=["median"], seeds=range(2))
    for key in ("epochs", "n_pruned", "final_regret", "epochs_to_tolerance"):
        assert again["summary"]["median"][key] == report["summary"]["median"][key]


def test_epochs_to_reach():
    assert epochs_to_reach([(10, 5.0), (20, 0.4), (30, 0.0)], 0.5) == 20
    assert math.isinf(epochs_to_reach([(10, 5.0)], 0.5))


def test_unknown_pruner():
    with pytest.raises(ValueError, match="ncp:<predictor>"):
        make_pruner("asha", 10)


def test_cli_bench_optuna(tmp_path, capsys):
    table = tmp_path / "t.jsonl"
    table.write_text("\n".join(json.dumps(r) for r in make_runs(10, epochs=5)) + "\n")
    code = cli.main(["bench", "optuna", "--table", str(table), "--seeds", "2", "--pruners",
                     "nop", "median", "ncp_percentile:ncp_raw", "--json", str(tmp_path / "o.json"),
                     "--plot", str(tmp_path)])
    assert code == 0
    assert "ncp_percentile:ncp_raw" in capsys.readouterr().out
    assert (tmp_path / "optuna_t.png").stat().st_size > 1000


def test_hyperband_replay_is_reproducible():
    runs = make_runs(12, epochs=6, seed=4)
    first = replay(runs, "hyperband", seed=3)
    second = replay(runs, "hyperband", seed=3)
    assert first["curve"] == second["curve"]
