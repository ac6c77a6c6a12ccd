"""A small Ray Tune sweep for the interrupt-and-restore test (run as a script too)."""

from __future__ import annotations

import sys
import time

from ray import tune

from ncp_search.integrations.ray.scheduler import NCPScheduler

QUALITIES = [0.1, 0.9, 0.2, 0.8, 0.15, 0.85, 0.3, 0.7]


def trainable(config):
    quality = config["quality"]
    for step in range(8):
        time.sleep(0.25)
        accuracy = 0.3 + 0.6 * quality * (1 - 0.7 ** (step + 1))
        tune.report({"val_accuracy": accuracy, "beta_eff": 1.0 / (step + 1)})


def make_tuner(storage: str, state_path: str) -> tune.Tuner:
    return tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"quality": tune.grid_search(QUALITIES)},
        tune_config=tune.TuneConfig(
            metric="val_accuracy", mode="max",
            scheduler=NCPScheduler(grace_period=2, max_t=8, state_path=state_path),
        ),
        run_config=tune.RunConfig(storage_path=storage, name="sweep", verbose=0),
    )


if __name__ == "__main__":
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    make_tuner(sys.argv[1], sys.argv[2]).fit()
