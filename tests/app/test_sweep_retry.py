"""Trials left behind: a retry of a killed trial trains with its seed; a RUNNING
trial that no worker owns is failed and queued again instead of hanging --resume;
the final model is saved atomically and flushed to disk.

The sweeps here run through the real driver, worker loop and storage; ``run_trial``
(the training) is replaced by a cheap stand-in that records its seed."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import ncp_search.app.sweep.optuna_backend as sweep_optuna
import ncp_search.app.sweep.trial as sweep_trial
from ncp_search.app.sweep.folder import ID_ATTR, read_meta
from ncp_search.app.sweep.run import run_sweep
from ncp_search.app.sweep.seeds import trial_seed

BASE = {
    "name": "retry", "seed": 3, "data": {"target": "digits:5-9"},
    "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1}},
    "budget": {"trials": 1, "epochs": 2}, "pruner": {"name": "nop"},
}


@pytest.fixture
def seeds(monkeypatch) -> list[tuple[dict, int]]:
    """(params, seed) of every trial run; each reports its epochs and completes."""
    calls: list[tuple[dict, int]] = []

    def fake_run_trial(config, params, data, on_epoch, *, trial_seed, model_path=None,
                       cache_dir=None):
        calls.append((dict(params), trial_seed))
        info = sweep_trial.EpochInfo(seconds=0.0, train_loss=1.0, val_loss=1.0, diverged=None)
        values = [0.5 + 0.1 * epoch for epoch in range(int(config["budget"]["epochs"]))]
        for epoch, value in enumerate(values):
            on_epoch(epoch, value, 1.0, {}, info)
        return {"val_accuracy": values, "beta_eff": [1.0] * len(values), "seconds": 0.0,
                "epoch_seconds": [0.0] * len(values), "diverged": None, "model_path": None,
                "epochs": len(values)}

    monkeypatch.setattr(sweep_optuna, "run_trial", fake_run_trial)
    monkeypatch.setattr(sweep_trial, "load_data", lambda *a, **k: None)
    return calls


def _config(tmp_path: Path, trials: int) -> Path:
    path = tmp_path / f"retry-{trials}.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output": str(tmp_path / "out"),
                                    "budget": {"trials": trials, "epochs": 2}}))
    return path


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="retry", storage=f"sqlite:///{tmp_path}/out/study.db")


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_the_retry_of_a_killed_trial_trains_with_its_seed(tmp_path, seeds) -> None:
    run_sweep(str(_config(tmp_path, 1)), stream=io.StringIO())
    study = _study(tmp_path)
    # A trial killed during its model save: RUNNING, its worker (on this host) dead.
    killed = study.ask()
    killed.suggest_float("learning_rate", 1e-3, 0.1)
    seed = trial_seed(3, killed.number)
    killed.set_user_attr(sweep_optuna.WORKER_ATTR, f"{socket.gethostname()}:{_dead_pid()}")
    killed.set_user_attr(sweep_optuna.SEED_ATTR, seed)
    for epoch in range(2):
        killed.report(0.9, epoch)
    run_sweep(str(_config(tmp_path, 2)), resume=True, stream=io.StringIO())
    trials = _study(tmp_path).trials
    retry = [t for t in trials if t.user_attrs.get(sweep_optuna.RETRY_ATTR) == killed.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert trials[killed.number].state == TrialState.FAIL
    assert seeds[-1] == (killed.params, seed)  # same configuration, same seed
    assert retry[0].user_attrs[sweep_optuna.SEED_ATTR] == seed
    assert seeds[0][1] == trial_seed(3, 0)  # a first run: the seed of its number


def test_the_final_model_is_flushed_before_it_is_renamed_into_place(tmp_path,
                                                                   monkeypatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    class Model:
        def save(self, path):
            Path(path).write_text("model")
            events.append("saved")

    def fsync(fd):
        events.append("fsync " + os.readlink(f"/proc/self/fd/{fd}").rsplit("/", 1)[-1])
        real_fsync(fd)

    def replace(src, dst):
        events.append("replace")
        real_replace(src, dst)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the flushed files")
    monkeypatch.setattr(sweep_trial.os, "fsync", fsync)
    monkeypatch.setattr(sweep_trial.os, "replace", replace)
    target = tmp_path / "models" / "trial_0001.keras"
    sweep_trial.save_model(Model(), target)
    assert events[0] == "saved" and events[1].startswith("fsync trial_0001.partial-")
    assert events[2:] == ["replace", "fsync models"]
    assert target.read_text() == "model"


def test_sweep_id_is_set_in_the_study(tmp_path, seeds) -> None:
    run_sweep(str(_config(tmp_path, 1)), stream=io.StringIO())
    assert _study(tmp_path).user_attrs[ID_ATTR] == read_meta(tmp_path / "out" / "sweep.json")["id"]


def _ownerless(study: optuna.Study, started_ago_s: float) -> int:
    """A RUNNING trial no worker owns (a notebook's ``study.ask()``), started
    ``started_ago_s`` seconds ago."""
    from datetime import datetime, timedelta

    from optuna.distributions import FloatDistribution
    from optuna.trial import FrozenTrial

    trial = FrozenTrial(
        number=0, state=TrialState.RUNNING, value=None,
        datetime_start=datetime.now() - timedelta(seconds=started_ago_s),
        datetime_complete=None, params={"learning_rate": 0.01},
        distributions={"learning_rate": FloatDistribution(1e-3, 0.1)}, user_attrs={},
        system_attrs={}, intermediate_values={}, trial_id=0)
    study.add_trial(trial)
    return study.trials[-1].number


def test_an_ownerless_running_trial_does_not_hang_resume(tmp_path, seeds, caplog) -> None:
    config = _config(tmp_path, 1)
    run_sweep(str(config), stream=io.StringIO())
    study = _study(tmp_path)
    old = _ownerless(study, started_ago_s=3600)  # over stale_after_s (default 120)
    fresh = _ownerless(study, started_ago_s=0)  # may still be someone's: kept
    # budget.minutes bounds a hang (the bug): the resume must end well before it.
    raw = yaml.safe_load(config.read_text())
    raw["budget"] = {"trials": 3, "epochs": 2, "minutes": 2}
    config.write_text(yaml.safe_dump(raw))
    started = len(seeds)
    from ncp_search.app.sweep import optuna_backend

    real = optuna_backend.fail_ownerless_trials

    def fail_fresh_too(study, grace_s):  # the fresh one ends once the test saw it kept
        failed = real(study, grace_s)
        if not failed and study.trials[fresh].state == TrialState.RUNNING:
            study.tell(fresh, state=TrialState.FAIL)
        return failed

    optuna_backend.fail_ownerless_trials = fail_fresh_too
    try:
        summary = run_sweep(str(config), resume=True, stream=io.StringIO())
    finally:
        optuna_backend.fail_ownerless_trials = real
    trials = _study(tmp_path).trials
    assert trials[old].state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get(sweep_optuna.RETRY_ATTR) == old]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == {"learning_rate": 0.01}
    assert summary["running"] == 0 and len(seeds) > started
    assert not [t for t in trials if t.user_attrs.get(sweep_optuna.RETRY_ATTR) == fresh]
    assert "RUNNING for" in caplog.text and "no worker" in caplog.text


def test_stale_after_s_is_a_bounded_setting(tmp_path) -> None:
    from ncp_search.app.sweep.config import ConfigError, validate_sweep_config

    raw = {k: v for k, v in BASE.items()}
    config = validate_sweep_config({**raw, "optuna": {"stale_after_s": 30}})
    assert sweep_optuna.stale_after(config) == 30
    assert sweep_optuna.stale_after(validate_sweep_config(raw)) == sweep_optuna.GRACE_S
    for bad in (5, 10**9, "1"):
        with pytest.raises(ConfigError, match="stale_after_s"):
            validate_sweep_config({**raw, "optuna": {"stale_after_s": bad}})
