"""A small Ray Tune sweep for the kill-and-restore test (run as a script too).

Run as ``python -m tests.integrations.ray_sweep STORAGE_PATH``: the experiment is
``STORAGE_PATH/sweep`` and NCPScheduler's journal lies beside it, at
``STORAGE_PATH/sweep/ncp_scheduler.jsonl``. Curves are read from the config, so a
trial run twice reports the same values.
"""

from __future__ import annotations

import os
import sys
import time

from ray import tune

from ncp_search.integrations.ray.scheduler import NCPScheduler

NAME = "sweep"
STEPS = 8
# Good trials first: the first two complete (n_startup_trials=2), later poor ones
# are stopped by the percentile rule.
QUALITIES = [0.9, 0.8, 0.1, 0.85, 0.2, 0.15, 0.7, 0.3, 0.95, 0.25]


def accuracy(quality: float, step: int) -> float:
    return 0.3 + 0.6 * quality * (1 - 0.7 ** (step + 1))


def trainable(config):
    for step in range(STEPS):
        time.sleep(0.25)
        tune.report({"val_accuracy": accuracy(config["quality"], step),
                     "beta_eff": 1.0 / (step + 1)})


def state_path(storage: str) -> str:
    return os.path.join(storage, NAME, "ncp_scheduler.jsonl")


def make_scheduler(**kwargs) -> NCPScheduler:
    return NCPScheduler(grace_period=2, max_t=STEPS, rule="percentile", n_startup_trials=2,
                        **kwargs)


def make_tuner(storage: str) -> tune.Tuner:
    return tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space={"quality": tune.grid_search(QUALITIES)},
        tune_config=tune.TuneConfig(metric="val_accuracy", mode="max",
                                    scheduler=make_scheduler(state_path=state_path(storage))),
        run_config=tune.RunConfig(storage_path=storage, name=NAME, verbose=0),
    )


if __name__ == "__main__":
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    make_tuner(sys.argv[1]).fit()
