"""Predictors of a trial's final value from its history so far, selectable by name.

Each :class:`Predictor` in :data:`PREDICTORS` maps one :class:`TrialHistory` (and,
for cross-trial predictors, the completed trials seen so far) to a predicted
final value on the history's "higher is better" scale. Each declares what it
needs, so an adapter can refuse in ``__init__`` a predictor it cannot feed:

- ``requires``: the side series it reads (``beta_eff``, probe terms, ``train_loss``);
- ``needs_horizon``: whether it extrapolates to the last step of a complete trial;
- ``cross_trial``: whether it learns from completed trials (their finals).

A predictor whose inputs are missing at run time returns NaN (the rules then keep
the trial running); one whose inputs are there but too few for a fit returns the
last observed value, as documented per predictor.

scikit-learn and SciPy are imported inside the functions that fit, so importing
this module costs NumPy only.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ncp_search.core.history import TrialHistory

MIN_COMPLETED = 5  # cross-trial predictors fall back to the last value below this

PerTrial = Callable[[TrialHistory, float], float]
Featurize = Callable[[TrialHistory], list[float]]


@dataclass(frozen=True)
class Predictor:
    """A named predictor and what it needs.

    Attributes:
        name: the registry name.
        predict: ``(history, horizon) -> predicted final`` (per-trial predictors).
        requires: side series read from the history.
        needs_horizon: extrapolates to ``horizon`` (the last step of a complete trial).
        cross_trial: learns from completed trials (``featurize`` / ``residual`` set).
        score_only: the output is a ranking score, not on the metric's scale (no
            rule may compare it with finals).
        summary: one line for help texts and logs.
    """

    name: str
    predict: PerTrial | None = None
    requires: tuple[str, ...] = ()
    needs_horizon: bool = False
    cross_trial: bool = False
    featurize: Featurize | None = None
    residual: bool = False
    score_only: bool = False
    summary: str = ""

    @property
    def uses_beta_eff(self) -> bool:
        """Whether it reads anything measured by the probe."""
        return any(r.startswith(("beta_eff", "probe_")) for r in self.requires)


# ---------------------------------------------------------------- helpers
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence NumPy's all-NaN warnings of diverged runs inside a prediction."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _last(history: TrialHistory) -> float:
    return float(history.values[-1]) if len(history) else math.nan


def _h0(x: np.ndarray, y: np.ndarray, fallback: float) -> float:
    """BayesianRidge ``y = h(x)`` read at ``x = 0`` (Jiang et al. 2024, Algorithm 1)."""
    from sklearn.linear_model import BayesianRidge

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2:
        return fallback
    model = BayesianRidge().fit(x[ok, None], y[ok])
    return float(model.predict(np.zeros((1, 1)))[0])


# ---------------------------------------------------------------- curve only
def last_value(history: TrialHistory, horizon: float) -> float:
    """The latest value."""
    return _last(history)


def best_so_far(history: TrialHistory, horizon: float) -> float:
    """The best value so far."""
    finite = history.values[np.isfinite(history.values)]
    return float(finite.max()) if finite.size else math.nan


def training_speed(history: TrialHistory, horizon: float) -> float:
    """TSE: minus the sum of training losses so far (a score)."""
    return float(-np.nansum(history.get("train_loss")))


def _pow3(t: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(t, -alpha)


def power_law(history: TrialHistory, horizon: float) -> float:
    """pow3 extrapolation ``c - a t^-alpha`` to the horizon (Domhan et al. 2015's
    simplest family), ``t`` counting training progress from the first report.

    Values inside [0, 1] (accuracies) are fitted with ``c`` in [0, 1]; any other
    scale (a negated loss) is fitted after rescaling the observed range to [0, 1].
    Falls back to the last value with fewer than 3 finite points or no fit.
    """
    from scipy.optimize import curve_fit

    y = history.values
    fallback = _last(history)
    if len(y) < 3 or not np.all(np.isfinite(y)):
        return fallback
    t, t_end = history.elapsed(horizon)
    unit = bool(np.all((y >= 0.0) & (y <= 1.0)))
    low, span = (0.0, 1.0) if unit else (float(y.min()), float(np.ptp(y)) or 1.0)
    z = (y - low) / span
    upper = 1.0 if unit else 10.0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, _ = curve_fit(
                _pow3, t, z, p0=(min(z[-1], upper), max(z[-1] - z[0], 1e-3), 0.5),
                bounds=([0.0 if unit else -upper, -1.0 if unit else -upper, 0.0],
                        [upper, 1.0 if unit else upper, 5.0]),
                maxfev=2000,
            )
        value = low + span * float(_pow3(np.array([t_end]), *params)[0])
    except (RuntimeError, ValueError):
        return fallback
    return value if math.isfinite(value) else fallback


# ---------------------------------------------------------------- NCP per trial
def _ncp_with(transform: Callable[[TrialHistory], np.ndarray]) -> PerTrial:
    def predict(history: TrialHistory, horizon: float) -> float:
        with _quiet():
            return _h0(transform(history), history.values, _last(history))

    return predict


def _raw(history: TrialHistory) -> np.ndarray:
    return history.get("beta_eff")


def _per_feature_norm(history: TrialHistory) -> np.ndarray:
    return history.get("beta_eff") / history.get("probe_feature_norm") ** 2


def _per_delta_norms(history: TrialHistory) -> np.ndarray:
    return history.get("beta_eff") / (
        history.get("probe_delta_in_norm") * history.get("probe_delta_out_norm")
    )


def _two_batch_mean(history: TrialHistory) -> np.ndarray:
    return 0.5 * (history.get("beta_eff") + history.get("beta_eff_batch2"))


def _smoothed(history: TrialHistory) -> np.ndarray:
    beta = history.get("beta_eff")
    with _quiet():
        return np.array([np.nanmean(beta[max(0, i - 2): i + 1]) for i in range(len(beta))])


def ncp_collapse_guard(history: TrialHistory, horizon: float) -> float:
    """``ncp_raw``, except that a trial whose probe units are mostly dead (collapsed
    features, where beta_eff ~ 0 reads as "converged") keeps min(last, ncp_raw)."""
    raw = _ncp_with(_raw)(history, horizon)
    dead = history.get("probe_dead_fraction")
    dead_now = float(dead[-1]) if len(dead) and math.isfinite(dead[-1]) else 1.0
    return min(_last(history), raw) if dead_now > 0.5 else raw


def ncp_hybrid(history: TrialHistory, horizon: float) -> float:
    """BayesianRidge on (beta_eff, log progress) read at beta_eff = 0 and the horizon."""
    from sklearn.linear_model import BayesianRidge

    acc = history.values
    beta = history.get("beta_eff")
    t, t_end = history.elapsed(horizon)
    ok = np.isfinite(acc) & np.isfinite(beta)
    if ok.sum() < 3:
        return _last(history)
    model = BayesianRidge().fit(np.c_[beta[ok], np.log(t[ok])], acc[ok])
    return float(model.predict(np.array([[0.0, math.log(t_end)]]))[0])


# ---------------------------------------------------------------- cross-trial
def curve_features(history: TrialHistory) -> list[float]:
    acc = history.values
    loss = history.get("train_loss")
    with _quiet():
        return [
            acc[-1],
            np.nanmax(acc),
            acc[-1] - acc[0],
            history.initial.get("val_accuracy", math.nan),
            -np.nanmean(loss),
            float(np.log1p(np.nanmean(np.abs(np.diff(acc))) if len(acc) > 1 else 0.0)),
        ]


def curve_shape_features(history: TrialHistory) -> list[float]:
    """Curve features without the level itself (for residual models)."""
    return curve_features(history)[1:]


def beta_features(history: TrialHistory) -> list[float]:
    beta = history.get("beta_eff")
    norm = history.get("probe_feature_norm")
    initial_norm = history.initial.get("probe_feature_norm", math.nan)
    with _quiet():
        scaled = beta / np.maximum(norm, 1e-12) ** 2
        return [
            float(np.sign(beta[-1]) * np.log1p(abs(beta[-1]))),
            float(np.nanmedian(scaled)),
            float(np.log(np.maximum(norm[-1], 1e-12) / max(initial_norm, 1e-12))),
            float(history.get("probe_dead_fraction")[-1]),
            float(history.get("probe_loss")[-1]),
            float(np.nanmean(history.get("probe_accuracy"))),
        ]


def _curve_and_beta(history: TrialHistory) -> list[float]:
    return curve_features(history) + beta_features(history)


def _shape_and_beta(history: TrialHistory) -> list[float]:
    return curve_shape_features(history) + beta_features(history)


class CrossTrialModel:
    """BayesianRidge from early features of completed trials to their finals
    (features standardised on the training trials)."""

    def __init__(self, x: np.ndarray, targets: np.ndarray) -> None:
        from sklearn.linear_model import BayesianRidge

        self.mean = x.mean(0)
        self.std = x.std(0) + 1e-9
        self.model = BayesianRidge().fit((x - self.mean) / self.std, targets)

    def predict(self, row: np.ndarray) -> float:
        return float(self.model.predict(((row - self.mean) / self.std)[None])[0])


def feature_matrix(featurize: Featurize, histories: Sequence[TrialHistory]) -> np.ndarray:
    """Features of each history, NaN/inf replaced by 0 (diverged trials)."""
    with _quiet():
        x = np.array([featurize(h) for h in histories], dtype=float)
    return np.nan_to_num(x.reshape(len(histories), -1), nan=0.0, posinf=0.0, neginf=0.0)


def fit_cross_trial(
    predictor: Predictor, peers: Sequence[TrialHistory], step: float
) -> CrossTrialModel | None:
    """The model of a cross-trial predictor at ``step``: fitted on the completed
    ``peers`` that reached ``step`` (each cut at ``step``); None with fewer than
    :data:`MIN_COMPLETED` of them.

    With ``predictor.residual`` the model learns ``final - value at step``:
    BayesianRidge's shrinkage then falls back to the last value when the features
    carry nothing.
    """
    assert predictor.featurize is not None, predictor.name
    cut = [p.until(step) for p in peers
           if p.is_complete and len(p) and p.last_step >= step]
    cut = [c for c in cut if len(c)]
    targets = np.array([c.final for c in cut], dtype=float)
    if predictor.residual:
        targets = targets - np.array([_last(c) for c in cut], dtype=float)
    done = np.isfinite(targets)
    if done.sum() < MIN_COMPLETED:
        return None
    x = feature_matrix(predictor.featurize, [c for c, ok in zip(cut, done) if ok])
    return CrossTrialModel(x, targets[done])


def predict_with(
    predictor: Predictor, model: CrossTrialModel | None, history: TrialHistory
) -> float:
    """A cross-trial prediction from a fitted model (the last value without one)."""
    last = _last(history)
    if model is None or not len(history):
        return last
    assert predictor.featurize is not None, predictor.name
    value = model.predict(feature_matrix(predictor.featurize, [history])[0])
    return value + last if predictor.residual else value


# ---------------------------------------------------------------- registry
_BETA = ("beta_eff",)
_PROBE = ("beta_eff", "probe_feature_norm", "probe_dead_fraction", "probe_loss",
          "probe_accuracy")

PREDICTORS: dict[str, Predictor] = {p.name: p for p in (
    Predictor("last", last_value, summary="the latest value"),
    Predictor("best", best_so_far, summary="the best value so far"),
    Predictor("pow3", power_law, needs_horizon=True,
              summary="power-law extrapolation c - a t^-alpha to the last step"),
    Predictor("tse", training_speed, requires=("train_loss",), score_only=True,
              summary="minus the summed training loss (a score)"),
    Predictor("ncp_raw", _ncp_with(_raw), requires=_BETA,
              summary="BayesianRidge value = h(beta_eff), read at h(0) (the paper's)"),
    Predictor("ncp_two_batch", _ncp_with(_two_batch_mean),
              requires=("beta_eff", "beta_eff_batch2"),
              summary="ncp_raw on the mean beta_eff of two probe batches"),
    Predictor("ncp_feature_norm", _ncp_with(_per_feature_norm),
              requires=("beta_eff", "probe_feature_norm"),
              summary="ncp_raw on beta_eff / feature norm^2"),
    Predictor("ncp_delta_norms", _ncp_with(_per_delta_norms),
              requires=("beta_eff", "probe_delta_in_norm", "probe_delta_out_norm"),
              summary="ncp_raw on beta_eff / (|delta_in| |delta_out|)"),
    Predictor("ncp_smoothed", _ncp_with(_smoothed), requires=_BETA,
              summary="ncp_raw on a 3-step running mean of beta_eff"),
    Predictor("ncp_collapse_guard", ncp_collapse_guard,
              requires=("beta_eff", "probe_dead_fraction"),
              summary="ncp_raw, capped at the last value when the probe collapsed"),
    Predictor("ncp_hybrid", ncp_hybrid, requires=_BETA, needs_horizon=True,
              summary="BayesianRidge on (beta_eff, log progress)"),
    Predictor("xtrial_curve", cross_trial=True, featurize=curve_features,
              summary="BayesianRidge from curve features of completed trials"),
    Predictor("xtrial_ncp", cross_trial=True, featurize=_curve_and_beta, requires=_PROBE,
              summary="xtrial_curve plus beta_eff features"),
    Predictor("xtrial_beta_only", cross_trial=True, featurize=beta_features,
              requires=_PROBE, summary="BayesianRidge from beta_eff features only"),
    Predictor("xtrial_resid_curve", cross_trial=True, featurize=curve_shape_features,
              residual=True, summary="the last value plus a learnt curve-shape residual"),
    Predictor("xtrial_resid_ncp", cross_trial=True, featurize=_shape_and_beta,
              residual=True, requires=_PROBE,
              summary="xtrial_resid_curve plus beta_eff features"),
    Predictor("xtrial_resid_beta", cross_trial=True, featurize=beta_features,
              residual=True, requires=_PROBE,
              summary="the last value plus a residual learnt from beta_eff features"),
)}
SCORE_ONLY = tuple(n for n, p in PREDICTORS.items() if p.score_only)


def get_predictor(name: str) -> Predictor:
    """The registered predictor ``name``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    found = PREDICTORS.get(name)
    if found is None:
        raise ValueError(f"predictor must be one of {sorted(PREDICTORS)}, but got "
                         f"predictor={name!r}.")
    return found


def check_feedable(
    name: str, feeds: Sequence[str], host: str, *, allow_score: bool = False
) -> Predictor:
    """The predictor ``name`` if an adapter that stores ``feeds`` can serve it.

    Raises:
        ValueError: for an unknown name, a score-only predictor (unless
            ``allow_score``), or one that reads a series the adapter never stores;
            the message names the usable predictors.
    """
    usable = sorted(n for n, p in PREDICTORS.items()
                    if set(p.requires) <= set(feeds) and (allow_score or not p.score_only))
    predictor = PREDICTORS.get(name)
    if predictor is None:
        raise ValueError(f"predictor must be one of {usable}, but got predictor={name!r}.")
    if predictor.score_only and not allow_score:
        raise ValueError(
            f"predictor={name!r} gives a ranking score, not a final value, so {host} "
            f"cannot compare it with finals; use one of {usable}."
        )
    missing = [r for r in predictor.requires if r not in feeds]
    if missing:
        raise ValueError(
            f"predictor={name!r} reads {missing}, which {host} is never given (only "
            f"{sorted(feeds)}); use one of {usable}."
        )
    return predictor


def missing_inputs(predictor: Predictor, history: TrialHistory) -> list[str]:
    """The series ``predictor`` needs that ``history`` does not carry."""
    return [r for r in predictor.requires if not history.has(r)]


def predict_final(
    name: str | Predictor,
    history: TrialHistory,
    *,
    horizon: float | None = None,
    peers: Sequence[TrialHistory] = (),
    model: CrossTrialModel | None | bool = False,
) -> float:
    """The predicted final value of ``history`` ("higher is better"), or NaN.

    Args:
        name: a registry name or a :class:`Predictor`.
        history: the trial so far.
        horizon: the last step of a complete trial (extrapolating predictors);
            default: the history's last step (no extrapolation).
        peers: completed trials (cross-trial predictors learn from those that
            reached the history's last step).
        model: a cross-trial model already fitted for this step (see
            :func:`fit_cross_trial`; ``None`` means "too few peers"), to skip the
            fit.

    NaN and edge cases:
        NaN for an empty history, or when a series the predictor requires is
        absent. Too few points for a fit give the last value (see each predictor).
    """
    predictor = name if isinstance(name, Predictor) else get_predictor(name)
    if not len(history) or missing_inputs(predictor, history):
        return math.nan
    target = history.last_step if horizon is None else float(horizon)
    if predictor.cross_trial:
        if model is False:
            model = fit_cross_trial(predictor, peers, history.last_step)
        assert model is not True
        value = predict_with(predictor, model, history)
    else:
        assert predictor.predict is not None, predictor.name
        with _quiet():
            value = predictor.predict(history, target)
    return float(value) if math.isfinite(value) else math.nan
