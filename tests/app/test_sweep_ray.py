"""The Ray Tune backend of ``ncp-search sweep``: domains, schedulers, records, real runs."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")

from ray.tune.schedulers import (  # noqa: E402
    AsyncHyperBandScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
)
from ray.tune.search.variant_generator import generate_variants  # noqa: E402

from ncp_search.app.sweep.config import ConfigError, validate_sweep_config  # noqa: E402
from ncp_search.app.sweep.ray_backend import (  # noqa: E402
    _Session,
    concurrency,
    describe_scheduler,
    make_scheduler,
    make_search_alg,
    param_space,
    trial_number,
)
from ncp_search.integrations.ray.scheduler import NCPScheduler  # noqa: E402

ROOT = Path(__file__).parents[2]


def make_config(scheduler=None, space=None, **top):
    raw = {
        "name": "t", "backend": "ray", "data": {"target": "digits:5-9"},
        "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
        "budget": {"trials": 4, "epochs": 3},
        "search_space": space or {
            "learning_rate": {"type": "float", "low": 1e-3, "high": 0.3, "log": True},
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        },
        **top,
    }
    if scheduler is not None:
        raw["scheduler"] = scheduler
    return validate_sweep_config(raw)


# -- describe_scheduler / make_scheduler -----------------------------------------------
def test_describe_scheduler_names_the_used_settings():
    assert describe_scheduler(make_config()) == "ncp_pause (predictor=best, grace_period=1)"
    assert describe_scheduler(make_config({"name": "ncp"})) == (
        "ncp (predictor=best, grace_period=1, reduction_factor=3)")
    assert describe_scheduler(make_config({"name": "ncp_percentile"})) == (
        "ncp_percentile (predictor=best, percentile=50.0, grace_period=1)")
    assert describe_scheduler(make_config({"name": "ncp_asha", "grace_period": 1})) == (
        "ncp_asha (predictor=best, grace_period=1, reduction_factor=3)")
    assert describe_scheduler(make_config({"name": "fifo"})) == "fifo"


def test_make_scheduler_ncp_rules_and_state_path(tmp_path):
    config = make_config({"name": "ncp_percentile", "grace_period": 1, "percentile": 30})
    scheduler = make_scheduler(config, tmp_path / "state.jsonl")
    assert type(scheduler) is NCPScheduler
    settings = scheduler.settings()
    assert (settings["rule"], settings["max_t"], settings["grace_period"]) == ("percentile", 3, 1)
    assert settings["percentile"] == 30.0 and settings["time_attr"] == "training_iteration"
    journal = scheduler._records.journal
    assert journal is not None and journal.path == str(tmp_path / "state.jsonl")
    asha = make_scheduler(make_config({"name": "ncp_asha", "reduction_factor": 2}))
    assert asha.settings()["rule"] == "asha" and asha.settings()["reduction_factor"] == 2.0
    assert asha._records.journal is None
    default = make_scheduler(make_config({"name": "ncp"})).settings()
    assert (default["rule"], default["grace_period"], default["reduction_factor"]) == (
        "asha", 1, 3.0)


@pytest.mark.parametrize("name, kind", [
    ("fifo", FIFOScheduler), ("async_hyperband", AsyncHyperBandScheduler),
    ("hyperband", HyperBandScheduler), ("median_stopping", MedianStoppingRule),
])
def test_make_scheduler_builtin(name, kind):
    scheduler = make_scheduler(make_config({"name": name}))
    assert type(scheduler) is kind
    # metric and mode come from TuneConfig
    assert scheduler.set_search_properties("val_accuracy", "max")


def test_make_scheduler_refuses_a_grace_period_past_the_budget():
    with pytest.raises(ConfigError, match="grace_period"):
        make_scheduler(make_config({"name": "ncp", "grace_period": 4}))


# -- param_space / search algorithm ------------------------------------------------------
def _samples(domain, n=400, seed=0):
    return domain.sample(size=n, random_state=np.random.default_rng(seed))


def test_param_space_domains_match_the_config():
    space = param_space(make_config(space={
        "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "batch_size": {"type": "int", "low": 16, "high": 18},
        "head_units": {"type": "int", "low": 2, "high": 9, "log": True},
        "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
        "schedule": "cosine",
        "weight_decay": {"type": "float", "low": 0.01, "high": 0.01},
    }))
    lr = np.array(_samples(space["learning_rate"]))
    assert lr.min() >= 1e-4 and lr.max() <= 1e-1 and np.median(lr) < 0.01  # log scale
    dropout = np.array(_samples(space["dropout"]))
    assert dropout.min() >= 0.0 and dropout.max() <= 0.5
    assert set(_samples(space["batch_size"])) == {16, 17, 18}  # high is inclusive
    assert set(_samples(space["head_units"], 2000)) == set(range(2, 10))
    assert set(_samples(space["optimizer"])) == {"sgd", "adam"}
    assert space["schedule"] == "cosine" and space["weight_decay"] == 0.01


def test_param_space_sampling_is_seeded():
    space = param_space(make_config())

    def draw(seed):
        rng = np.random.default_rng(seed)
        spec = {"config": space}
        return [generate_variants(spec, random_state=rng).__next__()[1]["config"]
                for _ in range(3)]

    assert draw(1) == draw(1) and draw(1) != draw(2)
    search = make_search_alg(make_config(seed=7), max_concurrent=2)
    assert search.max_concurrent == 2


def test_concurrency_and_trial_numbers():
    config = make_config(ray={"max_concurrent_trials": 3})
    assert concurrency(config, 4) == 4
    assert concurrency(config, 1) == 3  # --workers 1 (the default) defers to the config
    assert concurrency(make_config(), 1) == 1
    assert concurrency(make_config(), None) is None
    assert trial_number("3f2a1_00007") == 7
    assert isinstance(trial_number("odd"), int)


def test_application_sources_are_resized_in_the_trial_as_load_data_would():
    from ncp_search.app.sweep.ray_backend import _resized
    from ncp_search.app.sweep.trial import load_data

    config = make_config(probe={"batch": 16})
    resized = _resized(load_data(config), (32, 32, 3))
    expected = load_data(config, (32, 32, 3))
    assert resized.task.x_train.shape == expected.task.x_train.shape
    assert resized.task.x_train.shape[1:] == (32, 32, 3)
    np.testing.assert_allclose(resized.task.x_val, expected.task.x_val, atol=1e-5)
    np.testing.assert_allclose(resized.x_probe, expected.x_probe, atol=1e-5)
    np.testing.assert_array_equal(resized.y_probe, expected.y_probe)


# -- records ------------------------------------------------------------------------------
def _trial(trial_id, **config):
    return SimpleNamespace(trial_id=trial_id, config=config, status="RUNNING")


def test_session_records_states_restarts_and_strict_json(tmp_path):
    config = make_config({"name": "ncp", "grace_period": 1})
    stream = io.StringIO()
    from ncp_search.app.sweep.progress import ProgressLine

    session = _Session(config, tmp_path, ProgressLine(4, 3, stream))
    done, pruned, failed, cut = (_trial(f"ab_0000{i}", learning_rate=np.float64(0.1))
                                 for i in range(4))
    for trial in (done, pruned, failed, cut):
        session.start(trial)
    for epoch, value in enumerate([0.5, 0.6, 0.7]):
        session.result(done, {"val_accuracy": value, "beta_eff": 1.0, "epoch": epoch,
                              "time_total_s": 1.0 + epoch})
    session.result(done, {"val_accuracy": 0.8, "beta_eff": 1.0, "epoch": 2,
                          "model_path": "models/trial_ab_00000.keras"})  # a restart
    session.end(done, failed=False)
    session.result(pruned, {"val_accuracy": float("nan"), "beta_eff": 2.0, "epoch": 0})
    session.end(pruned, failed=False)
    session.result(failed, {"val_accuracy": 0.4, "epoch": 0})
    session.end(failed, failed=True)
    session.result(cut, {"val_accuracy": 0.3, "beta_eff": 0.5, "epoch": 0})
    session.finish()
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    records = {r["number"]: r for r in map(json.loads, lines)}
    assert [records[i]["state"] for i in range(4)] == ["COMPLETE", "PRUNED", "FAIL", "FAIL"]
    assert records[0]["val_accuracy"] == [0.5, 0.6, 0.8] and records[0]["final"] == 0.8
    assert records[0]["model_path"] == "models/trial_ab_00000.keras"
    assert records[0]["params"] == {"learning_rate": 0.1}
    # no scheduler here: the display shows what an NCPScheduler recorded, nothing else
    assert records[0]["predicted_final"] == [None, None, None]
    assert records[1]["val_accuracy"] == [None] and records[1]["final"] is None
    assert records[2]["beta_eff"] == [None]
    assert records[3]["model_path"] is None
    assert "NaN" not in "".join(lines)
    assert "1 failed" not in stream.getvalue() and "2 failed" in stream.getvalue()
    # resume: the records come back by trial id
    again = _Session(config, tmp_path, None)
    again.load()
    assert set(again.records) == {t.trial_id for t in (done, pruned, failed, cut)}


def test_a_ray_record_says_which_epochs_began_a_resume(tmp_path):
    # the first epoch after a resume (from memory or a checkpoint) is left out of the
    # trial's steady epoch time, as its first epoch is
    session = _Session(make_config(), tmp_path, None)
    trial = _trial("ab_00000")
    session.start(trial)
    for epoch, seconds, extra in [(0, 3.0, {}), (1, 5.0, {"resumed_from": "checkpoint"}),
                                  (2, 1.0, {}), (3, 2.0, {"resumed_from": "memory"})]:
        session.result(trial, {"val_accuracy": 0.5, "epoch": epoch, "epoch_seconds": seconds,
                               "time_total_s": 11.0, **extra})
    record = session.records["ab_00000"]
    assert record["resumed_at"] == [1, 3]
    [status] = session.statuses()
    assert status.resumed_at == (1, 3)
    # a restart from an earlier epoch reports them again: what came after goes
    session.result(trial, {"val_accuracy": 0.5, "epoch": 2, "epoch_seconds": 1.0})
    assert record["resumed_at"] == [1]


def test_the_progress_shows_trials_a_pausing_scheduler_holds_as_paused(tmp_path):
    """On Tune a paused trial stays RUNNING until it resumes or the experiment ends; the
    progress line showed it as running. Now, as on Optuna, it shows as paused."""
    from ncp_search.app.sweep.progress import summarize
    from ncp_search.core.history import TrialHistory
    from ncp_search.core.pausing import PausingPolicy

    policy = PausingPolicy(n_trials=3, max_resource=3, reduction_factor=3, keep_min=1)
    session = _Session(make_config(), tmp_path, None,
                       scheduler=SimpleNamespace(policy=policy))
    trials = [_trial(f"ab_0000{i}") for i in range(3)]
    for trial, value in zip(trials, (0.5, 0.6, 0.7)):
        policy.add(trial.trial_id)
        session.start(trial)
        session.result(trial, {"val_accuracy": value, "epoch": 0})
        policy.report(trial.trial_id, TrialHistory.from_reports({1: value}))
    summary = summarize(session.statuses(), 3)
    # the best goes on (running), the other two are paused for good
    assert (summary["running"], summary["paused"], summary["pruned"]) == (1, 2, 2)
    for trial in trials[:2]:  # Tune ends them with the experiment: still paused
        session.end(trial, failed=False)
    summary = summarize(session.statuses(), 3)
    assert (summary["running"], summary["paused"], summary["pruned"]) == (1, 2, 2)
    from ncp_search.app.sweep.results import format_summary, summarize_sweep

    meta = {"name": "t", "backend": "ray", "pruner": "ncp_pause", "epochs": 3}
    text = format_summary(summarize_sweep(meta, list(session.records.values())), "x")
    assert "3 trials: 0 complete, 2 paused (checkpoints kept), 0 failed" in text
    plain = _Session(make_config({"name": "ncp"}), tmp_path, None)
    plain.start(trials[0])
    assert summarize(plain.statuses(), 3)["running"] == 1


# -- real runs ------------------------------------------------------------------------------
SWEEP_YAML = """\
name: ray-e2e
backend: ray
seed: 0
output: {output}
data: {{target: "digits:5-9"}}
source: {{zoo: mlp, task: "digits:0-4", epochs: 10}}
probe: {{hidden: [16, 16, 16], batch: 64}}
search_space:
  learning_rate: {{type: float, low: 1.0e-3, high: 0.3, log: true}}
  optimizer: {{type: categorical, choices: [sgd, adam]}}
budget: {{trials: {trials}, epochs: {epochs}}}
scheduler: {{name: ncp, grace_period: 1}}
"""


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory):
    from ncp_search.app.zoo import load_source_model

    cache = tmp_path_factory.mktemp("zoo")
    load_source_model("mlp", source="digits:0-4", epochs=10, cache_dir=cache)  # warm
    return str(cache)


def _write_config(tmp_path, trials=4, epochs=3):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP_YAML.format(output=tmp_path / "out", trials=trials, epochs=epochs))
    return path


def _read_records(output):
    lines = (Path(output) / "trials.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_ray_sweep_end_to_end(tmp_path, zoo_cache):
    from ncp_search.app.sweep.run import run_sweep

    stream = io.StringIO()
    summary = run_sweep(str(_write_config(tmp_path)), backend="ray", workers=2,
                        cache_dir=zoo_cache, stream=stream)
    output = tmp_path / "out"
    assert summary["trials"] == 4 and summary["backend"] == "ray"
    assert summary["complete"] + summary["pruned"] + summary["fail"] + summary["running"] == 4
    assert summary["fail"] == 0 and summary["running"] == 0 and summary["complete"] >= 1
    records = _read_records(output)
    assert sorted(r["number"] for r in records) == [0, 1, 2, 3]
    for record in records:
        n = len(record["val_accuracy"])
        assert 1 <= n <= 3 and len(record["beta_eff"]) == n
        assert record["state"] == ("COMPLETE" if n == 3 else "PRUNED")
        if record["state"] == "PRUNED" and not record["diverged"]:
            # NCPScheduler's decision at the stop, from its journal, as the report draws it
            stop = record["stop"]
            assert stop["epoch"] == n and stop["reason"] in ("below", "below_incumbent")
            assert stop["reason"] != "below" or stop["threshold"] > stop["value"]
        assert set(record["params"]) == {"learning_rate", "optimizer"}
        assert record["seconds"] > 0
    best = summary["best"]
    assert best is not None and (output / best["model_path"]).is_file()
    assert (output / "ncp_scheduler.jsonl").is_file()
    assert "4/4 trials" in stream.getvalue()


DRIVER = """\
import sys
from ncp_search.app.sweep.run import run_sweep

try:
    run_sweep(sys.argv[1], workers=2, cache_dir=sys.argv[2])
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.slow
def test_ray_sweep_interrupted_and_resumed(tmp_path, zoo_cache):
    from ncp_search.app.sweep.run import run_sweep

    config = _write_config(tmp_path, trials=4, epochs=3)
    output = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(config), zoo_cache], cwd=str(ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    deadline = time.time() + 1200  # bounds a broken run only: it waits for a record
    before: list = []
    try:
        while time.time() < deadline and driver.poll() is None:
            time.sleep(0.5)
            try:
                before = [r for r in _read_records(output)
                          if r["state"] in ("COMPLETE", "PRUNED")]
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            if before:
                break
        assert before, "the sweep finished no trial"
        driver.send_signal(signal.SIGINT)  # Ctrl-C on the driver: Tune saves its state
        _, err = driver.communicate(timeout=600)  # bounds a broken run only
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 130, err.decode()[-3000:]
    interrupted = {r["number"]: r for r in _read_records(output)}
    finished = {n: r for n, r in interrupted.items() if r["state"] in ("COMPLETE", "PRUNED")}
    assert finished and len(finished) < 4
    models = {n: os.stat(output / r["model_path"]).st_mtime_ns
              for n, r in finished.items() if r["model_path"]}

    summary = run_sweep(str(config), workers=2, resume=True, cache_dir=zoo_cache,
                        stream=io.StringIO())
    after = {r["number"]: r for r in _read_records(output)}
    assert sorted(after) == list(range(4)) and summary["trials"] == 4
    assert summary["fail"] == 0 and summary["running"] == 0
    for number, record in finished.items():  # kept, not run again
        assert after[number] == record
    for number, mtime in models.items():
        assert os.stat(output / after[number]["model_path"]).st_mtime_ns == mtime
    assert all(not math.isnan(r["seconds"]) for r in after.values())


def test_a_finished_record_never_changes_on_resume(tmp_path):
    """Tune re-runs a trial whose end it had not saved before the interruption: the
    record (state, curve, model link) stays as it was and the trial replays."""
    from ncp_search.app.sweep import ray_backend

    config = make_config({"name": "ncp", "grace_period": 1})
    first = _Session(config, tmp_path, None)
    done, pruned, cut = (_trial(f"ab_0000{i}", learning_rate=0.1) for i in range(3))
    for trial in (done, pruned, cut):
        first.start(trial)
    for epoch in range(3):
        first.result(done, {"val_accuracy": 0.5 + 0.1 * epoch, "beta_eff": 1.0,
                            "epoch": epoch, "time_total_s": 1.0 + epoch,
                            **({"model_path": "models/trial_ab_00000.keras"}
                               if epoch == 2 else {})})
    first.end(done, failed=False)
    first.result(pruned, {"val_accuracy": 0.2, "beta_eff": 1.0, "epoch": 0})
    first.end(pruned, failed=False)
    first.result(cut, {"val_accuracy": 0.3, "beta_eff": 1.0, "epoch": 0})
    first.write()  # killed here: cut is RUNNING in the file
    before = {r["trial_id"]: r for r in _read_records(tmp_path)}

    again = _Session(config, tmp_path, None)
    again.load()
    assert again.frozen == {done.trial_id, pruned.trial_id}
    replay = again.finished()
    assert replay[done.trial_id]["model_path"] == "models/trial_ab_00000.keras"
    for trial in (done, pruned, cut):  # Tune runs all three again
        again.start(trial)
    again.result(done, {"val_accuracy": 0.1, "beta_eff": 9.0, "epoch": 0})
    again.end(done, failed=True)
    again.result(pruned, {"val_accuracy": 0.9, "beta_eff": 9.0, "epoch": 0})
    again.end(pruned, failed=False)
    again.finish()
    after = {r["trial_id"]: r for r in _read_records(tmp_path)}
    assert after[done.trial_id] == before[done.trial_id]
    assert after[pruned.trial_id] == before[pruned.trial_id]
    assert after[cut.trial_id]["state"] == "FAIL" and after[cut.trial_id]["model_path"] is None

    # The trainable replays a finished trial's epochs instead of training it.
    reported = []
    import ray.tune

    monkey = pytest.MonkeyPatch()
    monkey.setattr(ray_backend.tune, "report", reported.append)
    try:
        ray_backend._replay(replay[done.trial_id])
    finally:
        monkey.undo()
    assert [r["val_accuracy"] for r in reported] == pytest.approx([0.5, 0.6, 0.7])
    assert reported[-1]["model_path"] == "models/trial_ab_00000.keras"
    assert all(r["replayed"] for r in reported) and ray.tune is not None


def test_reconcile_rebuilds_a_running_record_that_tune_saw_finish(tmp_path):
    config = make_config({"name": "fifo"})
    folder = tmp_path / "trial"
    folder.mkdir()
    rows = [{"val_accuracy": 0.5 + 0.1 * e, "beta_eff": 1.0, "epoch": e,
             "time_total_s": 1.0 + e} for e in range(3)]
    (folder / "result.json").write_text("\n".join(json.dumps(r) for r in rows))
    trial = SimpleNamespace(trial_id="ab_00001", config={"learning_rate": 0.1},
                            status="TERMINATED", local_path=str(folder))
    session = _Session(config, tmp_path, None)
    session.start(trial)
    session.result(trial, rows[0])  # the driver died before recording the rest
    session.reconcile([trial])
    record = session.records["ab_00001"]
    assert record["state"] == "COMPLETE" and record["val_accuracy"] == [0.5, 0.6, 0.7]


def test_stale_running_records_read_back_as_failed(tmp_path):
    import socket

    from ncp_search.app.sweep.results import fail_if_stale

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    now = time.time()
    host = socket.gethostname()
    alive = {"state": "RUNNING", "driver": f"{host}:{os.getpid()}", "heartbeat": now - 5,
             "model_path": None}
    assert fail_if_stale(alive, now)["state"] == "RUNNING"
    assert fail_if_stale({**alive, "driver": f"{host}:{dead}"}, now)["state"] == "FAIL"
    assert fail_if_stale({**alive, "heartbeat": now - 600}, now)["stale"] is True
    assert fail_if_stale({**alive, "heartbeat": None}, now)["state"] == "FAIL"
    assert fail_if_stale({"state": "COMPLETE", "model_path": "m"}, now)["model_path"] == "m"


def _journal_stops(path):
    """Trials the NCPScheduler's journal records as stopped, and its num_stopped once
    restored from that journal."""
    events = [json.loads(line) for line in Path(path).read_text().splitlines()[1:]
              if line.strip()]
    stopped = {e["id"] for e in events if e.get("e") == "decision" and e.get("stop")}
    scheduler = NCPScheduler(metric="val_accuracy", mode="max", max_t=3,
                             state_path=str(path))  # the sweep's scheduler: ncp, the default
    scheduler._load_once()
    return stopped, scheduler.state()["num_stopped"]


@pytest.mark.slow
def test_ray_sweep_killed_9_and_resumed_keeps_every_complete_trial(tmp_path, zoo_cache):
    from ncp_search.app.sweep.run import run_sweep

    config = _write_config(tmp_path, trials=4, epochs=3)
    output = tmp_path / "out"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(config), zoo_cache], cwd=str(ROOT),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.time() + 1200  # bounds a broken run only: it waits for a record
    complete: list = []
    try:
        while time.time() < deadline and driver.poll() is None:
            time.sleep(0.3)
            try:
                complete = [r for r in _read_records(output) if r["state"] == "COMPLETE"]
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            if complete:
                break
        assert complete, "the sweep completed no trial"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait()
    before = {r["number"]: r for r in _read_records(output)}
    complete_before = {n: r for n, r in before.items() if r["state"] == "COMPLETE"}
    models = {n: os.stat(output / r["model_path"]).st_mtime_ns
              for n, r in complete_before.items()}
    assert models and len(before) <= 4

    summary = run_sweep(str(config), workers=2, resume=True, cache_dir=zoo_cache,
                        stream=io.StringIO())
    after = {r["number"]: r for r in _read_records(output)}
    assert sorted(after) == list(range(4)) and summary["trials"] == 4
    assert summary["running"] == 0
    for number, record in complete_before.items():  # no COMPLETE trial changes
        assert after[number] == record
        assert os.stat(output / record["model_path"]).st_mtime_ns == models[number]
    stopped, num_stopped = _journal_stops(output / "ncp_scheduler.jsonl")
    assert num_stopped == len(stopped)  # each stopped trial counted once


def test_ncp_pause_builds_a_pausing_scheduler_over_the_sweeps_trials():
    from ncp_search.core.pausing import PausingPolicy

    scheduler = make_scheduler(make_config({"name": "ncp_pause"}))
    assert isinstance(scheduler.policy, PausingPolicy)
    settings = scheduler.settings()
    assert (settings["rule"], settings["reduction_factor"], settings["first_step"]) == (
        "pause", 3.0, 1)
    assert settings["n_trials"] == make_config({"name": "ncp_pause"})["budget"]["trials"]


def test_an_older_pausing_sweep_resumed_keeps_the_rungs_it_ran_with(tmp_path):
    # Was: a sweep started with reduction factor 2 (sweep.json without pause_settings)
    # and resumed after the default became 3 was rebuilt with rungs it never ran.
    from ncp_search.app.sweep.folder import pause_rungs

    config = make_config({"name": "ncp_pause"})
    assert pause_rungs(tmp_path) == {}  # no sweep.json: the defaults
    meta = {"name": "x", "backend": "ray", "config": {}, "epochs": 4}
    (tmp_path / "sweep.json").write_text(json.dumps(meta))
    old = make_scheduler(config, rungs=pause_rungs(tmp_path))
    assert (old.policy.reduction_factor, old.policy.keep_ties) == (2.0, False)
    meta["pause_settings"] = {"reduction_factor": 3, "keep_min": 2, "keep_ties": True}
    (tmp_path / "sweep.json").write_text(json.dumps(meta))
    new = make_scheduler(config, rungs=pause_rungs(tmp_path))
    assert (new.policy.reduction_factor, new.policy.keep_ties) == (3.0, True)


def test_a_diverged_epoch_reaches_a_pausing_scheduler_as_nan_and_stops_the_trial(
        monkeypatch, tmp_path):
    # Was: the trainable reported the diverged epoch's accuracy (0.2) without a
    # checkpoint; at a rung ncp_pause paused it, and NoCheckpointError ended the sweep.
    import ncp_search.app.sweep.ray_backend as backend
    import ncp_search.app.sweep.trial as trial_module
    from ncp_search.app.sweep.trial import EpochInfo

    reports = []
    monkeypatch.setattr(backend.tune, "report", lambda metrics, checkpoint=None: reports.append(
        (metrics, checkpoint)))
    monkeypatch.setattr(backend.tune, "get_context", lambda: SimpleNamespace(
        get_trial_id=lambda: "t_00000"))
    monkeypatch.setattr(backend.tune, "get_checkpoint", lambda: None)

    def diverging(sweep, params, data, on_epoch, **kwargs):
        on_epoch(0, 0.2, 1.0, {}, EpochInfo(0.1, math.nan, math.nan, "loss is nan"))
        return {"model_path": None}

    monkeypatch.setattr(trial_module, "run_trial", diverging)
    config = make_config({"name": "ncp_pause"})
    backend._train({"learning_rate": 0.3, "optimizer": "sgd"}, data=None, sweep=config,
                   output=str(tmp_path), cache_dir=None, checkpoint=(1, 2))
    ((metrics, checkpoint),) = reports
    assert math.isnan(metrics[backend.METRIC]) and checkpoint is None
    assert metrics[backend.DIVERGED_VALUE] == 0.2 and metrics["diverged"] == "loss is nan"
    scheduler = make_scheduler(config)
    scheduler.set_search_properties(backend.METRIC, backend.MODE)
    trial = SimpleNamespace(trial_id="t_00000", status="RUNNING")
    scheduler.on_trial_add(None, trial)
    result = {**metrics, backend.TIME_ATTR: 1, "checkpoint_dir_name": None}
    assert scheduler.on_trial_result(None, trial, result) == "STOP"


def test_a_local_ray_sweep_starts_its_workers_at_normal_priority(monkeypatch):
    # Ray's default (nice 15) left a trial's actor 2-4% of a core beside two busy
    # processes: the example's sweep made no progress in 14 minutes.
    import os

    import ncp_search.app.sweep.ray_backend as backend

    seen = []
    monkeypatch.delenv(backend.WORKER_NICENESS_ENV, raising=False)
    monkeypatch.setattr(backend.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(backend.ray, "init", lambda **kwargs: seen.append(
        (kwargs.get("address"), os.environ.get(backend.WORKER_NICENESS_ENV))))
    assert backend._init_ray(None, 2)
    monkeypatch.setenv(backend.WORKER_NICENESS_ENV, "10")  # the user's value is kept
    assert backend._init_ray(None, 2)
    monkeypatch.delenv(backend.WORKER_NICENESS_ENV)
    assert backend._init_ray("ray://cluster:10001", 2)  # a cluster's own settings
    assert seen == [(None, "0"), (None, "10"), ("ray://cluster:10001", None)]


def test_a_paused_trial_resumes_from_its_actors_memory_when_the_state_matches(monkeypatch,
                                                                             tmp_path):
    # Was: every resume built, compiled and traced the model again and loaded its
    # checkpoint (1-7 epochs of the small models), though Tune reuses the actor.
    import ncp_search.app.sweep.ray_backend as backend
    import ncp_search.app.sweep.trial as trial_module
    from ncp_search.app.sweep.trial import EpochInfo, LiveTrial

    paused = LiveTrial(models="models at epoch 1", meter=None, epochs=1)
    monkeypatch.setattr(LiveTrial, "nbytes", property(lambda self: 10))
    reports, calls = [], []

    def report(metrics, checkpoint=None):
        reports.append(metrics)
        if checkpoint is not None:
            raise SystemExit(0)  # Tune pauses the trial: its thread ends here

    def fake_run(sweep, params, data, on_epoch, **kwargs):
        calls.append(kwargs["live"])
        kept = kwargs["live"]  # else it restores its checkpoint
        restored = checkpoints["t_00000"]
        start = kept.epochs if kept is not None else int(restored.split()[1]) if restored else 0
        for epoch in range(start, 2):
            live = paused if epoch == 0 else LiveTrial("models at epoch 2", None, 2)
            on_epoch(epoch, 0.5, 1.0, {}, EpochInfo(0.1, 0.3, 0.3, None, live=live))
        return {"model_path": None}

    checkpoints = {"t_00000": None}
    monkeypatch.setattr(backend.tune, "report", report)
    monkeypatch.setattr(backend.tune, "get_context", lambda: SimpleNamespace(
        get_trial_id=lambda: "t_00000"))
    monkeypatch.setattr(backend.tune, "get_checkpoint", lambda: checkpoints["t_00000"])
    monkeypatch.setattr(trial_module, "run_trial", fake_run)
    # a checkpoint here is its name, "epoch <n> [...]": its state is (n, the name)
    monkeypatch.setattr("ncp_search.integrations.ray.checkpoint.checkpoint_state",
                        lambda checkpoint: (int(checkpoint.split()[1]), checkpoint))
    stopped = {}  # the scheduler's journaled stops
    monkeypatch.setattr(backend, "ray_decisions", lambda path, mode: (stopped, {}))
    monkeypatch.setattr("ncp_search.integrations.ray.checkpoint.keras_checkpoint",
                        lambda model, epoch: contextlib.nullcontext(f"epoch {epoch}"))
    import ncp_search.integrations.ray.kept as kept_module

    store = kept_module.KeptModels()
    monkeypatch.setattr(kept_module, "KEPT", store)
    config = make_config({"name": "ncp_pause"})

    def train(keep_bytes=100):
        with pytest.raises(SystemExit) if checkpoints["t_00000"] is None else \
                contextlib.nullcontext():
            backend._train({"learning_rate": 0.3, "optimizer": "sgd"}, data=None,
                           sweep=config, output=str(tmp_path), cache_dir=None,
                           checkpoint=(1,), keep_bytes=keep_bytes)

    train()  # paused at its rung after epoch 1: the actor keeps its models
    assert "t_00000" in store and len(store) == 1 and "resumed_from" not in reports[-1]
    checkpoints["t_00000"] = "epoch 1"  # Tune resumes it from its checkpoint of epoch 1
    train()
    assert calls[-1] is paused and reports[-1]["resumed_from"] == "memory"
    assert len(store) == 0  # taken: a model is never resumed twice

    # another checkpoint than the one kept with the models (older models; the same
    # epochs but another checkpoint, as after PBT's exploit), a model pushed out by
    # newer ones, or none kept (keep_bytes=0): from the checkpoint
    for kept_with, keep_bytes in (("epoch 0", 100), ("epoch 1 of another trial", 100),
                                  (None, 100), (None, 0)):
        if kept_with is not None:
            store.keep("t_00000", LiveTrial("old", None, 1), (int(kept_with.split()[1]),
                                                                kept_with), 10, 100)
        train(keep_bytes)
        assert calls[-1] is None and reports[-1]["resumed_from"] == "checkpoint"
        assert len(store) == 0
    checkpoints["t_00000"] = None
    train(keep_bytes=5)  # its models would take more than the memory it may use
    assert len(store) == 0
    # the models of trials the scheduler stopped for good are let go at the next start
    store.keep("t_00009", "dropped", (1, "epoch 1"), 10, 100)
    store.keep("t_00008", "paused", (1, "epoch 1"), 10, 100)
    stopped["t_00009"] = {"epoch": 1, "reason": "paused for good"}
    train()
    assert store.ids() == ["t_00008", "t_00000"]


@pytest.mark.slow
def test_a_pausing_ray_sweep_resumes_from_memory_with_the_same_curves(tmp_path, zoo_cache,
                                                                      monkeypatch):
    # One trial at a time, so every resume comes back to the actor that paused it.
    from ncp_search.app.sweep.run import run_sweep
    from ncp_search.app.sweep.trial import LIVE_MB_ENV

    def sweep(folder, keep_mb):
        folder.mkdir()
        monkeypatch.setenv(LIVE_MB_ENV, keep_mb)
        text = SWEEP_YAML.format(output=folder / "out", trials=6, epochs=4).replace(
            "{name: ncp, grace_period: 1}", "{name: ncp_pause, grace_period: 1}")
        path = folder / "sweep.yaml"
        path.write_text(text + "ray: {cpus_per_trial: 2}\n")
        summary = run_sweep(str(path), backend="ray", cache_dir=zoo_cache,
                            stream=io.StringIO())
        assert summary["fail"] == 0 and summary["complete"] >= 1
        return {r["number"]: r for r in _read_records(folder / "out")}

    checkpointed = sweep(tmp_path / "ckpt", "0")
    kept = sweep(tmp_path / "memory", "1024")
    # (how many trials pause depends on when Tune adds the next trial: a rung that can
    # decide promotes an arriving trial at once, so the counts may differ)
    resumes = [s for r in kept.values() for s in r.get("resumed_from", [])]
    assert "memory" in resumes, resumes
    assert {s for r in checkpointed.values() for s in r.get("resumed_from", [])} == {
        "checkpoint"}
    # the same weights: the same values epoch by epoch
    assert {n: r["val_accuracy"] for n, r in kept.items()} == {
        n: r["val_accuracy"] for n, r in checkpointed.items()}


@pytest.mark.parametrize("name", ["ncp_pause", "hyperband"])
def test_a_bad_paused_models_setting_is_refused_before_a_pausing_ray_sweep_starts(
        monkeypatch, name):
    # Was: checked for Optuna's ncp_pause only; a Ray sweep read it after writing to
    # its output folder (Tune's hyperband pauses and keeps models too).
    from ncp_search.app.sweep.trial import LIVE_MB_ENV, check_live_bytes
    from ncp_search.errors import NCPSearchError

    monkeypatch.setenv(LIVE_MB_ENV, "lots")
    with pytest.raises(NCPSearchError, match=f"{LIVE_MB_ENV} must be a number of MB"):
        check_live_bytes(make_config({"name": name}))
    check_live_bytes(make_config({"name": "ncp"}))  # never pauses: not read
