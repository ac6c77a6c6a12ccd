"""Reference tests of beta_eff (Jiang et al. 2024, Eq. 2 with P from Eq. 7).

The reference materialises the full Hessian of the mean cross-entropy over all probe
weights in float64, keeps only the (l, l+1) blocks as P, and evaluates
(1^T P P 1) / (1^T P 1 + eps) literally. The Hessian itself is checked against
central finite differences of the gradient.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ncp_search.engine.capacitance import beta_eff_from_weights, beta_eff_terms_from_weights
from tests.reference import materialised_beta_eff, materialised_hessian, probe_gradient


def random_probe(widths, n_samples, seed):
    rng = np.random.default_rng(seed)
    kernels = [
        rng.normal(0.0, np.sqrt(2.0 / a), size=(a, b)) for a, b in zip(widths[:-1], widths[1:])
    ]
    features = np.abs(rng.normal(1.0, 1.0, size=(n_samples, widths[0])))
    labels = rng.integers(0, widths[-1], size=n_samples)
    return kernels, features, labels


SHAPES = [
    (4, 3, 3, 3, 2),
    (5, 4, 4, 4, 3),
    (6, 5, 4, 3, 3),
    (3, 4, 5, 4, 3, 4),
    (6, 5, 5, 5, 5, 5, 3),
]


def test_reference_hessian_matches_finite_differences():
    kernels, features, labels = random_probe((4, 3, 3, 3, 2), 6, seed=1)
    hessian, shapes, (flat, x, y) = materialised_hessian(kernels, features, labels)
    assert np.allclose(hessian, hessian.T, atol=1e-12)
    h = 1e-6
    for index in [0, 5, 13, 20, 30, len(flat.numpy()) - 1]:
        step = np.zeros(flat.shape[0])
        step[index] = h
        up = probe_gradient(flat + step, shapes, x, y).numpy()
        down = probe_gradient(flat - step, shapes, x, y).numpy()
        np.testing.assert_allclose(hessian[:, index], (up - down) / (2 * h), atol=1e-6)


@pytest.mark.parametrize("widths", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_materialised_hessian(widths, seed):
    kernels, features, labels = random_probe(widths, n_samples=12, seed=seed)
    expected, _ = materialised_beta_eff(kernels, features, labels)
    got = beta_eff_from_weights(kernels, features, labels, precision="float64")
    assert expected != 0.0
    assert got == pytest.approx(expected, rel=1e-8, abs=0)


@pytest.mark.parametrize("widths", SHAPES[:3])
def test_terms_match_materialised(widths):
    kernels, features, labels = random_probe(widths, n_samples=9, seed=7)
    _, p = materialised_beta_eff(kernels, features, labels)
    ones = np.ones(p.shape[0])
    terms = beta_eff_terms_from_weights(kernels, features, labels, precision="float64")
    assert terms.numerator == pytest.approx((ones @ p) @ (p @ ones), rel=1e-8)
    assert terms.denominator == pytest.approx(ones @ p @ ones, rel=1e-8)
    assert terms.delta_in_norm == pytest.approx(np.linalg.norm(p @ ones), rel=1e-8)
    assert terms.delta_out_norm == pytest.approx(np.linalg.norm(ones @ p), rel=1e-8)


def test_last_hidden_row_sums_vanish_in_reference():
    """With softmax cross-entropy the logit gradient sums to zero over the classes, so
    delta_in on layer L-1 is zero; the code sets it to exact 0."""
    kernels, features, labels = random_probe((5, 4, 4, 4, 3), 8, seed=3)
    _, p = materialised_beta_eff(kernels, features, labels)
    sizes = [k.size for k in kernels]
    start = sum(sizes[:-2])
    delta_in_last_hidden = (p @ np.ones(p.shape[0]))[start : start + sizes[-2]]
    assert np.max(np.abs(delta_in_last_hidden)) < 1e-12 * np.max(np.abs(p))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_three_layer_probe_is_exactly_zero(seed):
    kernels, features, labels = random_probe((5, 4, 4, 3), 8, seed=seed)
    reference, _ = materialised_beta_eff(kernels, features, labels)
    assert abs(reference) < 1e-12
    assert beta_eff_from_weights(kernels, features, labels, precision="float64") == 0.0
    assert beta_eff_from_weights(kernels, features, labels, precision="float32") == 0.0


def test_float32_close_to_float64():
    kernels, features, labels = random_probe((16, 8, 8, 8, 4), 32, seed=5)
    b64 = beta_eff_from_weights(kernels, features, labels, precision="float64")
    b32 = beta_eff_from_weights(kernels, features, labels, precision="float32")
    assert b32 == pytest.approx(b64, rel=1e-3)


def test_one_hot_labels_equal_sparse():
    kernels, features, labels = random_probe((5, 4, 4, 4, 3), 8, seed=4)
    one_hot = np.eye(3)[labels]
    assert beta_eff_from_weights(kernels, features, one_hot) == beta_eff_from_weights(
        kernels, features, labels
    )


def test_eager_equals_compiled():
    kernels, features, labels = random_probe((5, 4, 4, 4, 3), 8, seed=6)
    eager = beta_eff_terms_from_weights(kernels, features, labels, compiled=False)
    compiled = beta_eff_terms_from_weights(kernels, features, labels, compiled=True)
    assert eager.beta_eff == pytest.approx(compiled.beta_eff, rel=1e-12)


@pytest.mark.parametrize("where", ["features", "kernel"])
def test_nan_input_gives_nan_and_warning(where):
    kernels, features, labels = random_probe((5, 4, 4, 4, 3), 8, seed=0)
    if where == "features":
        features[2, 1] = np.nan
    else:
        kernels[1][0, 0] = np.inf
    with pytest.warns(RuntimeWarning, match="NaN"):
        value = beta_eff_from_weights(kernels, features, labels)
    assert np.isnan(value)


def test_overflowing_model_gives_nan_not_a_number():
    kernels, features, labels = random_probe((5, 4, 4, 4, 3), 8, seed=0)
    kernels = [k * 1e30 for k in kernels]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = beta_eff_from_weights(kernels, features, labels, precision="float32")
    assert np.isnan(value)
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)


def test_shape_errors():
    kernels, features, labels = random_probe((5, 4, 4, 4, 3), 8, seed=0)
    with pytest.raises(ValueError, match="kernel 1 must have shape"):
        beta_eff_from_weights([kernels[0], kernels[0], *kernels[2:]], features, labels)
    with pytest.raises(ValueError, match="same number of samples"):
        beta_eff_from_weights(kernels, features, labels[:-1])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\]"):
        beta_eff_from_weights(kernels, features, labels + 3)
    with pytest.raises(ValueError, match="features must have shape"):
        beta_eff_from_weights(kernels, features[None], labels)
    with pytest.raises(ValueError, match="precision"):
        beta_eff_from_weights(kernels, features, labels, precision="float16")
