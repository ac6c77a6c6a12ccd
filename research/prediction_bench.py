"""Evaluate final-accuracy predictors on a table of recorded runs.

For each predictor and each number of observed epochs K it computes, across runs:
Kendall tau and Spearman rho between the scores and the final validation
accuracies, the MAE of the predicted final accuracy (accuracy-scale predictors),
top-1 regret (best final minus the final of the top-scored run, in accuracy
points), and the false-prune rate of a median rule (the share of runs below the
median score whose final is above the median final). Confidence intervals come
from a bootstrap over runs (the scores are computed once on the full table; the
bootstrap resamples runs). Each predictor using ``beta_eff`` is compared with its
shuffled control, and every predictor with the ``last`` value, by a paired
bootstrap of the Kendall-tau difference.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import kendalltau, spearmanr

from ncp_search.core.predictors import PREDICTORS, SCORE_ONLY
from research.table_predict import predict, uses_beta

METRICS = ("kendall_tau", "spearman_rho", "mae", "top1_regret", "false_prune_rate")
DEFAULT_PREDICTORS = tuple(PREDICTORS)


def _tau(scores: np.ndarray, finals: np.ndarray) -> float:
    value = kendalltau(scores, finals).statistic
    return float(value) if np.isfinite(value) else 0.0


def metrics(scores: np.ndarray, finals: np.ndarray, *, accuracy_scale: bool) -> dict[str, float]:
    """The five metrics for one set of scores (NaN scores rank lowest)."""
    mask = np.isfinite(scores)
    floor = scores[mask].min() - 1.0 if mask.any() else 0.0
    finite = np.where(mask, scores, floor)
    rho = spearmanr(finite, finals).statistic
    below = finite < np.median(finite)
    good = finals > np.median(finals)
    return {
        "kendall_tau": _tau(finite, finals),
        "spearman_rho": float(rho) if np.isfinite(rho) else 0.0,
        "mae": float(np.mean(np.abs(finite - finals))) if accuracy_scale else float("nan"),
        "top1_regret": float(100.0 * (finals.max() - finals[int(np.argmax(finite))])),
        "false_prune_rate": float((below & good).sum() / max(below.sum(), 1)),
    }


def resolve_ks(ks: Sequence[str | int | float], total: int) -> list[int]:
    """Epoch counts from ints or fractions/percentages of ``total`` (at least 2)."""
    out = []
    for k in ks:
        text = str(k).strip()
        if text.endswith("%"):
            value = round(float(text[:-1]) / 100.0 * total)
        elif "." in text:
            value = round(float(text) * total)
        else:
            value = int(text)
        if not 1 <= value <= total:
            raise ValueError(f"K={k!r} gives {value} epochs, outside 1..{total}.")
        out.append(max(2, value))
    return sorted(set(out))


def evaluate(
    runs: Sequence[dict[str, Any]],
    *,
    ks: Sequence[str | int | float] = ("2", "3", "25%", "50%"),
    predictors: Sequence[str] = DEFAULT_PREDICTORS,
    controls: bool = True,
    finals: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Scores, metrics and bootstrap intervals for every predictor and K.

    Args:
        runs: recorded runs of one table (and one mode).
        ks: observed epochs (ints, fractions like 0.25, or "25%").
        predictors: predictor names (see :data:`ncp_search.core.predictors.PREDICTORS`).
        controls: add ``+shuffled`` controls for the predictors that use ``beta_eff``.
        finals: the target final accuracies (default: each run's own
            ``final_val_accuracy``; pass others to measure transfer).
        n_boot: bootstrap resamples.
        seed: bootstrap seed.
    """
    if len(runs) < 4:
        raise ValueError(f"evaluation needs at least 4 runs, but the table has {len(runs)}.")
    total = min(len(r["curve"]) - 1 for r in runs)
    target = np.array(
        [r["final_val_accuracy"] for r in runs] if finals is None else finals, dtype=float
    )
    names = list(predictors)
    if controls:
        names += [f"{n}+shuffled" for n in predictors if uses_beta(n)]
    rng = np.random.default_rng(seed)
    boots = [rng.integers(0, len(runs), len(runs)) for _ in range(n_boot)]
    results: dict[str, Any] = {"n_runs": len(runs), "epochs": total, "ks": {}, "predictors": names}
    for k in resolve_ks(ks, total):
        scores = {name: predict(name, runs, k, total) for name in names}
        per_k: dict[str, Any] = {}
        for name, score in scores.items():
            scale = name.split("+")[0] not in SCORE_ONLY
            point = metrics(score, target, accuracy_scale=scale)
            samples = np.array(
                [list(metrics(score[b], target[b], accuracy_scale=scale).values()) for b in boots]
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # MAE of score-only: all NaN
                low, high = np.nanpercentile(samples, [2.5, 97.5], axis=0)
            per_k[name] = {
                m: {"value": point[m], "ci": [float(lo), float(hi)]}
                for m, lo, hi in zip(METRICS, low, high)
            }
            per_k[name]["scores"] = [float(s) for s in score]
        for name, score in scores.items():
            refs = {"last": scores["last"]} if "last" in scores and name != "last" else {}
            if name.endswith("+shuffled"):
                continue
            if f"{name}+shuffled" in scores:
                refs["shuffled"] = scores[f"{name}+shuffled"]
            for ref_name, ref in refs.items():
                diffs = np.array(
                    [_tau(score[b], target[b]) - _tau(ref[b], target[b]) for b in boots]
                )
                per_k[name][f"tau_minus_{ref_name}"] = {
                    "value": _tau(score, target) - _tau(ref, target),
                    "ci": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
                }
        results["ks"][str(k)] = per_k
    results["curves_cross"] = crossing_share(runs)
    return results


def _mode(run: dict[str, Any]) -> str:
    return run.get("config", {}).get("mode", "observer")


def evaluate_table(
    runs: Sequence[dict[str, Any]],
    *,
    mode: str | None = None,
    target: str = "own",
    **kwargs: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate` per mode of one table; ``target="observer"`` scores runs of
    other modes against the observer final of the same configuration."""
    modes = [mode] if mode else sorted({_mode(r) for r in runs})
    observer_finals = {
        r["config"].get("index"): r["final_val_accuracy"] for r in runs if _mode(r) == "observer"
    }
    out = {}
    for name in modes:
        subset = [r for r in runs if _mode(r) == name]
        if not subset:
            raise ValueError(f"no runs of mode {name!r} in the table.")
        if target == "observer" and name != "observer":
            subset = [r for r in subset if r["config"].get("index") in observer_finals]
            finals = [observer_finals[r["config"]["index"]] for r in subset]
            out[f"{name} -> observer final"] = evaluate(subset, finals=finals, **kwargs)
        else:
            out[name] = evaluate(subset, **kwargs)
    return out


def transfer_summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """How the ranking of configurations tuned with the probe as head transfers to
    ordinary fine-tuning (observer mode) of the same configurations."""
    head = {r["config"].get("index"): r["final_val_accuracy"] for r in runs
            if _mode(r) == "probe_head"}
    plain = {r["config"].get("index"): r["final_val_accuracy"] for r in runs
             if _mode(r) == "observer"}
    common = sorted(set(head) & set(plain))
    if len(common) < 4:
        return None
    a = np.array([head[i] for i in common], dtype=float)
    b = np.array([plain[i] for i in common], dtype=float)
    winner = int(np.argmax(a))
    return {
        "n_configs": len(common),
        "kendall_tau": _tau(a, b),
        "spearman_rho": float(spearmanr(a, b).statistic),
        "same_best": bool(winner == int(np.argmax(b))),
        "regret_of_probe_winner": float(b.max() - b[winner]),
    }


def format_summary(report: dict[str, Any], metric: str = "kendall_tau") -> str:
    """Mean ``metric`` across tables, per mode, K and predictor."""
    rows: dict[tuple[str, str, str], list[float]] = {}
    for table in report.values():
        for mode, results in table["modes"].items():
            for k, per_k in results["ks"].items():
                for name, row in per_k.items():
                    rows.setdefault((mode, k, name), []).append(row[metric]["value"])
    lines = [f"mean {metric} across {len(report)} tables (a table counts where it has the K)",
             f"{'mode':<28} {'K':>3} {'predictor':<24} {'mean':>7} {'tables':>6}"]
    for (mode, k, name), values in sorted(rows.items(), key=lambda x: (x[0][0], int(x[0][1]))):
        lines.append(f"{mode:<28} {k:>3} {name:<24} {np.mean(values):>7.3f} {len(values):>6}")
    return "\n".join(lines)


def crossing_share(runs: Sequence[dict[str, Any]]) -> float:
    """Share of run pairs whose validation curves swap order after epoch 1."""
    curves = [np.array([s["val_accuracy"] for s in r["curve"][1:]], dtype=float) for r in runs]
    length = min(len(c) for c in curves)
    crossed = pairs = 0
    for i in range(len(curves)):
        for j in range(i + 1, len(curves)):
            d = curves[i][:length] - curves[j][:length]
            d = d[np.isfinite(d) & (d != 0)]
            if len(d) == 0:
                continue
            pairs += 1
            crossed += bool(np.sign(d[0]) != np.sign(d[-1]))
    return crossed / max(pairs, 1)


def format_table(results: dict[str, Any], metric_names: Sequence[str] = METRICS) -> str:
    """A plain-text table: one row per predictor and K."""
    header = f"{'K':>3} {'predictor':<22}" + "".join(f"{m:>24}" for m in metric_names)
    header += f"{'tau - last':>22}{'tau - shuffled':>22}"
    lines = [header]
    for k, per_k in results["ks"].items():
        for name, row in per_k.items():
            cells = []
            for m in metric_names:
                value, (lo, hi) = row[m]["value"], row[m]["ci"]
                cell = "-" if math.isnan(value) else f"{value:.3f} [{lo:.2f},{hi:.2f}]"
                cells.append(f"{cell:>24}")
            for ref in ("last", "shuffled"):
                diff = row.get(f"tau_minus_{ref}")
                cell = "" if diff is None else (
                    f"{diff['value']:+.3f} [{diff['ci'][0]:+.2f},{diff['ci'][1]:+.2f}]"
                )
                cells.append(f"{cell:>22}")
            lines.append(f"{k:>3} {name:<22}" + "".join(cells))
    return "\n".join(lines)


def plot(results: dict[str, Any], path: str, title: str = "") -> None:
    """Metric vs K per predictor (one panel per metric; shuffled controls are left to
    the table and JSON), saved to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [int(k) for k in results["ks"]]
    names = [n for n in results["predictors"] if not n.endswith("+shuffled")]
    colors = plt.get_cmap("tab20").colors
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    for ax, metric in zip(axes.flat, METRICS):
        for position, name in enumerate(names):
            values = [results["ks"][str(k)][name][metric]["value"] for k in ks]
            values = [math.nan if v is None else v for v in values]  # JSON null = NaN
            if all(math.isnan(v) for v in values):
                continue
            style = "--" if not uses_beta(name) else "-"
            ax.plot(ks, values, style, marker="os^v"[position % 4], ms=4, lw=1.3,
                    color=colors[position % len(colors)], label=name)
        ax.set_title(metric)
        ax.set_xlabel("observed epochs K")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
        if metric == "mae":
            ax.set_yscale("log")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(handles, labels, loc="center", fontsize=8, ncol=2,
                         title="dashed: curve only; solid: uses beta_eff")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
