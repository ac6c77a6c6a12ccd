"""Diverged trials (non-finite or chance-level loss) are pruned and named; the summary
warns when the best trial is no better than chance."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

import ncp_search.app.sweep.optuna_backend as backend
from ncp_search.app.sweep.config import validate_sweep_config
from ncp_search.app.sweep.results import format_summary, summarize_sweep
from ncp_search.app.sweep.trial import EpochInfo, divergence

LN5 = math.log(5)


@pytest.mark.parametrize("losses, accuracies, val_loss, expected", [
    ([float("nan")], [0.2], 1.0, "non-finite"),
    ([1.0], [float("nan")], 1.0, "non-finite"),
    ([1.0], [0.5], float("inf"), "non-finite"),
    # learning rates of 0.3 to 100 (digits 5-9, measured): the loss explodes in epoch 1
    ([133.2], [0.41], 2.0, "exploded"),
    ([2.7e11], [0.2], 2.0, "exploded"),
    # stuck at chance after the spike: loss >= ln 5 and not falling, accuracy ~ 0.2
    ([2.27, 1.805, 1.807, 1.81], [0.2, 0.2, 0.2, 0.2], 1.7, "at chance for 2 epochs"),
])
def test_diverged_curves(losses, accuracies, val_loss, expected) -> None:
    reason = divergence(losses, accuracies, val_loss, num_classes=5)
    assert reason is not None and expected in reason


@pytest.mark.parametrize("losses, accuracies", [
    # plain SGD at lr 1e-4 (measured): at chance but its loss falls; slow, not diverged
    ([1.931, 1.91, 1.89, 1.871], [0.205] * 4),
    ([1.5, 0.9, 0.5], [0.5, 0.8, 0.9]),
    ([1.7, 1.7], [0.2, 0.2]),  # one flat epoch at chance is not yet two
    ([1.7, 1.7, 1.7], [0.2, 0.2, 0.6]),  # at chance loss but learning
])
def test_slow_or_learning_curves_are_not_diverged(losses, accuracies) -> None:
    assert divergence(losses, accuracies, 1.0, num_classes=5) is None


def test_optuna_prunes_a_diverged_trial_and_names_why(tmp_path, monkeypatch) -> None:
    config = validate_sweep_config({
        "name": "d", "data": {"target": "digits:5-9"},
        "source": {"zoo": "mlp", "task": "digits:0-4"},
        "search_space": {"learning_rate": {"type": "float", "low": 10.0, "high": 100.0}},
        "budget": {"trials": 1, "epochs": 3}, "pruner": {"name": "nop"},
    })

    def fake_run_trial(config, params, data, on_epoch, **kwargs):
        on_epoch(0, 0.2, 1.0, {}, EpochInfo(1.5, 1e9, 1e9, None))
        on_epoch(1, 0.2, 1.0, {}, EpochInfo(1.0, 1e9, 1e9, "training loss 1e9 exploded"))
        pytest.fail("the trial went on")

    monkeypatch.setattr(backend, "run_trial", fake_run_trial)
    study = optuna.create_study(direction="maximize")
    study.optimize(backend.make_objective(config, None, tmp_path), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert "exploded" in trial.user_attrs[backend.DIVERGED_ATTR]
    assert trial.user_attrs[backend.EPOCH_SECONDS_ATTR] == [1.5, 1.0]


def test_ray_records_a_diverged_trial_as_pruned(tmp_path) -> None:
    pytest.importorskip("ray.tune")
    from types import SimpleNamespace

    from ncp_search.app.sweep.ray_backend import _Session

    config = validate_sweep_config({
        "name": "d", "backend": "ray", "data": {"target": "digits:5-9"},
        "source": {"zoo": "mlp", "task": "digits:0-4"},
        "search_space": {"learning_rate": 50.0}, "budget": {"trials": 1, "epochs": 2},
        "scheduler": {"name": "fifo"},
    })
    session = _Session(config, tmp_path, None)
    trial = SimpleNamespace(trial_id="x_00000", config={}, status="RUNNING")
    session.start(trial)
    session.result(trial, {"val_accuracy": 0.2, "epoch": 0, "epoch_seconds": 1.0})
    session.result(trial, {"val_accuracy": 0.2, "epoch": 1, "epoch_seconds": 1.0,
                           "diverged": "non-finite loss or accuracy"})  # at the last epoch
    session.end(trial, failed=False)
    record = session.records["x_00000"]
    assert record["state"] == "PRUNED" and record["diverged"].startswith("non-finite")
    assert record["epoch_seconds"] == [1.0, 1.0]


def _trial(number, state, values, **extra):
    return {"number": number, "state": state, "params": {}, "val_accuracy": values,
            "final": values[-1] if values else None, "model_path": None, **extra}


def test_summary_warns_when_the_best_is_not_better_than_chance() -> None:
    meta = {"name": "s", "backend": "optuna", "pruner": "nop", "epochs": 2,
            "num_classes": 5}
    trials = [_trial(0, "COMPLETE", [0.2, 0.21]),
              _trial(1, "PRUNED", [0.2], diverged="training loss exploded")]
    summary = summarize_sweep(meta, trials)
    assert summary["chance_accuracy"] == 0.2 and summary["diverged"] == 1
    assert summary["best"]["better_than_chance"] is False
    text = format_summary(summary, "out")
    assert "1 pruned (1 diverged)" in text
    assert "warning: the best trial (0, val_accuracy 0.2100) is not better than chance" in text
    assert "1 trial(s) diverged and were pruned: [1]" in text
    good = summarize_sweep(meta, [_trial(0, "COMPLETE", [0.5, 0.9])])
    assert good["best"]["better_than_chance"] is True and not good["warnings"]
    # Without num_classes in the meta (older sweeps), the config's target says it.
    old = {**meta, "num_classes": None, "config": {"data": {"target": "digits:0,1"}}}
    assert summarize_sweep(old, trials)["chance_accuracy"] == 0.5
