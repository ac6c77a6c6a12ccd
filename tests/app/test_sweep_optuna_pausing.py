"""``pruner: {name: ncp_pause}`` on the Optuna backend of ``ncp-search sweep``: the
config, one worker only, a configuration's chain of trials counted once, a real sweep
whose promoted trials resume from their checkpoints, and a kill -9 then ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ncp_search.app.cli import main
from ncp_search.app.sweep.trial import LIVE_MB_ENV
from ncp_search.integrations.optuna.pausing import (
    PAUSED_ATTR,
    PREDICTED_ATTR,
    RESUMES_ATTR,
    configurations,
)

TRIALS, EPOCHS = 6, 4
# rf 3, rungs at epochs 1 and 3; at least 2 kept of 6: 6 to epoch 1, 2 on to 3 and 4.
# Ties at a cut are kept together: a third on to 3 (2 more epochs) when it ties with the
# second at epoch 1, a third on to 4 (1 more) at 3. The validation set's accuracies come
# in steps of 1/224, so ties happen: planned_epochs() says which.
PLANNED_EPOCHS = 6 * 1 + 2 * 2 + 2 * 1


def planned_epochs(trials: list) -> int:
    """The epochs a plain PausingPolicy (the sweep's settings) plans for the
    configurations' recorded values, fed one configuration at a time in the order they
    first started: the sweep, with its checkpoints and workers, must train exactly those.
    A KeyError means it asked for an epoch the sweep never trained."""
    from ncp_search.core.history import TrialHistory
    from ncp_search.core.pausing import PausingPolicy

    curves: dict[int, dict[int, float]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state != TrialState.FAIL:
            first = trial.user_attrs.get(RESUMES_ATTR, trial.number)
            curves.setdefault(first, {}).update(trial.intermediate_values)
    policy = PausingPolicy(n_trials=TRIALS, max_resource=EPOCHS, reduction_factor=3,
                           first_step=0)
    pending, trained = sorted(curves), {}
    while (job := policy.next_job()) is not None:
        kind, name, _ = job
        if kind == "new":
            name = str(pending.pop(0))
            policy.add(name)
        values = curves[int(name)]
        for step in range(trained.get(name, 0), EPOCHS):
            trained[name] = step + 1
            history = TrialHistory.from_reports({k: values[k] for k in range(step + 1)})
            if policy.report(name, history).action != "continue":
                break
        if trained[name] == EPOCHS:
            policy.complete(name)
    return sum(trained.values())


def pause_config(tmp_path: Path, name: str = "pausing", **pruner: object) -> Path:
    config = {
        "name": name, "seed": 0, "output": str(tmp_path / "out"),
        "data": {"target": "digits:5-9"},
        "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
        "probe": {"hidden": [32, 32, 32], "batch": 128},
        "search_space": {
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
            # no diverging rates: the epochs planned by the policy are then exact
            "learning_rate": {"type": "float", "low": 1e-3, "high": 0.03, "log": True},
        },
        "budget": {"trials": TRIALS, "epochs": EPOCHS},
        "pruner": {"name": "ncp_pause", **pruner},
    }
    path = tmp_path / "pausing.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _study(tmp_path: Path, name: str = "pausing", storage: str | None = None) -> optuna.Study:
    return optuna.load_study(study_name=name,
                             storage=storage or f"sqlite:///{tmp_path / 'out' / 'study.db'}")


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ncp_search.app.cli", *args]


# -- the config ---------------------------------------------------------------------------
def test_ncp_pause_is_an_optuna_pruner_with_the_ray_entrys_policy(tmp_path) -> None:
    from ncp_search.app.sweep.config import load_sweep_config
    from ncp_search.core.pausing import PausingPolicy, auto_keep_min
    from ncp_search.integrations.registry import PAUSE_REDUCTION_FACTOR

    config = load_sweep_config(pause_config(tmp_path, min_resource=2))
    policy = config.choice.make(EPOCHS, n_trials=TRIALS)
    assert isinstance(policy, PausingPolicy)
    assert (policy.n_trials, policy.max_resource, policy.min_resource) == (TRIALS, EPOCHS, 2)
    assert policy.reduction_factor == PAUSE_REDUCTION_FACTOR
    assert policy.keep_min == auto_keep_min(TRIALS) and policy.first_step == 0
    # the rungs a resumed sweep recorded (an older sweep: rf 2, ties by bracket order)
    old = config.choice.make(EPOCHS, n_trials=TRIALS,
                             rungs={"reduction_factor": 2, "keep_ties": False})
    assert (old.reduction_factor, old.keep_ties) == (2.0, False)


@pytest.mark.parametrize("predictor, uses", [("best", False), ("ncp_raw", True)])
def test_a_pausing_studys_log_line_names_the_policy_not_the_nop_pruner(
        tmp_path, caplog, predictor, uses) -> None:
    """The study of an ncp_pause sweep never prunes (its driver pauses and stops the
    trials), but its pruner's line is the first thing a sweep logs: it must name the
    pausing policy (it said 'NopPruner decides from the reported values alone'), and
    what it records must say whether the predictor reads beta_eff."""
    from ncp_search.app.sweep.config import load_sweep_config
    from ncp_search.app.sweep.optuna_backend import make_pruner
    from ncp_search.integrations.optuna.reporting import describe_pruner, pruner_settings

    pruner = make_pruner(load_sweep_config(pause_config(tmp_path, predictor=predictor)))
    line = describe_pruner(pruner)
    assert "NopPruner" not in line and line.startswith(
        f"ncp_pause (predictor={predictor}, min_resource=1) decides")
    assert "pauses" in line and ("uses beta_eff" if uses else "does not use beta_eff") in line
    assert pruner_settings(pruner) == {"class": "PausingPolicy", "uses_beta_eff": uses}
    study = optuna.create_study(direction="maximize", pruner=pruner)
    assert not pruner.prune(study, study.ask())  # the driver decides, never the study


@pytest.mark.parametrize(("setting", "expected"), [
    ({"reduction_factor": 3}, "pruner.reduction_factor: unknown key (not used by this choice)"),
    ({"min_resource": 9}, "pruner.min_resource: 9 exceeds budget.epochs=4"),
    ({"predictor": "xtrial_curve"}, "pruner.predictor: 'xtrial_curve' learns from completed"),
])
def test_a_bad_ncp_pause_setting_exits_2_with_one_line(tmp_path, capsys, setting,
                                                      expected) -> None:
    assert main(["sweep", str(pause_config(tmp_path, **setting))]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_pausing_trial_keeps_its_heartbeat_while_it_trains(tmp_path) -> None:
    """Ask-and-tell trials get no heartbeat from Optuna; the sweep keeps one, so a worker
    that dies on another machine is found stale by the others."""
    import sqlite3

    from ncp_search.app.sweep.optuna_backend import _heartbeat, open_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=open_storage(url), study_name="beat")
    trial = study.ask()
    with _heartbeat(trial):
        pass
    with sqlite3.connect(tmp_path / "study.db") as db:
        rows = db.execute("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = ?",
                          (trial._trial_id,)).fetchone()[0]
    assert rows == 1


def test_a_bad_paused_models_memory_stops_before_any_trial(tmp_path, capsys,
                                                           monkeypatch) -> None:

    monkeypatch.setenv(LIVE_MB_ENV, "lots")
    assert main(["sweep", str(pause_config(tmp_path))]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{LIVE_MB_ENV} must be a number of MB" in err and "'lots'" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_resume_with_another_budget_trials_is_refused(tmp_path) -> None:
    from ncp_search.app.sweep.config import load_sweep_config
    from ncp_search.app.sweep.optuna_backend import PAUSE_TRIALS_ATTR, run_pausing
    from ncp_search.errors import NCPSearchError

    config = load_sweep_config(pause_config(tmp_path))
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(PAUSE_TRIALS_ATTR, TRIALS + 4)  # what the sweep started with
    with pytest.raises(NCPSearchError, match=rf"budget.trials must stay {TRIALS + 4} .* "
                       rf"but got {TRIALS}; resume with --trials {TRIALS + 4}"):
        run_pausing(study, config, data=None, output=tmp_path / "out")  # refused before data
    assert not study.trials


# -- records: a chain counts once ------------------------------------------------------------
def _driver_at_a_rung(tmp_path: Path):
    """A driver whose 4 configurations paused at the first rung, told in order with
    values 0.9, 0.8, 0.1, 0.2: configurations 0 and 1 are promoted, 0 first."""
    from ncp_search.core.pausing import PausingPolicy
    from ncp_search.integrations.optuna.pausing import PausingDriver

    study = optuna.create_study(direction="maximize")

    def driver():
        policy = PausingPolicy(n_trials=4, max_resource=4, reduction_factor=2,
                               keep_min=2, first_step=0, promote_early=False)
        return PausingDriver(study, policy, tmp_path, running=True)

    for value in (0.9, 0.8, 0.1, 0.2):
        paused = driver()
        job = paused.next()
        paused.finish(job, paused.report(job, value))
    return driver()


def test_a_worker_resumes_the_promoted_configuration_it_holds_in_memory_first(
        tmp_path) -> None:
    """With ``--workers N`` a configuration may pause on one worker and be promoted
    while another asks: the worker that kept its model resumes it first (no checkpoint
    to load, no model to build and trace again); a model the study has moved past is
    let go."""
    from ncp_search.app.sweep.optuna_backend import _next_job
    from ncp_search.app.sweep.trial import LiveTrial

    assert _driver_at_a_rung(tmp_path).policy.promoted() == ["0", "1"]
    live = {"1": LiveTrial(models=None, meter=None, epochs=1)}
    job = _next_job(_driver_at_a_rung(tmp_path / "a"), live)
    assert (job.name, job.start, job.stop) == ("1", 1, 2) and "1" in live
    # the study holds 1 epoch of configuration 1, this worker's model 3: stale
    live = {"1": LiveTrial(models=None, meter=None, epochs=3),
            "2": LiveTrial(models=None, meter=None, epochs=1)}  # 2 stays: paused there
    job = _next_job(_driver_at_a_rung(tmp_path / "b"), live)
    assert job.name == "0" and list(live) == ["2"]


def test_a_configuration_another_worker_paused_waits_for_the_new_trials(tmp_path) -> None:
    """Configuration 0 is promoted early (no fifth arrival can push it out) while a new
    trial may still start: the worker that paused it resumes it, from memory, when
    free; another worker starts the new trial first, and resumes it only when nothing
    else is left (from its checkpoint)."""
    from ncp_search.app.sweep.optuna_backend import WORKER_ATTR, _next_job
    from ncp_search.core.pausing import PausingPolicy
    from ncp_search.integrations.optuna.pausing import PausingDriver

    study = optuna.create_study(direction="maximize")

    def driver():
        policy = PausingPolicy(n_trials=5, max_resource=4, reduction_factor=2, keep_min=2,
                               first_step=0)
        return PausingDriver(study, policy, tmp_path, running=True)

    for value in (0.9, 0.8, 0.1, 0.2):
        paused = driver()
        job = paused.next()
        job.trial.set_user_attr(WORKER_ATTR, "host:1")
        paused.finish(job, paused.report(job, value))
    assert driver().policy.promoted() == ["0"]
    job = _next_job(driver(), {}, me="host:2")
    assert job.start == 0 and job.name == "4"  # the fifth configuration, new
    job.trial.set_user_attr(WORKER_ATTR, "host:2")
    job = _next_job(driver(), {}, me="host:2")  # running: nothing else left
    assert (job.name, job.start) == ("0", 1)


def test_a_paused_then_resumed_configuration_is_one_record_with_its_epochs_once() -> None:
    from ncp_search.app.sweep.optuna_backend import CHECKPOINT_SECONDS_ATTR
    from ncp_search.app.sweep.results import optuna_records, summarize_sweep

    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}

    def add(values: dict[int, float], state: TrialState, **attrs: object) -> None:
        study.add_trial(optuna.trial.create_trial(
            params={"x": 0.5}, distributions=dist, intermediate_values=values, state=state,
            value=list(values.values())[-1] if state == TrialState.COMPLETE else None,
            user_attrs={CHECKPOINT_SECONDS_ATTR: 0.25, **attrs}))

    predicted = {PREDICTED_ATTR: 0.55}
    add({0: 0.5}, TrialState.PRUNED, **{PAUSED_ATTR: "checkpoints/0/epoch_0001"},
        **predicted)  # 0
    add({0: 0.3}, TrialState.PRUNED, **{PAUSED_ATTR: "checkpoints/1/epoch_0001",
                                        PREDICTED_ATTR: 0.35})  # 1
    add({1: 0.6}, TrialState.FAIL, **{RESUMES_ATTR: 0})  # 2: interrupted, run again
    add({1: 0.6}, TrialState.PRUNED, **{RESUMES_ATTR: 0, PAUSED_ATTR: "checkpoints/0/e2",
                                        PREDICTED_ATTR: "garbled"})  # 3
    add({2: 0.7, 3: 0.8}, TrialState.COMPLETE, **{RESUMES_ATTR: 0})  # 4
    records = optuna_records(study)
    assert [(r["number"], r["state"]) for r in records] == [
        (0, "COMPLETE"), (1, "PRUNED"), (2, "FAIL")]
    chain = records[0]
    assert chain["trials"] == [0, 3, 4] and chain["pauses"] == 2
    # its rungs: paused after epoch 1 and 2 (a garbled prediction read as none)
    assert chain["rungs"] == [{"epoch": 1, "prediction": 0.55},
                              {"epoch": 2, "prediction": None}]
    assert records[1]["rungs"] == [{"epoch": 1, "prediction": 0.35}]
    assert chain["val_accuracy"] == [0.5, 0.6, 0.7, 0.8] and chain["final"] == 0.8
    assert chain["checkpoint_seconds"] == pytest.approx(0.75)
    summary = summarize_sweep({"name": "s", "backend": "optuna", "epochs": 4}, records)
    assert (summary["trials"], summary["complete"], summary["pruned"]) == (3, 1, 1)
    assert summary["epochs_used"] == 4 + 1 and summary["epochs_without_pruning"] == 8


def test_a_rung_passed_in_the_same_trial_is_in_the_record_with_its_prediction() -> None:
    # A trial promoted as it reached epoch 1 trained on, and paused at epoch 2; its
    # prediction at epoch 1 is in ncp_predicted_history (step 0). Without reading it,
    # the record listed the pause at epoch 2 only.
    from ncp_search.app.sweep.optuna_backend import CHECKPOINT_SECONDS_ATTR
    from ncp_search.app.sweep.results import optuna_records
    from ncp_search.integrations.optuna.pruner import HISTORY_ATTR

    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"x": 0.5}, distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
        intermediate_values={0: 0.5, 1: 0.6}, state=TrialState.PRUNED,
        user_attrs={CHECKPOINT_SECONDS_ATTR: 0.1, PAUSED_ATTR: "checkpoints/0/epoch_0002",
                    PREDICTED_ATTR: 0.65, HISTORY_ATTR: {"0": 0.55, "1": 0.65, "x": 1}}))
    (record,) = optuna_records(study)
    assert record["rungs"] == [{"epoch": 1, "prediction": 0.55},
                               {"epoch": 2, "prediction": 0.65}]


def test_the_report_shows_each_trials_rungs_and_counts_them(tmp_path) -> None:
    from ncp_search.app.report.html import write_report

    def record(number: int, values: list[float], state: str, rungs: list) -> dict:
        return {"number": number, "state": state, "params": {"x": number},
                "val_accuracy": values, "final": values[-1], "rungs": rungs}

    trials = [record(0, [0.5, 0.6, 0.7, 0.8], "COMPLETE",
                     [{"epoch": 1, "prediction": 0.55}, {"epoch": 2, "prediction": None}]),
              record(1, [0.3], "PRUNED", [{"epoch": 1, "prediction": 0.35}])]
    meta = {"name": "s", "backend": "optuna", "epochs": 4, "metric": "val_accuracy",
            "direction": "maximize", "pruner": "ncp_pause"}
    page = write_report(meta, trials, tmp_path).read_text()
    assert "rungs (epoch: predicted final, then)" in page
    assert "1: 0.55, promoted; 2: &ndash;, promoted" in page
    assert "1: 0.35, not promoted" in page
    assert "At the rungs: 3 arrivals; 2 promoted" in page and "1 not promoted" in page
    for trial in trials:
        del trial["rungs"]
    plain = write_report(meta, trials, tmp_path / "plain").read_text()
    assert "rungs (epoch" not in plain and "At the rungs" not in plain


# -- real sweeps ------------------------------------------------------------------------------
def _check_chains(tmp_path: Path,
                  study: optuna.Study | None = None) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, after checking the chains: each resumed trial continues its
    configuration's steps where the previous trial paused."""
    trials = (study or _study(tmp_path)).trials
    by_number = {t.number: t for t in trials}
    done = [t for t in trials if t.state != TrialState.FAIL]
    for trial in done:
        first = trial.user_attrs.get(RESUMES_ATTR)
        if first is None:
            assert min(trial.intermediate_values) == 0
            continue
        before = [t for t in done if t.number < trial.number
                  and first in (t.number, t.user_attrs.get(RESUMES_ATTR))]
        assert PAUSED_ATTR in before[-1].user_attrs and by_number[first].params == trial.params
        assert min(trial.intermediate_values) == max(before[-1].intermediate_values) + 1
        assert trial.user_attrs["ncp_seed"] == by_number[first].user_attrs["ncp_seed"]
    return trials


@pytest.mark.slow
def test_a_pausing_sweep_resumes_promoted_trials_from_their_checkpoints(tmp_path, capsys,
                                                                       monkeypatch) -> None:
    import ncp_search.integrations.ray.checkpoint as checkpoint

    loads = []
    real_load = checkpoint.load_keras
    monkeypatch.setattr(checkpoint, "load_keras",
                        lambda *args, **kwargs: loads.append(args[1]) or real_load(*args,
                                                                                   **kwargs))
    monkeypatch.setenv(LIVE_MB_ENV, "0")  # no model kept in memory: checkpoints
    config = pause_config(tmp_path)
    assert main(["sweep", str(config)]) == 0
    out = capsys.readouterr()
    assert f"/{TRIALS} trials" in out.err and "best: trial" in out.out
    assert " paused, 0 running)" in out.err and "paused (checkpoints kept)" in out.out
    assert f"0/{TRIALS} trials (0 paused, " in out.err  # the first line, not "0 pruned"
    trials = _check_chains(tmp_path)
    resumed = [t for t in trials if RESUMES_ATTR in t.user_attrs]
    assert resumed and all(t.user_attrs["ncp_checkpoint_seconds"] > 0 for t in resumed)
    assert len(loads) == len(resumed)
    assert {t.user_attrs["ncp_resumed_from"] for t in resumed} == {"checkpoint"}
    assert all("ncp_resumed_from" not in t.user_attrs for t in trials
               if RESUMES_ATTR not in t.user_attrs)
    _check_summary(tmp_path, trials)
    # the same sweep with the paused models kept in memory (the default): the same
    # values epoch by epoch, and no checkpoint loaded
    monkeypatch.delenv(LIVE_MB_ENV)
    loads.clear()
    live = tmp_path / "live"
    live.mkdir()
    assert main(["sweep", str(pause_config(live))]) == 0
    live_trials = _check_chains(live)
    assert [t.intermediate_values for t in live_trials] == [
        t.intermediate_values for t in trials]
    assert loads == []
    assert {t.user_attrs["ncp_resumed_from"] for t in live_trials
            if RESUMES_ATTR in t.user_attrs} == {"memory"}
    _check_summary(live, live_trials)


def _check_summary(tmp_path: Path, trials: list) -> None:
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # each configuration once, its epochs once
    assert summary["trials"] == TRIALS and summary["complete"] + summary["pruned"] == TRIALS
    assert summary["epochs_used"] == sum(len(t.intermediate_values) for t in trials)
    assert summary["epochs_used"] == planned_epochs(trials) and summary["complete"] == 2
    assert PLANNED_EPOCHS <= summary["epochs_used"] <= PLANNED_EPOCHS + 3
    # every configuration that did not complete paused (nothing diverged here): counted
    # as paused in summary.json, as the progress line and the summary line say
    paused = sum(1 for chain in configurations(trials) if PAUSED_ATTR in chain[-1].user_attrs)
    assert summary["paused"] == paused == summary["pruned"]
    assert (tmp_path / "out" / summary["best"]["model_path"]).is_file()
    assert main(["report", str(tmp_path / "out")]) == 0


HOOK = """\
# Loaded by the sweep's process (PYTHONPATH): the first trial that resumes a checkpoint
# writes resumed-<n> in NCP_TEST_PAUSE_DIR after its first epoch and waits to be killed.
import os, time

def _install():
    folder = os.environ.get("NCP_TEST_PAUSE_DIR")
    if not folder:
        return
    import ncp_search.app.sweep.optuna_backend as backend

    real = backend.run_trial

    def run_trial(config, params, data, on_epoch, **kwargs):
        def hook(epoch, *args):
            out = on_epoch(epoch, *args)
            if kwargs.get("restore") is not None and not os.listdir(folder):
                open(os.path.join(folder, f"resumed-{epoch}"), "w").close()
                end = time.time() + 900
                while time.time() < end:
                    time.sleep(0.05)
            return out

        return real(config, params, data, hook, **kwargs)

    backend.run_trial = run_trial


_install()
"""


@pytest.mark.slow
def test_kill_9_in_a_resumed_trial_then_resume_loses_and_repeats_nothing(tmp_path) -> None:
    config = pause_config(tmp_path)
    hook, marks = tmp_path / "hook", tmp_path / "marks"
    hook.mkdir()
    marks.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "NCP_TEST_PAUSE_DIR": str(marks),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(_cli("sweep", str(config)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 900  # bounds a broken run only
        while not os.listdir(marks):
            assert proc.poll() is None and time.time() < end, "no resumed trial"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    at_kill = _study(tmp_path).trials
    (killed,) = [t for t in at_kill if t.state == TrialState.RUNNING]
    assert RESUMES_ATTR in killed.user_attrs
    before = {t.number: (t.state, t.intermediate_values) for t in at_kill
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}

    resumed = subprocess.run(_cli("sweep", str(config), "--resume"), env=env,
                             capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    trials = _check_chains(tmp_path)
    assert all((t.state, t.intermediate_values) == before[t.number]
               for t in trials if t.number in before)  # nothing finished changed
    assert trials[killed.number].state == TrialState.FAIL
    again = [t for t in trials if t.number > killed.number
             and t.user_attrs.get(RESUMES_ATTR) == killed.user_attrs[RESUMES_ATTR]]
    # the retry trains the killed piece again from the same checkpoint (its steps first)
    done = sorted(killed.intermediate_values)
    assert sorted(again[0].intermediate_values)[:len(done)] == done
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trials"] == TRIALS + 1 and summary["fail"] == 1  # the killed piece
    assert summary["complete"] + summary["pruned"] == TRIALS
    assert summary["epochs_used"] == planned_epochs(trials)
    assert PLANNED_EPOCHS <= summary["epochs_used"] <= PLANNED_EPOCHS + 3


TWO_WORKERS_HOOK = """\
# Loaded by each worker process (PYTHONPATH): a worker's first trial waits until the
# other worker holds a trial too, so the two train side by side whatever the load.
import os, time

def _install():
    folder = os.environ.get("NCP_TEST_WORKERS_DIR")
    if not folder:
        return
    import ncp_search.app.sweep.optuna_backend as backend

    real = backend._run_job

    def _run_job(*args, **kwargs):
        mark = os.path.join(folder, str(os.getpid()))
        if not os.path.exists(mark):
            open(mark, "w").close()
            end = time.time() + 900
            while len(os.listdir(folder)) < 2 and time.time() < end:
                time.sleep(0.05)
        return real(*args, **kwargs)

    backend._run_job = _run_job


_install()
"""

POSTGRES_ENV = "NCP_SEARCH_TEST_POSTGRES"


@pytest.mark.slow
@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_two_workers_pause_and_resume_one_policy(tmp_path, storage) -> None:
    """``--workers 2``: each worker asks its trials from one policy rebuilt from the
    study, so the sweep trains exactly the epochs one worker would, every chain
    continues its steps, and both workers trained."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    name, url = "pausing", None
    if storage == "postgresql":
        url = os.environ.get(POSTGRES_ENV)
        if not url:
            pytest.skip(f"set {POSTGRES_ENV} to a PostgreSQL URL (.ci/run starts one on "
                        "loopback with .ci/postgres.sh)")
        name = f"pause_{os.getpid()}_{int(time.time())}"
        env["NCP_SEARCH_STORAGE"] = url
    config = pause_config(tmp_path, name=name)
    hook, marks = tmp_path / "hook", tmp_path / "marks"
    hook.mkdir()
    marks.mkdir()
    (hook / "sitecustomize.py").write_text(TWO_WORKERS_HOOK)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(hook), env.get("PYTHONPATH", ""))
                                        if p)
    env["NCP_TEST_WORKERS_DIR"] = str(marks)
    result = subprocess.run(_cli("sweep", str(config), "--workers", "2"), env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    study = _study(tmp_path, name, url)
    trials = _check_chains(tmp_path, study)
    assert all(t.state != TrialState.RUNNING for t in trials)
    workers = {t.user_attrs["ncp_worker"] for t in trials}
    assert len(workers) == 2 and len(os.listdir(marks)) == 2, workers
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["trials"] == TRIALS and summary["complete"] == 2
    assert summary["epochs_used"] == planned_epochs(trials)  # as one worker trains
    assert PLANNED_EPOCHS <= summary["epochs_used"] <= PLANNED_EPOCHS + 3
    assert summary["epochs_used"] == sum(len(t.intermediate_values) for t in trials
                                         if t.state != TrialState.FAIL)
