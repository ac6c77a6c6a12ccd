"""Replay recorded runs through real Optuna studies to compare pruners.

Each seed fixes one order of the table's runs; trial ``n`` of the study replays run
``order[n]`` epoch by epoch (reporting its validation accuracy, and ``beta_eff``
for NCP pruners), so every pruner sees the same trials in the same order and the
only difference is which of them it stops. Measured per pruner and seed: epochs
consumed, the anytime regret of the best completed trial (accuracy points below
the best final in the table), and the epochs needed to come within ``tolerance``
points of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna

from ncp_search.core.history import PROBE_TERMS
from ncp_search.integrations import registry
from ncp_search.integrations.optuna.pruner import NCPPruner
from ncp_search.integrations.optuna.reporting import report_beta_eff
from research.replay_common import epochs_to_reach, plot_anytime_regret, step_value

BUILT_IN = ("nop", "median", "percentile", "successive_halving", "hyperband", "patient")
DEFAULT_PRUNERS = (*BUILT_IN, "ncp_percentile:best", "ncp_percentile:pow3",
                   "ncp_percentile:ncp_raw", "ncp_percentile:xtrial_curve",
                   "ncp_percentile:xtrial_ncp", "ncp_percentile/median:ncp_raw",
                   "ncp_percentile/hyperband:ncp_raw", "ncp_percentile/median:pow3")
# The settings the committed replay tables were made with (5 start-up trials and 2
# warm-up steps where they apply; Optuna's defaults otherwise).
_WARM = {"n_startup_trials": 5, "n_warmup_steps": 2}
_SETTINGS: dict[str, dict[str, Any]] = {
    "nop": {}, "median": _WARM, "percentile": {"percentile": 25.0, **_WARM},
    "successive_halving": {"reduction_factor": 4}, "hyperband": {"reduction_factor": 3},
}


def make_pruner(name: str, n_steps: int) -> optuna.pruners.BasePruner:
    """A pruner by name (:mod:`ncp_search.integrations.registry`): a built-in one,
    ``patient`` (PatientPruner over MedianPruner, patience 2), ``ncp:<predictor>``
    (NCPPruner, ASHA as the sweeps build it), ``ncp_percentile:<predictor>`` (the
    percentile rule with 0.1's settings, diverged trials run on) or
    ``ncp_percentile/<built-in>:<predictor>`` (a built-in on the predictions)."""
    head, _, predictor = name.partition(":")
    chosen, _, base_name = head.partition("/")
    rule = registry.ncp_rule(registry.OPTUNA, chosen)
    if rule == "percentile":
        base = make_pruner(base_name, n_steps) if base_name else None
        return NCPPruner(max_step=n_steps - 1, predictor=predictor, base=base,
                         rule="percentile", prune_diverged=False, **_WARM)
    if rule == "asha" and not base_name:
        pruner: optuna.pruners.BasePruner = registry.PRUNERS[chosen].make(
            {"predictor": predictor}, n_steps)
        return pruner
    if name in _SETTINGS:
        built: optuna.pruners.BasePruner = registry.PRUNERS[name].make(_SETTINGS[name],
                                                                       n_steps)
        return built
    if name == "patient":
        return optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(**_WARM), patience=2)
    raise ValueError(
        f"unknown pruner {name!r}; available: {list(BUILT_IN)}, 'ncp:<predictor>', "
        "'ncp_percentile:<predictor>' and 'ncp_percentile/<built-in>:<predictor>'."
    )


def replay(runs: Sequence[dict[str, Any]], pruner_name: str, seed: int) -> dict[str, Any]:
    """One study over all runs in a seeded order; returns its anytime curve."""
    n_steps = min(len(r["curve"]) - 1 for r in runs)
    order = np.random.default_rng(seed).permutation(len(runs))
    best_possible = max(r["final_val_accuracy"] for r in runs)
    ncp = pruner_name.startswith("ncp")
    state = {"epochs": 0, "best": -math.inf}
    curve: list[tuple[int, float]] = []

    def objective(trial: optuna.Trial) -> float:
        run = runs[int(order[trial.number])]
        for s in range(n_steps):
            step = run["curve"][s + 1]
            value = step_value(step, "val_accuracy")
            state["epochs"] += 1
            if ncp:
                terms = {k: step_value(step, k) for k in (*PROBE_TERMS, "train_loss")
                         if k in step}
                report_beta_eff(trial, s, step_value(step, "beta_eff"), value, terms=terms)
            else:
                trial.report(value, s)
            if trial.should_prune():
                curve.append((state["epochs"], 100.0 * (best_possible - state["best"])))
                raise optuna.TrialPruned()
        final = float(run["final_val_accuracy"])
        state["best"] = max(state["best"], final)
        curve.append((state["epochs"], 100.0 * (best_possible - state["best"])))
        return final

    study = optuna.create_study(
        # A fixed name: Hyperband assigns brackets by a hash of the study name.
        study_name=f"replay-{pruner_name}-{seed}",
        direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=make_pruner(pruner_name, n_steps),
    )
    study.optimize(objective, n_trials=len(runs), catch=())
    return {
        "pruner": pruner_name,
        "seed": seed,
        "epochs": state["epochs"],
        "final_regret": 100.0 * (best_possible - state["best"]),
        "curve": curve,
        "n_pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
    }


def compare(
    runs: Sequence[dict[str, Any]],
    pruners: Sequence[str] = DEFAULT_PRUNERS,
    seeds: Sequence[int] = range(10),
    tolerance: float = 0.5,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """All pruners over all seeds, with a summary per pruner."""
    results = []
    for name in pruners:
        for seed in seeds:
            results.append(replay(runs, name, seed))
        if progress:
            progress(f"replayed {name} over {len(list(seeds))} seeds")
    summary = {}
    nop_epochs = np.mean([r["epochs"] for r in results if r["pruner"] == "nop"] or [np.nan])
    for name in pruners:
        mine = [r for r in results if r["pruner"] == name]
        reach = [epochs_to_reach(r["curve"], tolerance) for r in mine]
        finite = [x for x in reach if math.isfinite(x)]
        summary[name] = {
            "epochs": float(np.mean([r["epochs"] for r in mine])),
            "epochs_vs_nop": float(np.mean([r["epochs"] for r in mine]) / nop_epochs),
            "final_regret": float(np.mean([r["final_regret"] for r in mine])),
            "reached": len(finite),
            "seeds": len(mine),
            "epochs_to_tolerance": float(np.mean(finite)) if finite else math.inf,
            "n_pruned": float(np.mean([r["n_pruned"] for r in mine])),
        }
    return {"tolerance": tolerance, "summary": summary, "runs": results}


def format_summary(report: dict[str, Any]) -> str:
    nop = report["summary"].get("nop", {}).get("epochs_to_tolerance", math.nan)
    lines = [
        f"{'pruner':<22} {'epochs':>8} {'vs nop':>7} {'pruned':>7} {'final regret':>13} "
        f"{'reached':>8} {'epochs to ' + str(report['tolerance']) + ' pt':>16} {'vs nop':>7}"
    ]
    for name, row in report["summary"].items():
        lines.append(
            f"{name:<22} {row['epochs']:>8.0f} {row['epochs_vs_nop']:>7.2f} "
            f"{row['n_pruned']:>7.1f} {row['final_regret']:>13.2f} "
            f"{row['reached']:>4}/{row['seeds']:<3} {row['epochs_to_tolerance']:>16.0f} "
            f"{row['epochs_to_tolerance'] / nop:>7.2f}"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str, title: str = "") -> None:
    """Mean anytime regret against epochs consumed, per pruner."""
    plot_anytime_regret(report, path, group_key="pruner", title=title, colormap="tab20")
