"""Final-accuracy predictors on synthetic curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from ncp_search.core.predictors import PREDICTORS
from research.table_predict import predict, shuffled, uses_beta
from tests.synthetic_runs import make_runs


def test_last_and_best():
    runs = make_runs(4)
    runs[0]["curve"][2]["val_accuracy"] = 0.99
    assert predict("last", runs, 3, 10)[0] == runs[0]["curve"][3]["val_accuracy"]
    assert predict("best", runs, 3, 10)[0] == 0.99


def test_pow3_extrapolates_a_power_law():
    runs = make_runs(6, epochs=20)
    finals = np.array([r["final_val_accuracy"] for r in runs])
    pow3 = predict("pow3", runs, 8, 20)
    last = predict("last", runs, 8, 20)
    assert np.mean(np.abs(pow3 - finals)) < 0.5 * np.mean(np.abs(last - finals))


def test_ncp_raw_reads_intercept():
    runs = make_runs(3, beta_tracks_final=False)
    for run in runs:  # acc = 0.9 - 0.05 * beta exactly
        for step in run["curve"]:
            step["val_accuracy"] = 0.9 - 0.05 * step["beta_eff"]
    assert predict("ncp_raw", runs, 6, 10) == pytest.approx([0.9] * 3, abs=1e-3)


def test_shuffled_moves_beta_only():
    runs = make_runs(5)
    mixed = shuffled(runs)
    for original, control in zip(runs, mixed):
        assert [s["val_accuracy"] for s in original["curve"]] == [
            s["val_accuracy"] for s in control["curve"]
        ]
        assert [s["beta_eff"] for s in original["curve"]] != [
            s["beta_eff"] for s in control["curve"]
        ]
    assert runs[0]["curve"][1]["beta_eff"] != mixed[0]["curve"][1]["beta_eff"]  # input intact


def test_cross_trial_learns_from_earlier_runs_only():
    runs = make_runs(20, beta_tracks_final=True)
    scores = predict("xtrial_beta_only", runs, 3, 10)
    last = predict("last", runs, 3, 10)
    assert np.array_equal(scores[:5], last[:5])  # fallback before 5 completed runs
    finals = np.array([r["final_val_accuracy"] for r in runs])
    # beta_eff carries the final here, so the model should beat a shuffled control
    err = np.mean(np.abs(scores[10:] - finals[10:]))
    control = predict("xtrial_beta_only+shuffled", runs, 3, 10)
    assert err < np.mean(np.abs(control[10:] - finals[10:]))


def test_every_predictor_runs_and_unknown_name_fails():
    runs = make_runs(8)
    for name in PREDICTORS:
        scores = predict(name, runs, 3, 10)
        assert scores.shape == (8,) and np.all(np.isfinite(scores)), name
    assert uses_beta("ncp_raw") and not uses_beta("last")
    with pytest.raises(ValueError, match="unknown predictor"):
        predict("oracle", runs, 3, 10)


def test_extra_probe_selection():
    runs = make_runs(4)
    for run in runs:
        for step in run["curve"]:
            step["beta_eff@wide"] = 2.0 * step["beta_eff"]
    for run in runs:  # acc = 0.8 - 0.01 * beta_wide exactly
        for step in run["curve"]:
            step["val_accuracy"] = 0.8 - 0.01 * step["beta_eff@wide"]
    assert predict("ncp_raw@wide", runs, 5, 10) == pytest.approx([0.8] * 4, abs=1e-3)
    assert predict("ncp_raw@batch2", runs, 5, 10).shape == (4,)
    assert uses_beta("ncp_raw@wide+shuffled")
    with pytest.raises(ValueError, match="extra_probes naming 'deep'"):
        predict("ncp_raw@deep", runs, 5, 10)


def test_last_only_scores_equal_the_full_computation():
    runs = make_runs(9, beta_tracks_final=True)
    for name in PREDICTORS:
        full = predict(name, runs, 4, 10)
        last = predict(name, runs, 4, 10, last_only=True)
        assert last.shape == (1,) and last[0] == pytest.approx(full[-1]), name
