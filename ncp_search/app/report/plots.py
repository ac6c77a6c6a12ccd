"""The figures of the sweep report (matplotlib, Agg backend, imported lazily).

Every function takes the normalised trials of :mod:`ncp_search.app.report.html` (dicts with
``number``, ``state``, ``val``, ``beta``, ``pred`` as float arrays with NaN for
missing values, ``final`` as a float for COMPLETE trials and NaN for the others,
``last`` the last finite value, ``stop`` for stopped trials a dict with ``epoch``,
``at`` (the value there), ``value`` (the prediction compared) and ``threshold``,
NaN where not recorded) and returns the PNG bytes of one
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
    "PAUSED": "#fdae6b",  # ncp_pause: paused for good, its checkpoint kept
    "FAIL": "#d62728",
    "RUNNING": "#7f7f7f",
}
OTHER_COLOR = "#9467bd"
THRESHOLD_COLOR = "#c51b7d"  # the rule's threshold at a stop (no state uses it)


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


def _png(fig: Any, *, tight: bool = True) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    if tight:
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


def _integer_x(ax: Any) -> None:
    """Epochs and trial numbers are whole numbers: no 1.25 ticks."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _stop_handles(trials: Sequence[dict[str, Any]]) -> list[Any]:
    """Legend entries for what the stop points of ``trials`` show."""
    from matplotlib.lines import Line2D

    stops = [t["stop"] for t in trials if t.get("stop")]
    handles = [Line2D([], [], color="k", marker="X", lw=0, ms=8, label="stopped here")]
    if any(math.isfinite(s["threshold"]) for s in stops):
        handles.append(Line2D([], [], color=THRESHOLD_COLOR, marker="_", lw=0, ms=14, mew=2.5,
                              label="rule's threshold at the stop"))
    if any(math.isfinite(s["value"]) for s in stops):
        handles.append(Line2D([], [], color="k", marker="o", mfc="none", lw=0, ms=7,
                              label="prediction compared"))
    return handles if stops else []


def _draw_stop(ax: Any, trial: dict[str, Any], *, size: float = 1.0) -> None:
    """The stop point of a stopped trial: an X on its curve, and where known the
    compared prediction (hollow circle) and the threshold (a magenta bar)."""
    stop = trial.get("stop")
    if not stop:
        return
    epoch, at = stop["epoch"], stop["at"]
    if math.isfinite(at):
        ax.plot([epoch], [at], "X", color="k", ms=8 * size, zorder=5)
    value, threshold = stop["value"], stop["threshold"]
    if math.isfinite(threshold):
        ax.plot([epoch], [threshold], "_", color=THRESHOLD_COLOR, ms=16 * size, mew=2.5,
                zorder=6)
        if math.isfinite(value):
            ax.plot([epoch, epoch], [value, threshold], ":", color=THRESHOLD_COLOR, lw=1,
                    zorder=4)
    if math.isfinite(value):
        ax.plot([epoch], [value], "o", mfc="none", color="k", ms=7 * size, zorder=6)


def _per_epoch(drawn: Sequence[dict[str, Any]], key: str, *, lw: float,
               alpha: float) -> tuple[Any, Any]:
    """A figure with each trial's series ``key`` per epoch (1-based), coloured by state."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for trial in drawn:
        epochs = np.arange(1, len(trial[key]) + 1)
        finite = np.isfinite(trial[key])
        ax.plot(epochs[finite], trial[key][finite], "-", marker=".", ms=4, lw=lw,
                alpha=alpha, color=_color(trial["state"]))
    return fig, ax


def learning_curves(trials: Sequence[dict[str, Any]], metric: str) -> bytes | None:
    """Every trial's curve on one axis, coloured by state, with its stop point
    (and the threshold where recorded); ``None`` when no trial has a value."""
    drawn = [t for t in trials if np.isfinite(t["val"]).any()]
    if not drawn:
        return None
    fig, ax = _per_epoch(drawn, "val", lw=1.2, alpha=0.8)
    for trial in drawn:
        _draw_stop(ax, trial)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title("Learning curves and where trials were stopped")
    ax.grid(alpha=0.3)
    _integer_x(ax)
    _state_legend(ax, [t["state"] for t in drawn], extra=_stop_handles(drawn))
    return _png(fig)


def trial_curves(trials: Sequence[dict[str, Any]], metric: str,
                 max_panels: int = 30) -> bytes | None:
    """One small panel per trial (the first ``max_panels`` by number): its curve,
    its predicted finals (dashed) and its stop point with the threshold where
    recorded; ``None`` when no trial has a value."""
    drawn = [t for t in trials if np.isfinite(t["val"]).any()][:max_panels]
    if not drawn:
        return None
    plt = _pyplot()
    columns = min(5, len(drawn))
    rows = math.ceil(len(drawn) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns + 1.6, 1.9 * rows + 0.6),
                             sharex=True, sharey=True, squeeze=False)
    for ax in axes.flat[len(drawn):]:
        ax.set_visible(False)
    for ax, trial in zip(axes.flat, drawn):
        epochs = np.arange(1, len(trial["val"]) + 1)
        finite = np.isfinite(trial["val"])
        ax.plot(epochs[finite], trial["val"][finite], "-", marker=".", ms=5, lw=1.8,
                color=_color(trial["state"]))
        pred = trial["pred"]
        has_pred = np.isfinite(pred)
        if has_pred.any():
            ax.plot(np.arange(1, len(pred) + 1)[has_pred], pred[has_pred], "--", lw=1,
                    color="#555555")
        _draw_stop(ax, trial, size=0.8)
        label = trial["state"].lower()
        if trial.get("stop"):
            label += f" @{trial['stop']['epoch']}"
        ax.set_title(f"#{trial['number']} {label}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        _integer_x(ax)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="#555555", ls="--", label="predicted final")]
    handles += _stop_handles(drawn)
    fig.legend(handles=handles, fontsize=8, loc="upper center", ncol=len(handles),
               bbox_to_anchor=(0.5, 1.0))
    fig.supxlabel("epoch", fontsize=9)
    fig.supylabel(metric, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return _png(fig, tight=False)


def predicted_vs_actual(
    points: dict[int, tuple[np.ndarray, np.ndarray]],
    metric: str,
) -> bytes | None:
    """Prediction after epoch k against the actual final value, one marker per k.

    Args:
        points: ``{k: (predicted, actual)}`` for COMPLETE trials (finite pairs only):
            a stopped trial has no actual final, so it cannot be drawn here.
        metric: the metric's name, for the axis labels.

    Returns:
        PNG bytes, or ``None`` when there is no point to draw.
    """
    if not any(len(p) for p, _ in points.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    markers = "os^Dv<>p"
    values: list[float] = []
    n = max(len(p) for p, _ in points.values())
    for position, (k, (predicted, actual)) in enumerate(sorted(points.items())):
        if not len(predicted):
            continue
        ax.scatter(predicted, actual, s=28, alpha=0.8, marker=markers[position % len(markers)],
                   label=f"predicted after epoch {k}")
        values.extend(predicted.tolist() + actual.tolist())
    low, high = min(values), max(values)
    pad = 0.05 * (high - low) if high > low else 0.05 * max(abs(high), 1.0)
    ax.plot([low - pad, high + pad], [low - pad, high + pad], "k--", lw=1, label="y = x")
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_xlabel(f"predicted final {metric}")
    ax.set_ylabel(f"actual final {metric}")
    ax.set_title(f"Predicted vs actual final value (complete trials, n = {n})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def beta_trajectories(trials: Sequence[dict[str, Any]],
                      title: str = "beta_eff per epoch") -> bytes | None:
    """beta_eff per epoch for every trial, coloured by state; ``None`` without beta."""
    drawn = [t for t in trials if np.isfinite(t["beta"]).any()]
    if not drawn:
        return None
    fig, ax = _per_epoch(drawn, "beta", lw=1, alpha=0.75)
    ax.set_xlabel("epoch")
    ax.set_ylabel("beta_eff")
    ax.set_title(title)
    _integer_x(ax)
    ax.grid(alpha=0.3)
    _state_legend(ax, [t["state"] for t in drawn])
    return _png(fig)


def optimisation_history(
    trials: Sequence[dict[str, Any]], best_so_far: Sequence[tuple[int, float]], metric: str
) -> bytes | None:
    """Each trial's final value (COMPLETE) or last value (the others, hollow: not a
    final) against its number, with the best-so-far line over COMPLETE trials;
    ``None`` when no trial has a finite value."""
    drawn = [t for t in trials if math.isfinite(t["final"]) or math.isfinite(t["last"])]
    if not drawn:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for state in _ordered([t["state"] for t in drawn]):
        group = [t for t in drawn if t["state"] == state]
        if state == "COMPLETE":
            ax.scatter([t["number"] for t in group], [t["final"] for t in group], s=28,
                       color=_color(state), label="complete (final)")
        else:
            ax.scatter([t["number"] for t in group], [t["last"] for t in group], s=28,
                       facecolors="none", edgecolors=_color(state),
                       label=f"{state.lower()} (last value, not a final)")
    if best_so_far:
        numbers, values = zip(*best_so_far)
        last = max(t["number"] for t in drawn)
        ax.step(list(numbers) + [max(last, numbers[-1])], list(values) + [values[-1]],
                where="post", color="k", lw=1.3, label="best so far (complete)")
    ax.set_xlabel("trial number")
    ax.set_ylabel(metric)
    ax.set_title("Optimisation history")
    _integer_x(ax)
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
                     hatch="//", width=0.8, label="not trained (saved)")
    ax.set_xlabel("trial number")
    ax.set_ylabel("epochs")
    total, used = sum(budget), sum(trained)
    share = 100.0 * (total - used) / total if total else 0.0
    ax.set_title(f"Epochs: {used} trained of {total} without pruning ({share:.0f}% saved)")
    ax.grid(alpha=0.3, axis="y")
    _integer_x(ax)
    _state_legend(ax, [t["state"] for t in trials], extra=[hatched], bars=True)
    return _png(fig)
