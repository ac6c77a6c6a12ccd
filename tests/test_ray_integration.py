"""A real (local) Ray Tune run with NCPScheduler; synthetic trainable, no Keras."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")

import ray  # noqa: E402
from ray import tune  # noqa: E402

from ncp_search.ray_scheduler import NCPScheduler  # noqa: E402


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
