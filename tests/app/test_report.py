"""The sweep's HTML report: contents, escaping, edge cases, rendering in headless Chromium."""

from __future__ import annotations

import base64
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ncp_search.app.report.html import FIGURES, MIN_TAU_TRIALS, write_report

EPOCHS = 8
META = {
    "name": "quick <&> sweep",
    "backend": "optuna",
    "metric": "val_accuracy",
    "direction": "maximize",
    "epochs": EPOCHS,
    "pruner": "ncp_percentile (predictor=best, percentile=50.0)",
    "config": {"pruner": {"name": "ncp_percentile", "predictor": "best", "percentile": 50.0,
                          "rule": "percentile"}},
    "storage": None,
    "created": "2026-11-24T18:30:00Z",
}
EVIL = "<script>alert(1)</script>"


def _trial(number, state, n, rate, *, beta=True, predictions=True, **extra):
    """A synthetic trial: accuracy rising towards ``rate``, beta_eff falling."""
    epochs = np.arange(1, n + 1)
    val = [float(rate * (1 - 0.6 * math.exp(-e / 2))) for e in epochs]
    trial = {
        "number": number,
        "state": state,
        "params": {"learning_rate": 10.0 ** -(2 + number % 3), "optimizer": "adam"},
        "val_accuracy": val,
        "beta_eff": [float(4 - 0.3 * e + rate) for e in epochs] if beta else [],
        "predicted_final": ([None] + [v + 0.05 for v in val[1:]]) if predictions else [],
        "final": val[-1] if val else None,
        "model_path": f"models/trial_{number:04d}.keras" if state == "COMPLETE" else None,
        "seconds": 1.5 * n,
    }
    trial.update(extra)
    return trial


def _sweep():
    trials = [
        _trial(0, "COMPLETE", EPOCHS, 0.80),
        _trial(1, "PRUNED", 3, 0.50),
        _trial(2, "COMPLETE", EPOCHS, 0.90),  # the best
        _trial(3, "PRUNED", 4, 0.60),
        _trial(4, "COMPLETE", EPOCHS, 0.70),
        _trial(5, "FAIL", 2, 0.40),
        _trial(6, "RUNNING", 0, 0.50),  # no epoch yet
        _trial(7, "COMPLETE", EPOCHS, 0.85),
    ]
    trials[1]["stop"] = {"epoch": 3, "reason": "below", "value": 0.46, "threshold": 0.71}
    trials[2]["params"] = {"learning_rate": 0.001, "optimizer": EVIL}
    trials[3]["params"] = {"learning_rate": 0.01247042763432578, "optimizer": "adam"}
    trials[5]["val_accuracy"][1] = None  # NaN in the middle of the data
    trials[5]["beta_eff"][0] = float("nan")
    trials[5]["final"] = None
    return trials[::-1]  # any order


def _images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def _section(page: str, heading: str) -> str:
    return page.split(f"<h2>{heading}")[1].split("<h2>")[0]


def _row(page: str, number: int) -> str:
    rows = page.split("<h2>All trials</h2>")[1]
    return rows.split(f"<tr><td>{number}</td>")[1].split("</tr>")[0]


def test_full_report(tmp_path):
    assert {"learning_curves", "trial_curves"} <= set(FIGURES)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "trial_0002.keras").write_bytes(b"")
    path = write_report(META, _sweep(), tmp_path)
    assert path == tmp_path / "report.html"
    page = path.read_text(encoding="utf-8")
    for name in FIGURES:
        assert (tmp_path / "report" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = _images(page)
    assert len(images) == len(FIGURES)
    assert all(image.startswith(b"\x89PNG") for image in images)
    # Best configuration: trial 2, its params (escaped) and its model path.
    best = page.split("<h2>Best configuration</h2>")[1].split("<h2>")[0]
    assert "Trial 2:" in best and "0.001" in best
    assert "learning_rate=0.01247, optimizer=adam" in _row(page, 3)  # 4 digits
    assert "models/trial_0002.keras" in best and "file not found" not in best
    assert EVIL not in page and html_escaped(EVIL) in page
    assert "<title>ncp-search report: quick &lt;&amp;&gt; sweep</title>" in page
    # Epochs: 4 complete x 8 + 3 + 4 pruned + 2 failed + 0 running; no pruning: 6 x 8 + 2.
    assert "<td>epochs trained</td><td>41</td>" in page
    assert "<td>epochs without pruning</td><td>50</td>" in page
    assert "<td>saved</td><td>18.0%</td>" in page
    assert "<td>pruned trials</td><td>2</td>" in page
    assert "Kendall tau" in page and "<script" not in page and "http" not in page
    rows = page.split("<h2>All trials</h2>")[1]
    assert [int(n) for n in re.findall(r"<tr><td>(\d+)</td>", rows)] == list(range(8))


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_final_column_is_empty_for_trials_that_never_finished(tmp_path):
    page = write_report(META, _sweep(), tmp_path).read_text()
    val_1 = _trial(1, "PRUNED", 3, 0.50)["val_accuracy"][-1]
    assert f"<td>&ndash; (pruned at epoch 3: {val_1:.4g})</td>" in _row(page, 1)
    assert "<td>&ndash; (failed at epoch 2: " in _row(page, 5)
    assert "<td>&ndash; (running before its first epoch)</td>" in _row(page, 6)
    final_0 = _trial(0, "COMPLETE", EPOCHS, 0.80)["final"]
    assert f"<td>{final_0:.4g}</td>" in _row(page, 0)
    # The optimisation history draws a pruned trial's last value as "not a final".
    assert (tmp_path / "report" / "history.png").exists()


def test_stop_points_and_recorded_thresholds(tmp_path):
    page = write_report(META, _sweep(), tmp_path).read_text()
    assert "prediction 0.46 &lt; threshold 0.71" in _row(page, 1)
    assert "threshold not recorded" in _row(page, 3)  # trial 3 has no stored decision
    curves = _section(page, "Learning curves and stops")
    assert "recorded for 1 of the 2 stops" in curves
    assert 'alt="learning curves with stop points"' in curves
    assert 'alt="one panel per trial"' in curves
    for name in ("learning_curves", "trial_curves"):
        assert (tmp_path / "report" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_what_decided_says_beta_eff_did_not_decide_for_a_curve_predictor(tmp_path):
    page = write_report(META, _sweep(), tmp_path).read_text()
    decided = _section(page, "What decided")
    assert "NCPPruner, percentile rule" in decided and "50th percentile" in decided
    assert "<code>best</code>" in decided and "played no part in any decision" in decided
    assert "Stopped early: 2 of 8 trials (2 by predicted final below the rule's threshold)" \
        in decided
    assert "For 1 of them the trial record holds no decision" in decided
    assert "1 failed" in decided and "4 ran all their epochs" in decided
    assert "<h2>beta_eff trajectories (recorded, not used to decide)</h2>" in page


def test_what_decided_with_a_beta_eff_predictor(tmp_path):
    # A sweep of 0.1 stored its whole pruner section and no rule: "ncp" was the
    # percentile rule then.
    meta = {**META, "pruner": "ncp (predictor=ncp_raw, percentile=25)", "config": {
        "pruner": {"name": "ncp", "predictor": "ncp_raw", "percentile": 25,
                   "n_startup_trials": 5, "n_warmup_steps": 2, "kappa": 0.0,
                   "reduction_factor": 3}}}
    page = write_report(meta, _sweep(), tmp_path).read_text()
    decided = _section(page, "What decided")
    assert "<code>ncp_raw</code>" in decided and "it reads beta_eff" in decided
    assert "75th percentile" in decided
    assert "<h2>beta_eff trajectories (an input of the decisions)</h2>" in page


def test_what_decided_from_the_config_of_a_ray_sweep(tmp_path):
    config = {"scheduler": {"name": "ncp_asha", "predictor": "pow3", "grace_period": 2,
                            "reduction_factor": 3, "percentile": 50}}
    meta = {**META, "backend": "ray", "pruner": "ignored", "config": config}
    decided = _section(write_report(meta, _sweep(), tmp_path).read_text(), "What decided")
    assert "NCPScheduler, ASHA on predictions" in decided and "67th percentile" in decided
    assert "<code>pow3</code>" in decided and "played no part" in decided


def test_what_decided_under_ncp_pause_says_the_recorded_rungs(tmp_path):
    config = {"pruner": {"name": "ncp_pause", "predictor": "best", "min_resource": 1}}
    meta = {**META, "pruner": "ncp_pause", "config": config,
            "pause_settings": {"reduction_factor": 3, "keep_min": 2, "keep_ties": True}}
    decided = _section(write_report(meta, _sweep(), tmp_path).read_text(), "What decided")
    assert "the best 1/3 (at least 2) by predicted final" in decided
    assert "(epochs x 3)" in decided
    # a sweep.json from before the settings were recorded: those sweeps ran rf 2
    old = {key: value for key, value in meta.items() if key != "pause_settings"}
    decided = _section(write_report(old, _sweep(), tmp_path).read_text(), "What decided")
    assert "the best 1/2 by predicted final" in decided and "(epochs x 2)" in decided


def test_what_decided_under_ncp_pause_names_why_trials_stopped(tmp_path):
    """A pausing sweep's trials stop because a rung did not promote them (paused for
    good) or because they diverged; the report said 'predicted final below the rule's
    threshold' for all of them, the words of a killing rule."""
    config = {"pruner": {"name": "ncp_pause", "predictor": "best", "min_resource": 1}}
    meta = {**META, "pruner": "ncp_pause", "config": config,
            "pause_settings": {"reduction_factor": 3, "keep_min": 2, "keep_ties": True}}
    trials = _sweep()
    for trial in trials:
        trial["stop"] = None  # what the Optuna sweep records under ncp_pause
    diverged = next(t for t in trials if t["number"] == 3)
    diverged["diverged"] = "nan"
    decided = _section(write_report(meta, trials, tmp_path).read_text(), "What decided")
    assert "threshold" not in decided
    assert ("Stopped early: 2 of 8 trials (1 by not promoted at a rung: paused for good (or "
            "waiting at an open rung when the sweep stopped), its checkpoint kept; 1 by the "
            "sweep's divergence check (not the rule))") in decided


def test_a_pausing_sweeps_report_counts_paused_trials_apart(tmp_path):
    """A configuration paused for good keeps its checkpoint: the report's table and the
    trial's final cell say paused (they said pruned, the word for a stopped trial)."""
    config = {"pruner": {"name": "ncp_pause", "predictor": "best", "min_resource": 1}}
    meta = {**META, "pruner": "ncp_pause", "config": config}
    trials = _sweep()
    paused = next(t for t in trials if t["number"] == 1)
    paused["paused"] = True
    page = write_report(meta, trials, tmp_path).read_text()
    saved = _section(page, "Epochs and seconds saved")
    assert "<td>paused trials (checkpoints kept)</td><td>1</td>" in saved
    assert "<td>pruned trials</td><td>1</td>" in saved
    assert "(paused at epoch 3: " in _section(page, "All trials")


def test_a_paused_trials_row_says_its_rung_did_not_keep_it(tmp_path):
    """A trial paused for good was decided at its rung (its prediction recorded there):
    the row said 'prediction X; threshold not recorded' and the section 'the trial
    record holds no decision', though the rungs column showed the decision."""
    config = {"pruner": {"name": "ncp_pause", "predictor": "best", "min_resource": 1}}
    meta = {**META, "pruner": "ncp_pause", "config": config}
    trials = _sweep()
    for trial in trials:
        trial["stop"] = None  # what the Optuna sweep records under ncp_pause
    for number in (1, 3):  # every PRUNED trial of a pausing sweep paused (or diverged)
        paused = next(t for t in trials if t["number"] == number)
        paused.update(paused=True, predicted_final=[],
                      rungs=[{"epoch": 1, "prediction": 0.25}, {"epoch": 3, "prediction": 0.5}])
    page = write_report(meta, trials, tmp_path).read_text()
    row = _row(page, 1)
    assert "prediction 0.5; not promoted at its rung (paused for good, or waiting" in row
    assert "threshold not recorded" not in row
    decided = _section(page, "What decided")
    assert "Stopped early: 2 of 8 trials (2 by not promoted at a rung" in decided
    assert "holds no decision" not in decided
    curves = _section(page, "Learning curves and stops")
    assert "do not keep the rule's decision" not in curves
    assert "A pausing rung keeps its best trials by predicted final" in curves


def test_a_killing_rules_diverged_stops_are_not_called_a_pausing_rung(tmp_path):
    trials = _sweep()
    for trial in trials:
        if trial["state"] == "PRUNED":
            trial.update(stop=None, diverged="nan")  # every stop a divergence
    curves = _section(write_report(META, trials, tmp_path).read_text(),
                      "Learning curves and stops")
    assert "pausing rung" not in curves


def test_the_report_says_a_failed_trial_was_run_again(tmp_path):
    trials = _sweep()
    failed = next(t for t in trials if t["state"] == "FAIL")
    decided = _section(write_report(META, trials, tmp_path).read_text(), "What decided")
    assert "run again" not in decided
    trials[0]["retries"] = [failed["number"]]  # a finished trial ran it again
    decided = _section(write_report(META, trials, tmp_path).read_text(), "What decided")
    assert "1 failed (an error or an interruption, not a pruning decision; run again by a " \
        "later trial)" in decided


def test_a_new_pausing_sweep_records_its_rung_settings():
    from ncp_search.app.sweep.run import _pause_settings, _pausing

    config = {"backend": "ray", "budget": {"trials": 40},
              "scheduler": {"name": "ncp_pause"}, "pruner": {"name": "ncp"}}
    assert _pausing(config) and not _pausing({**config, "backend": "optuna"})
    assert _pause_settings(config) == {"reduction_factor": 3, "keep_min": 3,
                                       "keep_ties": True}


def test_what_decided_from_the_settings_stored_in_the_study(tmp_path):
    stored = {"class": "NCPPruner", "rule": "percentile", "predictor": "xtrial_ncp",
              "uses_beta_eff": True, "percentile": 50.0, "n_startup_trials": 3,
              "n_warmup_steps": 1, "kappa": 0.0, "incumbent_alpha": 0.2}
    meta = {**META, "pruner_settings": stored}
    decided = _section(write_report(meta, _sweep(), tmp_path).read_text(), "What decided")
    assert "<code>xtrial_ncp</code>" in decided and "it reads beta_eff" in decided
    assert "before 3 trials have completed, nor before epoch 2" in decided
    # With the incumbent test on, a stop's reason cannot be inferred from the rule.
    assert "1 by predicted final below the rule's threshold; 1 by reason not recorded" \
        in decided


def test_what_decided_says_diverged_trials_stop_only_where_they_did(tmp_path):
    # 0.2 settings say prune_diverged; a 0.2 config stores its rule (default True); 0.1
    # studies and configs say neither, and their diverged trials ran on.
    new = {"class": "NCPPruner", "rule": "asha", "predictor": "best", "uses_beta_eff": False,
           "reduction_factor": 3.0, "prune_diverged": True}
    old = {"class": "NCPPruner", "rule": "percentile", "predictor": "best",
           "uses_beta_eff": False, "percentile": 50.0}
    ray_new = {"scheduler": {"name": "ncp", "rule": "asha", "predictor": "best",
                             "grace_period": 1, "reduction_factor": 3}}
    ray_old = {"scheduler": {"name": "ncp_asha", "predictor": "best", "grace_period": 2,
                             "reduction_factor": 3}}
    said = {}
    for name, meta in {"new": {**META, "pruner_settings": new},
                       "old": {**META, "pruner_settings": old},
                       "ray_new": {**META, "backend": "ray", "config": ray_new},
                       "ray_old": {**META, "backend": "ray", "config": ray_old}}.items():
        folder = tmp_path / name
        folder.mkdir()
        decided = _section(write_report(meta, _sweep(), folder).read_text(), "What decided")
        said[name] = "stopped at once (diverged)" in decided
    assert said == {"new": True, "old": False, "ray_new": True, "ray_old": False}


def test_builtin_pruner_makes_no_prediction(tmp_path):
    trials = [{**t, "predicted_final": []} for t in _sweep()]
    page = write_report({**META, "pruner": "median (n_startup_trials=5)", "config": {
        "pruner": {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 2}}}, trials,
                        tmp_path).read_text()
    assert "Optuna's MedianPruner decides on the raw val_accuracy" in _section(
        page, "What decided")
    assert "No predictions recorded" in _section(page, "Predicted vs actual")
    assert "recorded, not used to decide" in page
    assert not (tmp_path / "report" / "predicted_vs_actual.png").exists()


def test_predicted_vs_actual_counts_complete_trials_and_hides_tau_below_ten(tmp_path):
    page = write_report(META, _sweep(), tmp_path).read_text()
    section = _section(page, "Predicted vs actual")
    assert "complete trials only</strong> (n = 4 with a prediction" in section
    assert "survivors of pruning" in section
    assert section.count(f"&ndash; (n &lt; {MIN_TAU_TRIALS})") == 3  # k = 2, 4, 6
    many = [_trial(n, "COMPLETE", EPOCHS, 0.5 + 0.03 * n) for n in range(12)]
    for n, trial in enumerate(many):  # predictions that rank the finals exactly
        trial["predicted_final"] = [0.1 * n] * EPOCHS
    section = _section(write_report(META, many, tmp_path / "many").read_text(),
                       "Predicted vs actual")
    assert "(n = 12 with a prediction" in section and "n &lt;" not in section.split(
        "</table>")[0]
    assert "<td>1</td></tr>" in section  # Kendall tau 1 at every k


def test_seconds_saved_is_an_estimate_from_complete_trials(tmp_path):
    page = write_report(META, _sweep(), tmp_path).read_text()
    saved = _section(page, "Epochs and seconds saved")
    # 9 epochs saved; complete trials take 1.5 s per epoch.
    assert "<td>trial time saved</td><td>trial time saved 14 s (estimate: 9 epochs x 1.5 s" in (
        saved)
    trained = sum(1.5 * n for n in (EPOCHS, 3, EPOCHS, 4, EPOCHS, 2, 0, EPOCHS))
    assert f"<td>trial time used</td><td>trial time used {trained:.0f} s</td>" in saved


def test_seconds_saved_matches_the_sweep_summary_with_epoch_times(tmp_path):
    from ncp_search.app.sweep.progress import time_accounting

    trials = _sweep()
    for t in trials:  # first epoch 3 s (compilation), then 1 s, plus 2 s of set-up
        n = len(t["val_accuracy"])
        t["epoch_seconds"] = [3.0] + [1.0] * (n - 1) if n else []
        t["seconds"] = 2.0 + sum(t["epoch_seconds"])
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    times = time_accounting(((len(t["val_accuracy"]), t["seconds"], t["epoch_seconds"])
                             for t in finished), EPOCHS)
    saved = _section(write_report(META, trials, tmp_path).read_text(),
                     "Epochs and seconds saved")
    assert times["seconds_saved"] == 9.0  # 5 + 4 epochs at 1 s
    assert (f"<td>trial time saved</td><td>trial time saved 9 s of "
            f"{times['seconds_without_pruning']:.0f} s (") in saved
    assert "4.0 s per trial outside steady epochs" in saved


def test_diverged_trials_are_not_counted_as_the_rules_stops(tmp_path):
    trials = _sweep()
    for t in trials:
        if t["number"] == 3:
            t["diverged"] = "training loss 25.3 > 10 x ln 5"
    page = write_report(META, trials, tmp_path).read_text()
    decided = _section(page, "What decided")
    assert "1 by predicted final below the rule's threshold" in decided
    assert "1 by the sweep's divergence check (not the rule)" in decided
    assert "For 1 of them" not in decided  # trial 1's reason is recorded, trial 3 diverged
    assert "diverged: training loss 25.3 &gt; 10 x ln 5 (not the rule)" in _row(page, 3)
    assert "(diverged, pruned at epoch 4: " in _row(page, 3)


def test_minimize_picks_the_lowest_final_and_flags_a_missing_model(tmp_path):
    page = write_report({**META, "direction": "minimize"}, _sweep(), tmp_path).read_text()
    best = page.split("<h2>Best configuration</h2>")[1].split("<h2>")[0]
    assert "Trial 4:" in best and "file not found" in best


def test_no_complete_trial(tmp_path):
    trials = [t for t in _sweep() if t["state"] != "COMPLETE"]
    page = write_report(META, trials, tmp_path).read_text()
    assert "No complete trial: there is no best configuration." in page
    # A stopped trial has no final: nothing to put against its prediction.
    assert "No prediction for a complete trial." in page
    assert not (tmp_path / "report" / "predicted_vs_actual.png").exists()
    assert (tmp_path / "report" / "history.png").exists()


def test_no_trials(tmp_path):
    write_report(META, _sweep(), tmp_path)  # an earlier report's figures must go
    page = write_report(META, [], tmp_path).read_text()
    assert "No trials recorded" in page
    assert _images(page) == []
    assert list((tmp_path / "report").iterdir()) == []


def test_without_beta_predictions_or_metadata(tmp_path):
    trials = [_trial(n, "COMPLETE", 3, 0.5 + 0.1 * n, beta=False, predictions=False)
              for n in range(3)]
    trials.append({"number": 3, "state": "PRUNED"})  # nothing else at all
    page = write_report({}, trials, tmp_path / "new" / "dir").read_text()
    assert "<h2>beta_eff (not measured)</h2>" in page and "No trial measured beta_eff" in page
    assert "No predictions recorded" in page
    assert len(_images(page)) == 4  # curves, panels, history and epochs saved
    assert "Trial 2:" in page


def test_a_curve_predictors_sweep_does_not_say_beta_eff_was_recorded(tmp_path):
    # the default sweep (predictor best) measures no beta_eff; its report said "beta_eff
    # was recorded but played no part" and headed an empty section "(recorded, ...)"
    trials = [_trial(n, "COMPLETE", 3, 0.5 + 0.1 * n, beta=False) for n in range(3)]
    page = write_report(META, trials, tmp_path).read_text()
    decided = _section(page, "What decided")
    assert "beta_eff was not measured" in decided and "was recorded" not in decided
    assert "recorded, not used to decide" not in page
    assert "<h2>beta_eff (not measured)</h2>" in page
    measured = write_report(META, _sweep(), tmp_path / "b").read_text()  # it has beta_eff
    assert "beta_eff was recorded but played no part" in _section(measured, "What decided")


def test_zero_epoch_and_nan_trials_only(tmp_path):
    trials = [{"number": 0, "state": "COMPLETE", "params": {}, "val_accuracy": [],
               "beta_eff": [], "predicted_final": [], "final": None, "seconds": None},
              {"number": 1, "state": "COMPLETE", "params": {"x": 1},
               "val_accuracy": [float("nan"), None], "beta_eff": [None, None],
               "predicted_final": [None, float("nan")], "final": float("nan")}]
    page = write_report(META, trials, tmp_path).read_text()
    assert "No complete trial" in page and "No trial has a final value." in page
    assert len(_images(page)) == 1  # epochs saved only


def test_importing_the_package_does_not_import_matplotlib():
    code = ("import sys, ncp_search, ncp_search.app.report.html; "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _colour_pixels(shot, color: str) -> int:
    import matplotlib.image

    rgb = np.round(matplotlib.image.imread(shot)[..., :3] * 255).astype(int)
    target = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=-1) <= 12).sum())


@pytest.mark.slow
def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH "
                    "(Debian package: chromium)")
    import matplotlib.image

    page = write_report(META, _sweep(), tmp_path / "sweep")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,3000"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=600)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<title>ncp-search report: quick &lt;&amp;&gt; sweep</title>" in dom.stdout
    assert "<h2>Best configuration</h2>" in dom.stdout
    assert "<h2>What decided</h2>" in dom.stdout
    assert len(re.findall(r'<img src="data:image/png;base64,', dom.stdout)) == len(FIGURES)
    assert "<script" not in dom.stdout  # the escaped parameter stays text

    shot = tmp_path / "shot.png"
    done = subprocess.run(flags + [f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (3000, 1200)
    assert pixels.min() < pixels.max()  # not blank
    # The figures were decoded: their state colours (not used by the page's CSS) show.
    for color in ("#1f77b4", "#ff7f0e"):
        assert _colour_pixels(shot, color) > 200, color

    # Each new figure on its own (the others hidden by CSS): Chromium decodes it and
    # draws its curves in the state colours; a broken image would show neither.
    html_text = page.read_text(encoding="utf-8")
    for alt in ("learning curves with stop points", "one panel per trial"):
        alone = page.with_name(f"alone_{alt.split()[0]}.html")
        alone.write_text(html_text.replace(
            "</style>", f'body *{{visibility:hidden}} img[alt="{alt}"]{{visibility:visible;'
            "position:absolute;top:0;left:0;width:1100px}</style>"), encoding="utf-8")
        shot = tmp_path / f"{alone.stem}.png"
        done = subprocess.run(flags + [f"--screenshot={shot}", alone.as_uri()],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
        for color in ("#1f77b4", "#ff7f0e", "#c51b7d"):  # complete, pruned, threshold
            assert _colour_pixels(shot, color) > 20, (alt, color)
