"""What the Optuna and the Ray Tune replay benchmarks share: reading a recorded
step, the epochs until the regret falls to a tolerance, the anytime-regret plot and
the names of rules with their options."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def step_value(step: dict[str, Any], key: str) -> float:
    """``step[key]`` as a float; a missing value or ``None`` (NaN in the table) is NaN."""
    value = step.get(key)
    return float("nan") if value is None else float(value)


def epochs_to_reach(curve: Sequence[tuple[int, float]], tolerance: float) -> float:
    """Epochs consumed when the regret first fell to ``tolerance`` points (inf if never)."""
    for epochs, regret in curve:
        if regret <= tolerance + 1e-9:
            return float(epochs)
    return math.inf


def plot_anytime_regret(report: dict[str, Any], path: str, *, group_key: str, title: str = "",
                        colormap: str = "tab10") -> None:
    """Mean anytime regret against epochs consumed, one line per ``report["summary"]``
    entry; runs are grouped by ``run[group_key]`` (``"pruner"`` or ``"scheduler"``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    horizon = max(r["epochs"] for r in report["runs"])
    grid = np.linspace(0, horizon, 300)
    colors = plt.get_cmap(colormap).colors
    top = 0.0
    for position, name in enumerate(report["summary"]):
        curves = []
        for run in (r for r in report["runs"] if r[group_key] == name):
            epochs = np.array([c[0] for c in run["curve"]])
            regret = np.array([c[1] for c in run["curve"]], dtype=float)
            index = np.searchsorted(epochs, grid, side="right") - 1
            curves.append(np.where(index >= 0, regret[np.maximum(index, 0)], np.nan))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # inf (no completed trial yet in some seed) leaves the mean undrawn
            mean = np.nanmean(np.array(curves, dtype=float), axis=0)
        finite = mean[np.isfinite(mean)]
        top = max(top, float(np.percentile(finite, 60)) if finite.size else 0.0)
        ax.plot(grid, mean, "-" if name.startswith("ncp") else "--",
                color=colors[position % len(colors)], label=name, lw=1.4)
    ax.axhline(report["tolerance"], color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, max(2.0, 1.5 * top))
    ax.set_xlabel("epochs consumed (all trials so far)")
    ax.set_ylabel("regret of best completed trial\n(accuracy points, mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass(frozen=True)
class RuleSpec:
    """A rule name of the replay benchmarks, parsed: ``<head>[:<predictor>][+shuffled]``
    followed by ``,key=value`` options, e.g. ``ncp:best,rf=3,alpha=0.2``,
    ``successive_halving,rf=4`` or ``ncp:ncp_raw+shuffled,rf=3``."""

    head: str
    predictor: str = ""
    shuffled: bool = False
    options: dict[str, float] = field(default_factory=dict)


def parse_spec(name: str) -> RuleSpec:
    """Parse a rule name (see :class:`RuleSpec`).

    Raises:
        ValueError: for an option that is not ``key=number``.
    """
    main, *pairs = name.split(",")
    head, _, predictor = main.partition(":")
    predictor, plus, suffix = predictor.partition("+")
    if plus and suffix != "shuffled":
        raise ValueError(f"rule {name!r}: the only suffix is '+shuffled', but got '+{suffix}'.")
    options: dict[str, float] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        try:
            options[key.strip()] = float(value)
        except ValueError:
            equals = ""
        if not equals:
            raise ValueError(f"rule {name!r}: options are ',key=number', but got {pair!r}.")
    return RuleSpec(head, predictor, bool(plus), options)
