"""AccuracyPredictor: BayesianRidge on (beta_eff, accuracy), read at beta_eff = 0."""

from __future__ import annotations

import numpy as np
import pytest

from ncp_search import AccuracyPredictor, FinalAccuracy


def synthetic(n, intercept, slope, noise, seed):
    rng = np.random.default_rng(seed)
    beta = rng.uniform(0.5, 3.0, n)
    return beta, intercept + slope * beta + rng.normal(0.0, noise, n)


def test_recovers_intercept_within_reported_std():
    beta, acc = synthetic(40, intercept=0.9, slope=-0.1, noise=0.01, seed=0)
    final = AccuracyPredictor().fit(beta, acc).predict_final()
    assert isinstance(final, FinalAccuracy)
    assert abs(final.mean - 0.9) < final.std
    assert 0.005 < final.std < 0.03  # of the order of the noise, not vacuous


def test_predictive_interval_coverage():
    hits = 0
    for seed in range(200):
        beta, acc = synthetic(12, intercept=0.8, slope=-0.05, noise=0.02, seed=seed)
        final = AccuracyPredictor().fit(beta, acc).predict_final()
        hits += abs(final.mean - 0.8) < 1.96 * final.std
    assert hits >= 180


def test_predict_returns_arrays_and_needs_fit():
    with pytest.raises(RuntimeError, match="not fitted"):
        AccuracyPredictor().predict_final()
    beta, acc = synthetic(10, 0.7, -0.1, 0.01, seed=1)
    mean, std = AccuracyPredictor().fit(beta, acc).predict([0.0, 1.0])
    assert mean.shape == std.shape == (2,)
    assert mean[0] > mean[1]


def test_kwargs_reach_bayesian_ridge():
    predictor = AccuracyPredictor(fit_intercept=False).fit([1.0, 2.0, 3.0], [0.1, 0.2, 0.3])
    assert predictor.model_.fit_intercept is False
    assert predictor.predict_final().mean == 0.0


@pytest.mark.parametrize(
    ("beta", "acc", "match"),
    [
        ([1.0], [0.5], "at least 2 observations"),
        ([], [], "at least 2 observations"),
        ([1.0, 2.0], [0.5], "same length"),
        ([1.0, np.nan], [0.5, 0.6], "NaN/inf at positions \\[1\\]"),
        ([1.0, 2.0], [0.5, np.inf], "accuracies must be finite"),
        ([[1.0, 2.0]], [0.5], "one-dimensional"),
    ],
)
def test_errors(beta, acc, match):
    with pytest.raises(ValueError, match=match):
        AccuracyPredictor().fit(beta, acc)
