"""A real (local) Ray Tune run with NCPScheduler; synthetic trainable, no Keras."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from ncp_search.integrations.ray.scheduler import NCPScheduler  # noqa: E402


def trainable(config):
    quality = config["quality"]
    for step in range(8):
        accuracy = 0.3 + 0.6 * quality * (1 - 0.7 ** (step + 1))
        tune.report({"val_accuracy": accuracy, "beta_eff": 1.0 / (step + 1)})


@pytest.mark.slow
def test_tuner_with_ncp_scheduler_stops_some_trials(tmp_path):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        scheduler = NCPScheduler(grace_period=2, max_t=8, predictor="best")
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


@pytest.mark.slow
def test_interrupted_sweep_restores_with_histories(tmp_path):
    import os
    import pickle
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import ray.cloudpickle

    import tests.integrations.ray_sweep as sweep

    storage, state = str(tmp_path / "runs"), str(tmp_path / "ncp_scheduler.pkl")
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.integrations.ray_sweep", storage, state],
        cwd=str(Path(__file__).parents[2]), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"},
    )
    deadline = time.time() + 300
    before = {}
    while time.time() < deadline:
        time.sleep(0.5)
        try:
            before = pickle.loads(Path(state).read_bytes())
        except (FileNotFoundError, EOFError, pickle.UnpicklingError):
            continue
        if len(before["_finals"]) >= 2:
            time.sleep(2.5)  # let Tune write its experiment state once more
            before = pickle.loads(Path(state).read_bytes())
            break
    import psutil  # ray ships it

    # The driver's own Ray processes (GCS, raylet, workers), to clean up after the kill
    # without touching any other Ray instance on the machine (no `ray stop`).
    family = psutil.Process(driver.pid).children(recursive=True)
    os.killpg(driver.pid, signal.SIGKILL)  # the sweep dies mid-way, no clean shutdown
    driver.wait()
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)
    assert len(before.get("_finals", {})) >= 2, "the sweep made no progress"

    ray.cloudpickle.register_pickle_by_value(sweep)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        path = str(Path(storage) / "sweep")
        assert tune.Tuner.can_restore(path)
        tuner = tune.Tuner.restore(path, trainable=tune.with_resources(sweep.trainable,
                                                                      {"cpu": 1}),
                                   resume_unfinished=True, resume_errored=True)
        results = tuner.fit()
    finally:
        ray.shutdown()
    after = pickle.loads(Path(state).read_bytes())
    assert len(results) == len(sweep.QUALITIES) and not results.errors
    # the scheduler kept the histories of the trials seen before the kill, and a
    # trial that Tune ran again was not counted twice
    assert set(before["_histories"]) <= set(after["_histories"])
    for history in after["_histories"].values():
        steps = [h[0] for h in history]
        assert steps == sorted(set(steps))
    assert results.get_best_result().config["quality"] == 0.9


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
                scheduler=NCPScheduler(grace_period=2, max_t=4, predictor="ncp_raw")),
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
