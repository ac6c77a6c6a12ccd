"""Real studies: Keras + NCPCallback + NCPPruner on digits; four workers on one SQLite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import optuna
import pytest

from ncp_search import NCPCallback, NCPPruner
from ncp_search.app.data import load_task
from ncp_search.app.zoo import load_source_model
from ncp_search.engine.finetune import build_trial_models, compile_trial

PERCENTILE = {"rule": "percentile"}  # the rule these tests are about (0.1 default)

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.mark.slow
@pytest.mark.parametrize(("interval", "predictor"), [(1, "best"), (2, "ncp_feature_norm")])
def test_keras_study_with_callback_prunes_and_completes(tmp_path, interval, predictor):
    # interval=2 made every trial FAIL before (steps 1, 3, 5 against reports counted).
    task = load_task("digits:5-9")
    x_probe, y_probe = task.probe_batch(64)
    cache = tmp_path / "zoo"
    load_source_model("mlp", source="digits:0-4", epochs=1, cache_dir=cache)

    def objective(trial):
        config = {
            "optimizer": "sgd",
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 0.3, log=True),
            "batch_size": 64,
        }
        source = load_source_model("mlp", source="digits:0-4", epochs=1, cache_dir=cache)
        models = build_trial_models(source, 5, config, mode="observer", hidden=(16, 16, 16))
        compile_trial(models.trained, config)
        callback = NCPCallback(trial, x_probe, y_probe, probed_model=models.probed,
                               interval=interval)
        history = models.trained.fit(
            task.x_train, task.y_train, validation_data=(task.x_val, task.y_val),
            epochs=6, batch_size=64, verbose=0, callbacks=[callback],
        )
        return history.history["val_accuracy"][-1]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=NCPPruner(**PERCENTILE, n_startup_trials=3, n_warmup_steps=1, max_step=5,
                         predictor=predictor),
        storage=f"sqlite:///{tmp_path / 'study.db'}",
    )
    keras.utils.set_random_seed(0)
    study.optimize(objective, n_trials=10)
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.FAIL not in states
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1
    assert study.best_trial.state == optuna.trial.TrialState.COMPLETE
    for trial in study.trials:
        steps = {str(s) for s in trial.intermediate_values}
        assert set(trial.user_attrs["ncp_probe_terms"]) == steps
        if predictor == "best":  # reads no beta_eff: the callback measures none
            assert "ncp_beta_eff" not in trial.user_attrs
        else:
            assert set(trial.user_attrs["ncp_beta_eff"]) == steps
        assert min(trial.intermediate_values) == interval - 1


def test_missing_monitor_lists_available_metrics():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    callback = NCPCallback(trial, None, None, monitor="val_auc")
    with pytest.raises(ValueError, match=r"available: \['loss'\]"):
        callback.on_epoch_end(0, {"loss": 1.0})


@pytest.mark.slow
def test_four_workers_on_one_sqlite_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="shared", storage=url, direction="maximize")
    worker = Path(__file__).with_name("optuna_worker.py")
    procs = [
        subprocess.Popen([sys.executable, str(worker), url, "shared", "10", str(seed)],
                         stderr=subprocess.PIPE, text=True)
        for seed in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="shared", storage=url)
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == list(range(40))
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(t.state in finished for t in trials)
    for trial in trials:
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(len(steps)))
        betas = trial.user_attrs["ncp_beta_eff"]
        assert sorted(int(s) for s in betas) == steps
        quality = trial.params["quality"]
        for step in steps:  # the history is this trial's own, intact
            assert betas[str(step)] == pytest.approx(1.0 / (step + 1) + quality)
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials)


@pytest.mark.parametrize("storage_kind", ["journal", "memory_threads"])
def test_journal_storage_and_threads(tmp_path, storage_kind):
    from tests.integrations.optuna_worker import objective

    if storage_kind == "journal":
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "journal.log"))
        )
        n_jobs = 1
    else:
        storage, n_jobs = None, 2
    study = optuna.create_study(
        direction="maximize", storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=1),
        pruner=NCPPruner(
            **PERCENTILE, n_startup_trials=3, n_warmup_steps=2, predictor="ncp_hybrid"),
    )
    study.optimize(objective, n_trials=16, n_jobs=n_jobs)
    trials = study.get_trials()
    assert len(trials) == 16
    assert any(t.state == optuna.trial.TrialState.PRUNED for t in trials)
    for trial in trials:
        assert sorted(int(s) for s in trial.user_attrs["ncp_beta_eff"]) == sorted(
            trial.intermediate_values
        )
