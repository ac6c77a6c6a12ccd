"""A worker process for the multi-process Optuna test: a cheap objective that reports
beta_eff and the metric through ncp_search, on a shared SQLite storage."""

from __future__ import annotations

import math
import sys

import optuna

from ncp_search import NCPPruner, report_beta_eff

PERCENTILE = {"rule": "percentile"}  # the rule these tests are about (0.1 default)


def objective(trial: optuna.Trial) -> float:
    quality = trial.suggest_float("quality", 0.0, 1.0)
    value = 0.0
    for step in range(8):
        value = 0.4 + 0.5 * quality * (1 - math.exp(-(step + 1) / 3))
        report_beta_eff(trial, step, 1.0 / (step + 1) + quality, value)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def main() -> None:
    url, name, n_trials, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 120}})
    study = optuna.load_study(
        study_name=name, storage=storage,
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=NCPPruner(
            **PERCENTILE, n_startup_trials=3, n_warmup_steps=2, predictor="ncp_hybrid"),
    )
    study.optimize(objective, n_trials=n_trials)


if __name__ == "__main__":
    main()
