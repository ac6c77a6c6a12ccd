"""A real (local) Ray Tune run with NCPScheduler; synthetic trainable, no Keras."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install 'ncp-search[ray]'")

import ray  # noqa: E402
from ray import tune  # noqa: E402

import tests.integrations.ray_sweep as sweep  # noqa: E402
from ncp_search.integrations.ray.scheduler import STATE_FORMAT, NCPScheduler  # noqa: E402
from tests.integrations.tune_fakes import Trial  # noqa: E402

# The percentile rule with the 0.1 defaults these tests were written for.
RULE_01 = {"rule": "percentile", "grace_period": 2}


def trainable(config):
    quality = config["quality"]
    for step in range(8):
        accuracy = 0.3 + 0.6 * quality * (1 - 0.7 ** (step + 1))
        tune.report({"val_accuracy": accuracy, "beta_eff": 1.0 / (step + 1)})


@pytest.mark.slow
def test_tuner_with_ncp_scheduler_stops_some_trials(tmp_path):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        scheduler = NCPScheduler(**RULE_01, max_t=8, predictor="best")
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"quality": tune.grid_search([0.1, 0.9, 0.2, 0.8, 0.15, 0.85, 0.3, 0.7])},
            tune_config=tune.TuneConfig(metric="val_accuracy", mode="max",
                                        scheduler=scheduler),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="ncp",
                                      verbose=0),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    iterations = [r.metrics["training_iteration"] for r in results]
    assert len(results) == 8 and not results.errors
    assert min(iterations) < 8  # some trials stopped early
    best = results.get_best_result()
    assert best.config["quality"] == 0.9 and best.metrics["training_iteration"] == 8


def _journal_events(path: Path, strict: bool = False) -> list[dict]:
    """The journal's events after its header; a torn last line is skipped unless
    ``strict``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"format": STATE_FORMAT}
    events = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            if strict or number < len(lines):
                raise
    return events


def _sweep_progress(events: list[dict]) -> tuple[set[str], set[str], set[str]]:
    """Trial ids (completed, stopped, running) as the journal tells them."""
    completed = {e["id"] for e in events if e["e"] == "complete"}
    stopped = {e["id"] for e in events if e["e"] == "decision" and e["stop"]}
    running = {e["id"] for e in events if e["e"] == "result"} - completed - stopped
    return completed, stopped, running


def _replay_through_hooks(events: list[dict], path: Path) -> Path:
    """Feed a journal's results, completions and removals to a new sweep scheduler
    through Tune's hooks; returns the journal it writes at ``path``."""
    scheduler = sweep.make_scheduler(metric="val_accuracy", mode="max", state_path=str(path))
    for event in events:
        trial = Trial(event["id"])
        if event["e"] == "result":
            scheduler.on_trial_add(None, trial)  # what Tune does first; idempotent
            scheduler.on_trial_result(None, trial, {**event["s"], "val_accuracy": event["v"],
                                                    "training_iteration": event["t"]})
        elif event["e"] == "complete":
            scheduler.on_trial_complete(None, trial, {"val_accuracy": event["final"]})
        elif event["e"] == "remove":
            scheduler.on_trial_remove(None, trial)
    return path


def _tune_completed(path: Path) -> tuple[dict[str, float], bool]:
    """From the experiment state Tune saved: the trials TERMINATED after all their
    steps (id: final value), and whether any trial was left unfinished."""
    try:
        trials = tune.ExperimentAnalysis(str(path)).trials
    except Exception:  # noqa: BLE001 - no state saved yet, or being written
        return {}, True
    done = {t.trial_id: t.last_result["val_accuracy"] for t in trials
            if t.status == "TERMINATED" and t.last_result.get("training_iteration") == sweep.STEPS}
    return done, any(t.status != "TERMINATED" for t in trials)


def _kill_with_its_ray(driver: subprocess.Popen) -> None:
    """SIGKILL the driver's session and the Ray processes it started (GCS, raylet,
    workers), without touching any other Ray instance on the machine (no `ray stop`)."""
    import psutil  # ray ships it

    try:
        family = psutil.Process(driver.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(driver.pid, signal.SIGKILL)  # no clean shutdown
    except ProcessLookupError:
        pass
    driver.wait()
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def _restore_and_finish(path: Path, trainable) -> tune.ResultGrid:
    """Tuner.restore the killed sweep at ``path`` in this process and run it to its end."""
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sweep)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert tune.Tuner.can_restore(str(path))
        tuner = tune.Tuner.restore(str(path), trainable=tune.with_resources(
            trainable, {"cpu": 1}), resume_unfinished=True, resume_errored=True)
        return tuner.fit()
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_killed_sweep_restores_without_changing_completed_trials(tmp_path):
    storage = str(tmp_path / "runs")
    path, journal = Path(storage) / sweep.NAME, Path(sweep.state_path(storage))
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.ray_sweep", storage],
        cwd=str(Path(__file__).parents[2]), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"},
    )
    # Kill once two trials completed, one was stopped and one runs (the journal says)
    # and Tune saved a completed trial as TERMINATED.
    progress: tuple[set[str], ...] = (set(), set(), set())
    try:
        deadline = time.time() + 900  # bounds a broken run only: it waits for the journal
        while time.time() < deadline and driver.poll() is None:
            time.sleep(0.1)
            if journal.exists():
                progress = _sweep_progress(_journal_events(journal))
                completed, stopped, running = progress
                if len(completed) >= 2 and stopped and running and _tune_completed(path)[0]:
                    break
    finally:
        _kill_with_its_ray(driver)  # no clean shutdown
    completed, stopped, running = progress
    assert len(completed) >= 2 and stopped and running, f"no kill mid-sweep: {progress}"
    # What the scheduler had seen complete, and what Tune had saved as complete; Tune
    # runs again the trials it had not saved as finished, from scratch.
    journaled = _journal_events(journal)
    finished = {e["id"]: e["final"] for e in journaled if e["e"] == "complete"}
    done_before, unfinished = _tune_completed(path)
    assert done_before and unfinished, (done_before, unfinished)
    assert done_before.items() <= finished.items()

    results = _restore_and_finish(path, sweep.trainable)
    assert len(results) == len(sweep.QUALITIES) and not results.errors
    assert sorted(r.config["quality"] for r in results) == sorted(sweep.QUALITIES)
    after = {r.metrics["trial_id"]: r.metrics for r in results}
    for trial_id, final in finished.items():
        assert after[trial_id]["training_iteration"] == sweep.STEPS, trial_id
        assert after[trial_id]["val_accuracy"] == final, trial_id

    # The journal: JSON lines under its header; nothing new for the trials Tune kept
    # as complete; replayed, one track per trial with steps strictly increasing, and
    # the completed trials complete, never stopped, with their final.
    events = _journal_events(journal, strict=True)
    rerun = {e["id"] for e in events[len(journaled):] if e["e"] == "result"}
    assert not rerun & set(done_before), f"completed trials ran again: {rerun}"
    # The restored scheduler went on from the journal: fed the same hook calls, one
    # that was never killed writes the same journal (decisions and predictions).
    assert _journal_events(_replay_through_hooks(events, tmp_path / "replay.jsonl"),
                           strict=True) == events
    scheduler = NCPScheduler(**RULE_01, metric="val_accuracy", mode="max", state_path=str(journal))
    scheduler.on_trial_add(None, Trial(next(iter(done_before))))  # replays the journal
    tracks = scheduler.state()["tracks"]
    assert set(tracks) == set(after), "a trial has no track, or two"
    for trial_id, track in tracks.items():
        assert all(a < b for a, b in zip(track["t"], track["t"][1:])), (trial_id, track["t"])
    for trial_id, final in finished.items():
        track = tracks[trial_id]
        assert track["t"] == [float(s) for s in range(1, sweep.STEPS + 1)], trial_id
        assert track["final"] == final and not track["stopped"], (trial_id, track)
        assert track["completed_once"] == (trial_id in rerun), (trial_id, track)


@pytest.mark.slow
def test_killed_pausing_sweep_restores_and_every_trial_keeps_its_fate(tmp_path):
    storage = str(tmp_path / "runs")
    path, journal = Path(storage) / sweep.NAME, Path(sweep.state_path(storage))
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.ray_sweep", storage, "--pause"],
        cwd=str(Path(__file__).parents[2]), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"},
    )
    # Kill as the first finalist completes (the journal says): the other, the best and
    # slowest, is on its last rung; Tune's snapshot may or may not have the completion.
    completed: set[str] = set()
    try:
        deadline = time.time() + 900  # bounds a broken run only: it waits for the journal
        while time.time() < deadline and driver.poll() is None and not completed:
            time.sleep(0.05)
            if journal.exists():
                completed = _sweep_progress(_journal_events(journal))[0]
    finally:
        _kill_with_its_ray(driver)  # no clean shutdown
    assert len(completed) == 1, f"no kill mid-sweep: {completed}"
    journaled = _journal_events(journal)
    results = _restore_and_finish(path, sweep.pausing_trainable)
    assert len(results) == len(sweep.QUALITIES) and not results.errors
    by_quality = {r.config["quality"]: r.metrics for r in results}
    best_two = sorted(sweep.QUALITIES)[-2:]
    for quality in best_two:  # the finalists end with their last step's value
        metrics = by_quality[quality]
        assert metrics["training_iteration"] == sweep.STEPS, (quality, metrics)
        assert metrics["val_accuracy"] == sweep.accuracy(quality, sweep.STEPS - 1)
    # the restored scheduler: the same fates and finals as a run never killed
    scheduler = sweep.make_pausing_scheduler(metric="val_accuracy", mode="max",
                                             state_path=str(journal))
    scheduler.on_trial_add(None, Trial(next(iter(completed))))  # replays the journal
    ids = {r.metrics["trial_id"]: r.config["quality"] for r in results}
    tracks = scheduler.state()["tracks"]
    assert set(tracks) == set(ids)
    finals = {ids[k]: t["final"] for k, t in tracks.items() if t["final"] is not None}
    assert finals == {q: sweep.accuracy(q, sweep.STEPS - 1) for q in best_two}
    fates = {ids[k]: scheduler.policy.status(k) for k in tracks}
    assert fates == {q: "done" if q in best_two else "dropped" for q in sweep.QUALITIES}
    assert scheduler.num_stopped == len(sweep.QUALITIES) - 2
    # a trial the policy had dropped before the kill trains no step after the restore
    dropped_before = {e["id"] for e in journaled if e["e"] == "decision" and e.get("stop")}
    rerun = [(e["id"], e.get("t")) for e in _journal_events(journal)[len(journaled):]
             if e["e"] == "result" and e["id"] in dropped_before]
    assert not rerun, f"dropped trials trained again after the restore: {rerun}"
    for trial_id, track in tracks.items():
        assert all(a < b for a, b in zip(track["t"], track["t"][1:])), (trial_id, track["t"])


@pytest.mark.slow
def test_keras_class_trainable_reports_beta_eff_from_its_actor(tmp_path):
    import ray.cloudpickle

    import tests.integrations.ray_digits as digits
    from ncp_search.integrations.ray.trainable import trial_resources

    ray.cloudpickle.register_pickle_by_value(digits)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert trial_resources() == {"cpu": 1.0}  # no GPU here
        tuner = tune.Tuner(
            tune.with_resources(digits.DigitsTrainable, trial_resources()),
            param_space={"learning_rate": tune.grid_search([1e-4, 0.3, 0.1, 1e-3])},
            tune_config=tune.TuneConfig(
                metric="val_accuracy", mode="max",
                scheduler=NCPScheduler(**RULE_01, max_t=4, predictor="ncp_raw")),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="keras", verbose=0,
                                      stop={"training_iteration": 4}),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    assert len(results) == 4 and not results.errors
    for result in results:
        assert isinstance(result.metrics["beta_eff"], float)
    assert results.get_best_result().metrics["training_iteration"] == 4
