"""Predict the final accuracy from early (beta_eff, accuracy) observations.

Jiang et al. (2024) fit a Bayesian ridge regression ``acc = h(beta_eff)`` on the
first K epochs of a run and read the predicted final accuracy at ``h(0)``, since
``beta_eff -> 0`` as training converges (Theorem 1). This module wraps
scikit-learn's :class:`~sklearn.linear_model.BayesianRidge` for that; it does not
re-implement it (scikit-learn is imported on the first fit).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class FinalAccuracy(NamedTuple):
    """A predicted final accuracy and its predictive standard deviation."""

    mean: float
    std: float


def _as_vector(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, but got shape {array.shape}.")
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array)).tolist()
        raise ValueError(
            f"{name} must be finite, but got NaN/inf at positions {bad}. Drop those "
            "observations (a NaN beta_eff means the run diverged) before fitting."
        )
    return array


class AccuracyPredictor:
    """Bayesian ridge regression of accuracy on ``beta_eff``, read at ``beta_eff = 0``.

    Args:
        **bayesian_ridge_kwargs: passed to ``sklearn.linear_model.BayesianRidge``.

    Attributes:
        model_: the fitted ``BayesianRidge``.
        n_observations_: number of observations it was fitted on.

    Example:
        >>> predictor = AccuracyPredictor().fit([4.1, 3.0, 2.2], [0.61, 0.70, 0.74])
        >>> predictor.predict_final()
        FinalAccuracy(mean=..., std=...)

    References:
        Jiang et al. 2024, Algorithm 1, steps 3-4 (``I* = h(0)``).
    """

    def __init__(self, **bayesian_ridge_kwargs: Any) -> None:
        self.bayesian_ridge_kwargs = bayesian_ridge_kwargs

    def fit(self, beta_effs: Any, accuracies: Any) -> AccuracyPredictor:
        """Fit ``accuracy = h(beta_eff)`` on paired early observations.

        Raises:
            ValueError: with fewer than 2 observations, mismatched lengths, or NaN/inf.
        """
        x = _as_vector(beta_effs, "beta_effs")
        y = _as_vector(accuracies, "accuracies")
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                "beta_effs and accuracies must have the same length, but got "
                f"{x.shape[0]} beta_effs and {y.shape[0]} accuracies."
            )
        if x.shape[0] < 2:
            raise ValueError(
                f"fitting needs at least 2 observations, but got {x.shape[0]}. "
                "Observe more epochs before predicting."
            )
        from sklearn.linear_model import BayesianRidge

        self.model_ = BayesianRidge(**self.bayesian_ridge_kwargs).fit(x[:, None], y)
        self.n_observations_ = int(x.shape[0])
        return self

    def predict(self, beta_effs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predicted accuracies and predictive standard deviations at ``beta_effs``."""
        if not hasattr(self, "model_"):
            raise RuntimeError("this AccuracyPredictor is not fitted yet; call fit() first.")
        x = _as_vector(beta_effs, "beta_effs")
        mean, std = self.model_.predict(x[:, None], return_std=True)
        return mean, std

    def predict_final(self) -> FinalAccuracy:
        """The predicted final accuracy ``h(0)`` and its standard deviation."""
        mean, std = self.predict([0.0])
        return FinalAccuracy(float(mean[0]), float(std[0]))
