"""The figures of the sweep report (matplotlib, Agg backend, imported lazily).

Every function takes the normalised trials of :mod:`ncp_search.app.report.html` (dicts with
``number``, ``state``, ``val``, ``beta``, ``pred`` as float arrays with NaN for
missing values, ``final`` as a float or NaN) and returns the PNG bytes of one
figure, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

STATE_COLORS = {
    "COMPLETE": "#1f77b4",
    "PRUNED": "#ff7f0e",
    "FAIL": "#d62728",
    "RUNNING": "#7f7f7f",
}
OTHER_COLOR = "#9467bd"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _color(state: str) -> str:
    return STATE_COLORS.get(state, OTHER_COLOR)


def _ordered(states: Sequence[str]) -> list[str]:
    """The distinct states, known ones first in a fixed order."""
    known = list(STATE_COLORS)
    return sorted(set(states), key=lambda s: (known.index(s) if s in known else len(known), s))


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _state_legend(ax: Any, states: Sequence[str], extra: Sequence[Any] = (), *,
                  bars: bool = False) -> None:
    """One legend entry per state present (lines or patches), outside the axes."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(color=_color(s), label=s.lower()) if bars
               else Line2D([], [], color=_color(s), marker="o", lw=1.5, label=s.lower())
               for s in _ordered(states)] + list(extra)
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def predicted_vs_actual(
    points: dict[int, tuple[np.ndarray, np.ndarray]],
    pruned_predictions: np.ndarray,
    metric: str,
) -> bytes | None:
    """Prediction after epoch k against the actual final value, one marker per k.

    Args:
        points: ``{k: (predicted, actual)}`` for COMPLETE trials (finite pairs only).
        pruned_predictions: last predictions of PRUNED trials (no actual final),
            drawn as ticks along the bottom of the axes.
        metric: the metric's name, for the axis labels.

    Returns:
        PNG bytes, or ``None`` when there is no point to draw.
    """
    if not any(len(p) for p, _ in points.values()) and not len(pruned_predictions):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    markers = "os^Dv<>p"
    values: list[float] = []
    for position, (k, (predicted, actual)) in enumerate(sorted(points.items())):
        if not len(predicted):
            continue
        ax.scatter(predicted, actual, s=28, alpha=0.8, marker=markers[position % len(markers)],
                   label=f"predicted after epoch {k}")
        values.extend(predicted.tolist() + actual.tolist())
    if len(pruned_predictions):
        ax.scatter(pruned_predictions, np.full(len(pruned_predictions), 0.03), marker="|",
                   s=150, color=STATE_COLORS["PRUNED"], transform=ax.get_xaxis_transform(),
                   label="pruned: last prediction (no final)")
        values.extend(pruned_predictions.tolist())
    low, high = min(values), max(values)
    pad = 0.05 * (high - low) if high > low else 0.05 * max(abs(high), 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=1, label="y = x")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(f"predicted final {metric}")
    ax.set_ylabel(f"actual final {metric}")
    ax.set_title("Predicted vs actual final value (complete trials)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def beta_trajectories(trials: Sequence[dict[str, Any]]) -> bytes | None:
    """beta_eff per epoch for every trial, coloured by state; ``None`` without beta."""
    drawn = [t for t in trials if np.isfinite(t["beta"]).any()]
    if not drawn:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for trial in drawn:
        epochs = np.arange(1, len(trial["beta"]) + 1)
        finite = np.isfinite(trial["beta"])
        ax.plot(epochs[finite], trial["beta"][finite], "-", marker=".", ms=4, lw=1,
                alpha=0.75, color=_color(trial["state"]))
    ax.set_xlabel("epoch")
    ax.set_ylabel("beta_eff")
    ax.set_title("beta_eff trajectories")
    ax.grid(alpha=0.3)
    _state_legend(ax, [t["state"] for t in drawn])
    return _png(fig)


def optimisation_history(
    trials: Sequence[dict[str, Any]], best_so_far: Sequence[tuple[int, float]], metric: str
) -> bytes | None:
    """Each trial's final (last) value against its number, with the best-so-far line
    over COMPLETE trials; ``None`` when no trial has a finite value."""
    drawn = [t for t in trials if math.isfinite(t["final"])]
    if not drawn:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for state in _ordered([t["state"] for t in drawn]):
        group = [t for t in drawn if t["state"] == state]
        ax.scatter([t["number"] for t in group], [t["final"] for t in group], s=28,
                   color=_color(state), label=f"{state.lower()} (last value)")
    if best_so_far:
        numbers, values = zip(*best_so_far)
        last = max(t["number"] for t in drawn)
        ax.step(list(numbers) + [max(last, numbers[-1])], list(values) + [values[-1]],
                where="post", color="k", lw=1.3, label="best so far (complete)")
    ax.set_xlabel("trial number")
    ax.set_ylabel(metric)
    ax.set_title("Optimisation history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def epochs_saved(trials: Sequence[dict[str, Any]], budget: Sequence[int]) -> bytes | None:
    """Stacked bars per trial: epochs trained (by state) and epochs saved by pruning.

    Args:
        trials: normalised trials, ordered by number.
        budget: epochs each trial would have used without pruning.
    """
    if not trials:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(7.5, min(14.0, 0.25 * len(trials) + 5.5)), 4))
    numbers = [t["number"] for t in trials]
    trained = [len(t["val"]) for t in trials]
    saved = [max(0, b - n) for b, n in zip(budget, trained)]
    ax.bar(numbers, trained, color=[_color(t["state"]) for t in trials], width=0.8)
    hatched = ax.bar(numbers, saved, bottom=trained, color="none", edgecolor="#999999",
                     hatch="//", width=0.8, label="saved by pruning")
    ax.set_xlabel("trial number")
    ax.set_ylabel("epochs")
    total, used = sum(budget), sum(trained)
    share = 100.0 * (total - used) / total if total else 0.0
    ax.set_title(f"Epochs: {used} trained of {total} without pruning ({share:.0f}% saved)")
    ax.grid(alpha=0.3, axis="y")
    _state_legend(ax, [t["state"] for t in trials], extra=[hatched], bars=True)
    return _png(fig)
