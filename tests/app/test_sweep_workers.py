"""Optuna sweep workers: settings from the driver (not the YAML), the budget across
workers, the storage URL off the command line, parent death."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

import ncp_search.app.sweep.optuna_backend as backend
import ncp_search.app.sweep.worker as worker
from ncp_search.app.sweep.config import validate_sweep_config
from ncp_search.app.sweep.secrets import STORAGE_ENV

RAW = {
    "name": "w", "seed": 0, "data": {"target": "digits:5-9"},
    "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
    "budget": {"trials": 10, "epochs": 2},
    "pruner": {"name": "nop"},
}


def _config(tmp_path: Path, **budget: int) -> dict:
    raw = {**RAW, "output": str(tmp_path / "out"), "budget": {**RAW["budget"], **budget}}
    return validate_sweep_config(raw, "w.yaml")


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def test_workers_take_the_drivers_effective_settings_not_the_yaml(tmp_path, monkeypatch):
    # The YAML says 10 trials x 2 epochs; the driver ran with --trials 16 --epochs 4.
    yaml_path = tmp_path / "w.yaml"
    yaml_path.write_text(yaml.safe_dump({**RAW, "output": str(tmp_path / "out")}))
    effective = _config(tmp_path, trials=16, epochs=4)
    url = _url(tmp_path)
    study = backend.open_study(effective, url, create=True)
    backend.publish_run(study, effective, tmp_path / "out", deadline=123.0)
    seen = {}

    def fake_run_worker(config, storage_url, output, **kwargs):
        seen.update(config=config, url=storage_url, output=output, **kwargs)

    monkeypatch.setattr(backend, "run_worker", fake_run_worker)
    monkeypatch.setenv(STORAGE_ENV, url)
    assert worker.main([str(yaml_path), "--worker", "1"]) == 0
    assert seen["config"]["budget"] == {"trials": 16, "epochs": 4, "minutes": None}
    assert seen["deadline"] == 123.0 and seen["worker"] == 1 and seen["url"] == url
    assert Path(seen["output"]) == (tmp_path / "out").resolve()
    # --study alone is enough (no YAML on the worker's machine)
    seen.clear()
    assert worker.main(["--study", "w", "--output", str(tmp_path / "elsewhere")]) == 0
    assert seen["config"]["budget"]["trials"] == 16
    assert seen["output"] == tmp_path / "elsewhere"


def test_a_worker_refuses_a_study_no_driver_started(tmp_path, monkeypatch, capsys):
    optuna.create_study(study_name="w", storage=_url(tmp_path))
    monkeypatch.setenv(STORAGE_ENV, _url(tmp_path))
    assert worker.main(["--study", "w"]) == 2
    assert "holds no sweep settings" in capsys.readouterr().err
    monkeypatch.delenv(STORAGE_ENV)
    assert worker.main(["--study", "w"]) == 2
    assert STORAGE_ENV in capsys.readouterr().err


def test_budget_is_exact_across_concurrent_workers(tmp_path):
    """Workers sharing an output folder check the budget and create their trial under
    a file lock: never more than budget.trials trials, however many workers."""
    config = _config(tmp_path, trials=6)
    url = _url(tmp_path)
    backend.open_study(config, url, create=True)
    errors: list[BaseException] = []

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(backend.WORKER_ATTR, "test:0")
        time.sleep(0.05)
        return trial.suggest_float("x", 0.0, 1.0)

    def work(index: int) -> None:
        try:
            study = backend.open_study(config, url, create=False, worker=index)
            backend._run_trials(study, objective, config, index, None, None,
                                backend.StopAtEpochEnd(),
                                backend.BudgetLock(tmp_path / "out" / backend.BUDGET_LOCK))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    trials = optuna.load_study(study_name="w", storage=url).trials
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)


def test_a_worker_with_no_budget_left_waits_for_running_trials(tmp_path):
    """A running trial may fail and free its slot: a worker waits for it, then runs
    the replacement (the budget is met with finished trials)."""
    config = _config(tmp_path, trials=2)
    url = _url(tmp_path)
    study = backend.open_study(config, url, create=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    other = study.ask()  # another worker's running trial
    threading.Timer(1.0, lambda: study.tell(other, state=TrialState.FAIL)).start()
    ran: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        return trial.suggest_float("x", 0.0, 1.0)

    started = time.time()
    backend._run_trials(backend.open_study(config, url, create=False), objective, config, 0,
                        None, None, backend.StopAtEpochEnd(),
                        backend.BudgetLock(tmp_path / backend.BUDGET_LOCK))
    assert ran == [2] and time.time() - started >= 1.0
    states = [t.state for t in optuna.load_study(study_name="w", storage=url).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


PARENT = """\
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print(child.pid, flush=True)
time.sleep(600)
"""
CHILD = """\
import os, signal, sys, time
from ncp_search.app.sweep.worker import watch_parent
def stop(signum, frame):
    with open(sys.argv[1] + ".tmp", "w") as out:
        out.write("stopped")
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])  # whole, or not there
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
watch_parent(os.getppid())
open(sys.argv[1] + ".ready", "w").write("watching")
time.sleep(600)
"""


def test_a_worker_stops_when_its_driver_is_killed(tmp_path) -> None:
    """kill -9 of the driver: its workers get SIGTERM (stop at the end of the epoch),
    through Linux's parent-death signal or by polling the parent pid."""
    import signal

    marker = tmp_path / "stopped"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(marker)],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        child = int(parent.stdout.readline())
        ready = tmp_path / "stopped.ready"
        deadline = time.time() + 600  # ends a broken run only: waits for the child's word
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the child never installed its watch"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        # Was: the child's marker was opened, then written, and on a loaded machine the
        # test read it in between (empty). It is now renamed into place whole.
        deadline = time.time() + 600  # it stops within a second; a bound on a broken run
        while time.time() < deadline and not marker.exists():
            time.sleep(0.05)
        assert marker.read_text() == "stopped"
    finally:
        if parent.poll() is None:
            parent.kill()
        try:
            os.kill(child, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass


def test_a_dead_workers_running_trial_frees_its_budget_slot(tmp_path) -> None:
    """A trial left RUNNING by a dead worker used to hold its budget slot forever: it
    is failed before the next budget check and its configuration runs again."""
    import socket

    config = _config(tmp_path, trials=2)
    url = _url(tmp_path)
    study = backend.open_study(config, url, create=True)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    orphan = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    orphan.set_user_attr(backend.WORKER_ATTR, f"{socket.gethostname()}:{dead}")

    def objective(trial: optuna.Trial) -> float:
        return trial.suggest_float("x", 0.0, 1.0)

    backend._run_trials(backend.open_study(config, url, create=False), objective, config, 0,
                        None, None, backend.StopAtEpochEnd(),
                        backend.BudgetLock(tmp_path / backend.BUDGET_LOCK))
    trials = optuna.load_study(study_name="w", storage=url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL,
                                         TrialState.COMPLETE]
    assert trials[2].user_attrs[backend.RETRY_ATTR] == 1
    assert trials[2].params == trials[1].params


def test_sigterm_never_interrupts_midway_but_a_second_ctrl_c_does() -> None:
    import signal

    with backend.StopAtEpochEnd() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # parent-death signal + parent watch
        time.sleep(0.1)
        assert stop.requested
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("a Ctrl-C after a stop request must interrupt at once")
        try:
            stop.check()
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("check() must stop once a stop was requested")
