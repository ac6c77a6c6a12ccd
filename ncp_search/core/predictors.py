"""Predictors of a run's final accuracy from the first K epochs, selectable by name.

Every predictor maps a list of runs (tables written by ``ncp-search record``) and
the number of observed epochs K to one score per run: the predicted final
accuracy (higher is better), or for ``tse`` a score on another scale. Predictors
whose name starts with ``xtrial_`` learn across trials the way a pruner inside a
study can: run ``i`` is predicted by a model fitted only on runs ``0 .. i-1``
(the trials completed before it, in recording order); with fewer than
``MIN_COMPLETED`` of them it falls back to the last observed value.

Shuffled controls: ``<name>+shuffled`` runs the same predictor after giving each
run the ``beta_eff`` series of another run (a fixed derangement). A ``beta_eff``
predictor earns credit for ``beta_eff`` only where it beats its control.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import BayesianRidge

MIN_COMPLETED = 5
# Per-step fields that come from the probe (replaced in shuffled controls).
BETA_FIELDS = (
    "beta_eff",
    "beta_eff_batch2",
    "probe_numerator",
    "probe_denominator",
    "probe_loss",
    "probe_accuracy",
    "probe_feature_norm",
    "probe_dead_fraction",
    "probe_delta_in_norm",
    "probe_delta_out_norm",
)

Run = dict[str, Any]


def _series(run: Run, key: str, k: int) -> np.ndarray:
    """Values of ``key`` at steps 1..k (NaN where missing)."""
    values = [step.get(key) for step in run["curve"] if 1 <= step["step"] <= k]
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _at0(run: Run, key: str) -> float:
    value = run["curve"][0].get(key)
    return float("nan") if value is None else float(value)


# ---------------------------------------------------------------- curve-only
def last_value(runs: Sequence[Run], k: int, total: int) -> np.ndarray:
    return np.array([_series(r, "val_accuracy", k)[-1] for r in runs])


def best_so_far(runs: Sequence[Run], k: int, total: int) -> np.ndarray:
    return np.array([np.nanmax(_series(r, "val_accuracy", k)) for r in runs])


def training_speed(runs: Sequence[Run], k: int, total: int) -> np.ndarray:
    """TSE: minus the sum of training losses over the first k epochs (a score)."""
    return np.array([-np.nansum(_series(r, "train_loss", k)) for r in runs])


def _pow3(t: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(t, -alpha)


def power_law(runs: Sequence[Run], k: int, total: int) -> np.ndarray:
    """pow3 learning-curve extrapolation ``c - a t^-alpha`` to the last epoch
    (Domhan et al. 2015's simplest family); falls back to the last value."""
    from scipy.optimize import curve_fit

    out = []
    for run in runs:
        y = _series(run, "val_accuracy", k)
        t = np.arange(1, len(y) + 1, dtype=float)
        fallback = y[-1]
        if len(y) < 3 or not np.all(np.isfinite(y)):
            out.append(fallback)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params, _ = curve_fit(
                    _pow3, t, y, p0=(y[-1], max(y[-1] - y[0], 1e-3), 0.5),
                    bounds=([0.0, -1.0, 0.0], [1.0, 1.0, 5.0]), maxfev=2000,
                )
            value = float(_pow3(np.array([float(total)]), *params)[0])
        except (RuntimeError, ValueError):
            value = fallback
        out.append(value if math.isfinite(value) else fallback)
    return np.array(out)


# --------------------------------------------------------------- NCP (per run)
def _h0(x: np.ndarray, y: np.ndarray, fallback: float) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return fallback
    model = BayesianRidge().fit(x[ok, None], y[ok])
    return float(model.predict(np.zeros((1, 1)))[0])


def _ncp_with(transform: Callable[[Run, int], np.ndarray]):
    def predict(runs: Sequence[Run], k: int, total: int) -> np.ndarray:
        out = []
        for run in runs:
            acc = _series(run, "val_accuracy", k)
            out.append(_h0(transform(run, k), acc, acc[-1]))
        return np.array(out)

    return predict


def _raw(run: Run, k: int) -> np.ndarray:
    return _series(run, "beta_eff", k)


def _per_feature_norm(run: Run, k: int) -> np.ndarray:
    return _series(run, "beta_eff", k) / _series(run, "probe_feature_norm", k) ** 2


def _per_delta_norms(run: Run, k: int) -> np.ndarray:
    return _series(run, "beta_eff", k) / (
        _series(run, "probe_delta_in_norm", k) * _series(run, "probe_delta_out_norm", k)
    )


def _two_batch_mean(run: Run, k: int) -> np.ndarray:
    return 0.5 * (_series(run, "beta_eff", k) + _series(run, "beta_eff_batch2", k))


def _smoothed(run: Run, k: int) -> np.ndarray:
    beta = _series(run, "beta_eff", k)
    return np.array([np.nanmean(beta[max(0, i - 2) : i + 1]) for i in range(len(beta))])


def ncp_collapse_guard(runs: Sequence[Run], k: int, total: int) -> np.ndarray:
    """``ncp_raw``, except that a run whose probe units are mostly dead (collapsed
    features, where beta_eff ~ 0 reads as "converged") keeps its last value."""
    raw = _ncp_with(_raw)(runs, k, total)
    last = last_value(runs, k, total)
    dead = np.array([_series(r, "probe_dead_fraction", k)[-1] for r in runs])
    return np.where(np.nan_to_num(dead, nan=1.0) > 0.5, np.minimum(last, raw), raw)


def ncp_hybrid(runs: Sequence[Run], k: int, total: int) -> np.ndarray:
    """BayesianRidge on (beta_eff, epoch) read at beta_eff = 0 and the last epoch."""
    out = []
    for run in runs:
        acc = _series(run, "val_accuracy", k)
        beta = _series(run, "beta_eff", k)
        t = np.arange(1, len(acc) + 1, dtype=float)
        ok = np.isfinite(acc) & np.isfinite(beta)
        if ok.sum() < 3:
            out.append(acc[-1])
            continue
        model = BayesianRidge().fit(np.c_[beta[ok], np.log(t[ok])], acc[ok])
        out.append(float(model.predict(np.array([[0.0, math.log(total)]]))[0]))
    return np.array(out)


# ------------------------------------------------------------ cross-trial models
def curve_features(run: Run, k: int) -> list[float]:
    acc = _series(run, "val_accuracy", k)
    loss = _series(run, "train_loss", k)
    return [
        acc[-1],
        np.nanmax(acc),
        acc[-1] - acc[0],
        _at0(run, "val_accuracy"),
        -np.nanmean(loss),
        float(np.log1p(np.nanmean(np.abs(np.diff(acc))) if len(acc) > 1 else 0.0)),
    ]


def beta_features(run: Run, k: int) -> list[float]:
    beta = _series(run, "beta_eff", k)
    norm = _series(run, "probe_feature_norm", k)
    dead = _series(run, "probe_dead_fraction", k)
    probe_loss = _series(run, "probe_loss", k)
    scaled = beta / np.maximum(norm, 1e-12) ** 2
    return [
        float(np.sign(beta[-1]) * np.log1p(abs(beta[-1]))),
        float(np.nanmedian(scaled)),
        float(np.log(np.maximum(norm[-1], 1e-12) / max(_at0(run, "probe_feature_norm"), 1e-12))),
        float(dead[-1]),
        float(probe_loss[-1]),
        float(np.nanmean(_series(run, "probe_accuracy", k))),
    ]


class CrossTrialModel:
    """BayesianRidge from early features of completed runs to their final accuracy
    (features standardised on the training runs)."""

    def __init__(self, x: np.ndarray, finals: np.ndarray) -> None:
        self.mean = x.mean(0)
        self.std = x.std(0) + 1e-9
        self.model = BayesianRidge().fit((x - self.mean) / self.std, finals)

    def predict(self, row: np.ndarray) -> float:
        return float(self.model.predict(((row - self.mean) / self.std)[None])[0])


def feature_matrix(featurize: Callable[[Run, int], list[float]], runs: Sequence[Run], k: int):
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN-only series of diverged runs
        x = np.array([featurize(r, k) for r in runs], dtype=float).reshape(len(runs), -1)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _targets(runs: Sequence[Run], k: int, residual: bool) -> np.ndarray:
    finals = np.array([r["final_val_accuracy"] for r in runs], dtype=float)
    if residual:
        finals = finals - np.array([_series(r, "val_accuracy", k)[-1] for r in runs])
    return finals


def fit_cross_trial(
    featurize: Callable[[Run, int], list[float]],
    runs: Sequence[Run],
    k: int,
    residual: bool = False,
) -> CrossTrialModel | None:
    """The model on the runs with a finite target, or None with fewer than MIN_COMPLETED.

    With ``residual`` the model learns ``final - last value``: BayesianRidge's
    shrinkage then falls back to the last value when the features carry nothing.
    """
    targets = _targets(runs, k, residual)
    done = np.isfinite(targets)
    if done.sum() < MIN_COMPLETED:
        return None
    return CrossTrialModel(feature_matrix(featurize, runs, k)[done], targets[done])


def _cross_trial(featurize: Callable[[Run, int], list[float]], residual: bool = False):
    def predict(
        runs: Sequence[Run], k: int, total: int, *, last_only: bool = False
    ) -> np.ndarray:
        x = feature_matrix(featurize, runs, k)
        targets = _targets(runs, k, residual)
        last = last_value(runs, k, total)
        out = last.copy()
        first = max(MIN_COMPLETED, len(runs) - 1) if last_only else MIN_COMPLETED
        for i in range(first, len(runs)):
            done = np.isfinite(targets[:i])
            if done.sum() < MIN_COMPLETED:
                continue
            value = CrossTrialModel(x[:i][done], targets[:i][done]).predict(x[i])
            out[i] = value + last[i] if residual else value
        return out

    predict.cross_trial = True  # type: ignore[attr-defined]
    predict.featurize = featurize  # type: ignore[attr-defined]
    predict.residual = residual  # type: ignore[attr-defined]
    return predict


def curve_shape_features(run: Run, k: int) -> list[float]:
    """Curve features without the level itself (for residual models)."""
    return curve_features(run, k)[1:]


PREDICTORS: dict[str, Callable[[Sequence[Run], int, int], np.ndarray]] = {
    "last": last_value,
    "best": best_so_far,
    "pow3": power_law,
    "tse": training_speed,
    "ncp_raw": _ncp_with(_raw),
    "ncp_two_batch": _ncp_with(_two_batch_mean),
    "ncp_feature_norm": _ncp_with(_per_feature_norm),
    "ncp_delta_norms": _ncp_with(_per_delta_norms),
    "ncp_smoothed": _ncp_with(_smoothed),
    "ncp_collapse_guard": ncp_collapse_guard,
    "ncp_hybrid": ncp_hybrid,
    "xtrial_curve": _cross_trial(curve_features),
    "xtrial_ncp": _cross_trial(lambda r, k: curve_features(r, k) + beta_features(r, k)),
    "xtrial_beta_only": _cross_trial(beta_features),
    "xtrial_resid_curve": _cross_trial(curve_shape_features, residual=True),
    "xtrial_resid_ncp": _cross_trial(
        lambda r, k: curve_shape_features(r, k) + beta_features(r, k), residual=True
    ),
    "xtrial_resid_beta": _cross_trial(beta_features, residual=True),
}
CURVE_ONLY = ("last", "best", "pow3", "tse", "xtrial_curve", "xtrial_resid_curve")
SCORE_ONLY = ("tse",)  # not on the accuracy scale: no MAE


def uses_beta(name: str) -> bool:
    """Whether a predictor reads the probe's measurements."""
    return name.split("+")[0].split("@")[0] not in CURVE_ONLY


def shuffled(runs: Sequence[Run], seed: int = 0) -> list[Run]:
    """Runs whose probe fields come from another run (a seeded derangement)."""
    n = len(runs)
    rng = np.random.default_rng(seed)
    order = np.arange(n)
    while n > 1 and np.any(order == np.arange(n)):
        order = rng.permutation(n)
    out = []
    for run, donor_index in zip(runs, order):
        donor = runs[int(donor_index)]["curve"]
        curve = []
        for position, step in enumerate(run["curve"]):
            source = donor[min(position, len(donor) - 1)]
            curve.append({**step, **{f: source.get(f) for f in BETA_FIELDS}})
        out.append({**run, "curve": curve})
    return out


def with_probe(runs: Sequence[Run], probe: str) -> list[Run]:
    """Runs whose ``beta_eff`` is the one of another probe recorded beside the main one
    (``beta_eff@<probe>``, or ``beta_eff_<probe>`` such as ``batch2``)."""
    out = []
    for run in runs:
        curve = []
        for step in run["curve"]:
            key = f"beta_eff@{probe}" if f"beta_eff@{probe}" in step else f"beta_eff_{probe}"
            if key not in step:
                raise ValueError(
                    f"run {run.get('trial')!r} has no {key!r}; record the workload with "
                    f"extra_probes naming {probe!r}."
                )
            curve.append({**step, "beta_eff": step[key]})
        out.append({**run, "curve": curve})
    return out


def is_cross_trial(name: str) -> bool:
    """Whether a predictor learns from other (completed) runs."""
    base = name.split("+")[0].split("@")[0]
    return getattr(PREDICTORS.get(base), "cross_trial", False)


def predict(
    name: str, runs: Sequence[Run], k: int, total: int, *, last_only: bool = False
) -> np.ndarray:
    """Scores of predictor ``name`` after ``k`` epochs.

    ``name`` is ``<predictor>[@<probe>][+shuffled]``: ``@wide`` reads the
    ``beta_eff`` of the extra probe named ``wide``; ``+shuffled`` is the control.
    With ``last_only`` only the last run is scored (a pruner's question: the
    earlier runs are its completed trials); the result then has one element.
    """
    head, _, suffix = name.partition("+")
    base, _, probe = head.partition("@")
    if base not in PREDICTORS or suffix not in ("", "shuffled"):
        raise ValueError(
            f"unknown predictor {name!r}; available: {sorted(PREDICTORS)} "
            "(append '@<probe>' for an extra probe, '+shuffled' for the control)."
        )
    if probe:
        runs = with_probe(runs, probe)
    if suffix:
        runs = shuffled(runs)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices of diverged runs
        if not last_only:
            return PREDICTORS[base](runs, k, total)
        if is_cross_trial(base):
            return PREDICTORS[base](runs, k, total, last_only=True)[-1:]
        return PREDICTORS[base](list(runs[-1:]), k, total)
