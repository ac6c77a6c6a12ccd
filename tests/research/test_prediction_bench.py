"""The evaluator's metrics, K resolution and report on synthetic tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

import research.cli as cli
from research.prediction_bench import crossing_share, evaluate, metrics, resolve_ks
from tests.synthetic_runs import make_runs


def test_metrics_perfect_and_reversed():
    finals = np.array([0.5, 0.6, 0.7, 0.8])
    good = metrics(finals.copy(), finals, accuracy_scale=True)
    assert good["kendall_tau"] == 1.0 and good["mae"] == 0.0 and good["top1_regret"] == 0.0
    assert good["false_prune_rate"] == 0.0
    bad = metrics(finals[::-1].copy(), finals, accuracy_scale=True)
    assert bad["kendall_tau"] == -1.0
    assert bad["top1_regret"] == pytest.approx(30.0)
    assert bad["false_prune_rate"] == 1.0
    assert np.isnan(metrics(finals, finals, accuracy_scale=False)["mae"])


def test_nan_scores_rank_last():
    finals = np.array([0.5, 0.6, 0.9])
    out = metrics(np.array([0.5, 0.6, np.nan]), finals, accuracy_scale=False)
    assert out["top1_regret"] == pytest.approx(30.0)


def test_resolve_ks():
    assert resolve_ks(["2", "25%", "0.5", 20], 20) == [2, 5, 10, 20]
    with pytest.raises(ValueError, match="outside"):
        resolve_ks(["30"], 20)


def test_crossing_share():
    runs = make_runs(2)
    for value, run in zip((0.1, 0.2), runs):
        for step in run["curve"]:
            step["val_accuracy"] = value
    assert crossing_share(runs) == 0.0
    runs[0]["curve"][-1]["val_accuracy"] = 0.9
    assert crossing_share(runs) == 1.0


def test_evaluate_has_intervals_and_controls():
    results = evaluate(make_runs(12), ks=["3"], predictors=["last", "ncp_raw"], n_boot=50)
    row = results["ks"]["3"]["ncp_raw"]
    lo, hi = row["kendall_tau"]["ci"]
    assert lo <= row["kendall_tau"]["value"] <= hi
    assert "tau_minus_shuffled" in row and "tau_minus_last" in row
    assert "ncp_raw+shuffled" in results["ks"]["3"]
    with pytest.raises(ValueError, match="at least 4 runs"):
        evaluate(make_runs(3))


def test_cli_bench_predict(tmp_path, capsys):
    table = tmp_path / "runs.jsonl"
    table.write_text("\n".join(json.dumps(r) for r in make_runs(10)) + "\n")
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(json.dumps(r) for r in make_runs(10, seed=1)) + "\n")
    out_json = tmp_path / "r.json"
    code = cli.main(["bench", "predict", "--table", str(table), str(other), "--k", "3",
                     "--boot", "20",
                     "--predictors", "last", "pow3", "ncp_raw", "--json", str(out_json),
                     "--plot", str(tmp_path / "plots")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ncp_raw+shuffled" in printed and "kendall_tau" in printed
    assert json.loads(out_json.read_text())["runs"]["modes"]["observer"]["n_runs"] == 10
    assert "mean kendall_tau across" in printed
    assert (tmp_path / "plots" / "runs_observer.png").stat().st_size > 1000


def test_transfer_summary_and_observer_target():
    from research.prediction_bench import evaluate_table, transfer_summary

    observer = make_runs(8, seed=3)
    head = make_runs(8, seed=3)
    for run in head:
        run["config"] = {**run["config"], "mode": "probe_head"}
    # the probe-head finals rank configurations in exactly the reverse order
    order = sorted(range(8), key=lambda i: observer[i]["final_val_accuracy"])
    for rank, i in enumerate(order):
        head[i]["final_val_accuracy"] = 1.0 - 0.1 * rank
    summary = transfer_summary(observer + head)
    assert summary["kendall_tau"] == pytest.approx(-1.0) and summary["same_best"] is False
    assert summary["regret_of_probe_winner"] > 0
    per_mode = evaluate_table(observer + head, target="observer", ks=["3"],
                              predictors=["last"], n_boot=10)
    assert set(per_mode) == {"observer", "probe_head -> observer final"}
    assert transfer_summary(observer) is None
