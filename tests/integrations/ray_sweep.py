"""A small Ray Tune sweep for the kill-and-restore test (run as a script too).

Run as ``python -m tests.integrations.ray_sweep STORAGE_PATH [--pause]``: the
experiment is ``STORAGE_PATH/sweep`` and NCPScheduler's journal lies beside it, at
``STORAGE_PATH/sweep/ncp_scheduler.jsonl``. Curves are read from the config, so a
trial run twice reports the same values. With ``--pause`` the scheduler runs a
PausingPolicy and the trials checkpoint their step at every report (a resumed or
restored trial goes on after it); the best trial is the slowest, so the sweep's end
is a long last rung.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from ray import tune

from ncp_search.core.pausing import PausingPolicy
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


def pausing_trainable(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # resumed after a pause, or restored
        with checkpoint.as_directory() as folder:
            with open(os.path.join(folder, "step.json"), encoding="utf-8") as handle:
                start = int(json.load(handle)["step"]) + 1
    for step in range(start, STEPS):
        time.sleep(1.0 if config["quality"] == max(QUALITIES) else 0.25)
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "step.json"), "w", encoding="utf-8") as handle:
                json.dump({"step": step}, handle)
            tune.report({"val_accuracy": accuracy(config["quality"], step),
                         "beta_eff": 1.0 / (step + 1)},
                        checkpoint=tune.Checkpoint.from_directory(folder))


def state_path(storage: str) -> str:
    return os.path.join(storage, NAME, "ncp_scheduler.jsonl")


def make_scheduler(**kwargs) -> NCPScheduler:
    return NCPScheduler(grace_period=2, max_t=STEPS, rule="percentile", n_startup_trials=2,
                        **kwargs)


def make_pausing_scheduler(**kwargs) -> NCPScheduler:
    """Rungs at 1, 2, 4 steps (training_iteration counts from 1): 10 trials, then the
    best 5, then 2, which run to the end."""
    policy = PausingPolicy(n_trials=len(QUALITIES), max_resource=STEPS, reduction_factor=2,
                           keep_min=2, first_step=1)
    return NCPScheduler(max_t=STEPS, policy=policy, **kwargs)


def make_tuner(storage: str, pause: bool = False) -> tune.Tuner:
    make = make_pausing_scheduler if pause else make_scheduler
    return tune.Tuner(
        tune.with_resources(pausing_trainable if pause else trainable, {"cpu": 1}),
        param_space={"quality": tune.grid_search(QUALITIES)},
        tune_config=tune.TuneConfig(metric="val_accuracy", mode="max",
                                    scheduler=make(state_path=state_path(storage))),
        run_config=tune.RunConfig(storage_path=storage, name=NAME, verbose=0),
    )


if __name__ == "__main__":
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    make_tuner(sys.argv[1], pause="--pause" in sys.argv[2:]).fit()
