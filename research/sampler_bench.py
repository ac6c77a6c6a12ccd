"""Does TPE learn better from predicted finals of pruned trials than from raw values?

A surrogate benchmark on a recorded table: TPE proposes parameters from the
workload's search space, the objective replays the recorded run whose
configuration is nearest (normalised distance, log scale where the space says so,
0/1 for categories), and NCPPruner prunes. Two variants differ only in what a
pruned trial leaves for the sampler: its raw value at the pruning step (Optuna's
default) or its predicted final value (``report_predicted_final``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from ncp_search.app.search_space import suggest
from ncp_search.integrations.optuna.pruner import NCPPruner
from ncp_search.integrations.optuna.reporting import report_beta_eff, report_predicted_final


def _distance(space: Mapping[str, Any], a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    total = 0.0
    for name, spec in space.items():
        if not isinstance(spec, Mapping):
            continue
        if spec["type"] == "categorical":
            total += float(a.get(name) != b.get(name))
            continue
        low, high = float(spec["low"]), float(spec["high"])
        x, y = float(a[name]), float(b[name])
        if spec.get("log"):
            x, y, low, high = (math.log(v) for v in (x, y, low, high))
        total += abs(x - y) / max(high - low, 1e-12)
    return total


def tpe_study(
    runs: Sequence[dict[str, Any]],
    space: Mapping[str, Any],
    *,
    seed: int,
    n_trials: int,
    predictor: str | None,
    report_prediction: bool,
) -> dict[str, Any]:
    """One TPE study on the surrogate; ``predictor=None`` runs without pruning."""
    n_steps = min(len(r["curve"]) - 1 for r in runs)
    epochs = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal epochs
        params = suggest(trial, space)
        run = min(runs, key=lambda r: _distance(space, params, r["config"]))
        for s in range(n_steps):
            step = run["curve"][s + 1]
            value = step.get("val_accuracy")
            beta = step.get("beta_eff")
            epochs += 1
            report_beta_eff(trial, s, math.nan if beta is None else beta,
                            math.nan if value is None else value)
            if trial.should_prune():
                if report_prediction:
                    report_predicted_final(trial, s + 1)
                raise optuna.TrialPruned()
        return float(run["final_val_accuracy"])

    pruner: optuna.pruners.BasePruner = (
        # the 0.1 settings the committed sampler tables were made with
        NCPPruner(max_step=n_steps - 1, predictor=predictor, rule="percentile",
                  prune_diverged=False) if predictor
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    complete = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {"best": max(complete) if complete else math.nan, "epochs": epochs}


def compare_sampler(
    runs: Sequence[dict[str, Any]],
    space: Mapping[str, Any],
    *,
    seeds: Sequence[int] = range(10),
    n_trials: int = 40,
    predictors: Sequence[str] = ("best", "pow3"),
    progress: Callable[[str], Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean best final and epochs per variant over seeds (plus TPE without pruning)."""
    variants: list[tuple[str, str | None, bool]] = [("tpe, no pruning", None, False)]
    for predictor in predictors:
        variants += [(f"ncp_percentile:{predictor}, raw value to sampler", predictor, False),
                     (f"ncp_percentile:{predictor}, prediction to sampler", predictor, True)]
    best_possible = max(r["final_val_accuracy"] for r in runs)
    out = {}
    for label, predictor, report in variants:
        results = [tpe_study(runs, space, seed=s, n_trials=n_trials, predictor=predictor,
                             report_prediction=report) for s in seeds]
        bests = np.array([r["best"] for r in results])
        out[label] = {
            "best_final": float(np.mean(bests)),
            "regret_points": float(100 * np.mean(best_possible - bests)),
            "regret_sd": float(100 * np.std(best_possible - bests)),
            "epochs": float(np.mean([r["epochs"] for r in results])),
        }
        if progress:
            progress(f"{label}: mean regret {out[label]['regret_points']:.2f} points, "
                     f"{out[label]['epochs']:.0f} epochs")
    return out
