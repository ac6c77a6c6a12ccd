"""attach_probe / split_probe on real Keras models, and beta_eff through a probed model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import ncp_search
from ncp_search import BetaEffMeter, ProbeError, attach_probe, beta_eff, split_probe
from ncp_search.engine.capacitance import beta_eff_terms
from tests.engine.models import batch, functional_classifier, sequential_classifier
from tests.reference import materialised_beta_eff


def test_sequential_probe_structure():
    model = sequential_classifier()
    probed = attach_probe(model, num_classes=5, hidden=(7, 6, 5), seed=3)
    parts = split_probe(probed)
    assert [tuple(k.shape) for k in parts.kernels] == [(12, 7), (7, 6), (6, 5), (5, 5)]
    assert parts.num_classes == 5
    probe_layers = [lay for lay in probed.layers if lay.name.startswith("ncp_probe_dense_")]
    assert all(not lay.trainable and not lay.use_bias for lay in probe_layers)
    x, _ = batch((8, 8, 1))
    out = probed.predict(x, verbose=0)
    assert out.shape == (16, 5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_probe_seed_is_deterministic_and_matters():
    model = sequential_classifier()
    k1 = [k.numpy() for k in split_probe(attach_probe(model, 3, seed=1)).kernels]
    k1_again = [k.numpy() for k in split_probe(attach_probe(model, 3, seed=1)).kernels]
    k2 = [k.numpy() for k in split_probe(attach_probe(model, 3, seed=2)).kernels]
    assert all(np.array_equal(a, b) for a, b in zip(k1, k1_again))
    assert not np.array_equal(k1[0], k2[0])


def test_functional_with_trailing_softmax_and_dropout():
    probed = attach_probe(functional_classifier(), num_classes=3, hidden=(6, 6, 6))
    parts = split_probe(probed)
    assert tuple(parts.kernels[0].shape) == (16, 6)  # cut before the "logits" Dense


def test_feature_layer_cut_flattens_maps():
    model = sequential_classifier()
    probed = attach_probe(model, 3, feature_layer=model.layers[0].name)
    assert tuple(split_probe(probed).kernels[0].shape)[0] == 8 * 8 * 4


def test_keras_applications_model_without_download():
    app = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=10
    )
    probed = attach_probe(app, num_classes=4, hidden=(16, 16, 16))
    x, y = batch((32, 32, 3), n=8, classes=4)
    value = beta_eff(probed, x, y)
    assert np.isfinite(value)


def test_beta_eff_through_probe_matches_materialised_hessian():
    model = sequential_classifier(seed=4)
    probed = attach_probe(model, num_classes=3, hidden=(5, 4, 4), seed=2)
    x, y = batch((8, 8, 1), n=10, classes=3, seed=1)
    parts = split_probe(probed)
    features = parts.feature_model(x).numpy().astype(np.float64)
    kernels = [k.numpy().astype(np.float64) for k in parts.kernels]
    expected, _ = materialised_beta_eff(kernels, features, y)
    assert expected != 0.0
    got = beta_eff(probed, x, y, precision="float64")
    assert got == pytest.approx(expected, rel=1e-8)
    assert beta_eff(probed, x, y) == pytest.approx(expected, rel=1e-3)


@pytest.mark.slow
def test_fine_tuning_trains_bottom_and_leaves_probe_bit_identical():
    model = sequential_classifier(seed=5)
    probed = attach_probe(model, num_classes=3, hidden=(8, 8, 8))
    parts = split_probe(probed)
    probe_before = [k.numpy().copy() for k in parts.kernels]
    bottom = [w for w in probed.trainable_weights]
    bottom_before = [w.numpy().copy() for w in bottom]
    assert len(bottom) == 4  # conv kernel/bias, dense kernel/bias: the probe is not trainable
    x, y = batch((8, 8, 1), n=64, classes=3, seed=2)
    meter = BetaEffMeter(probed, x[:32], y[:32])
    first = meter().beta_eff
    probed.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    probed.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert all(np.array_equal(a, k.numpy()) for a, k in zip(probe_before, parts.kernels))
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(bottom_before, bottom))
    assert meter().beta_eff != first  # the meter reads the current weights


def test_meter_returns_nan_for_diverged_bottom():
    model = sequential_classifier()
    probed = attach_probe(model, num_classes=3)
    x, y = batch((8, 8, 1))
    meter = BetaEffMeter(probed, x, y)
    assert np.isfinite(meter().beta_eff)
    dense = model.layers[2]
    kernel = dense.kernel.numpy()
    kernel[0, 0] = np.nan
    dense.kernel.assign(kernel)
    with pytest.warns(RuntimeWarning, match="NaN"):
        terms = meter()
    assert np.isnan(terms.beta_eff)


def test_cached_meter_follows_new_batch_object():
    probed = attach_probe(sequential_classifier(), num_classes=3)
    x1, y1 = batch((8, 8, 1), seed=1)
    x2, y2 = batch((8, 8, 1), seed=2)
    a = beta_eff_terms(probed, x1, y1)
    b = beta_eff_terms(probed, x2, y2)
    assert a.beta_eff != b.beta_eff
    assert beta_eff_terms(probed, x1, y1).beta_eff == a.beta_eff


def test_refuses_three_weight_layers():
    with pytest.raises(ValueError, match="at least 4 weight layers"):
        attach_probe(sequential_classifier(), 3, hidden=(8, 8))


@pytest.mark.parametrize("bad", [1, 0, 2.5])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        attach_probe(sequential_classifier(), bad)


def test_not_a_classifier():
    regressor = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    with pytest.raises(ProbeError, match="classifier head"):
        attach_probe(regressor, 3)


def test_unknown_feature_layer_lists_layers():
    with pytest.raises(ProbeError, match="available layers"):
        attach_probe(sequential_classifier(), 3, feature_layer="nope")


def test_unbuilt_model():
    with pytest.raises(ProbeError, match="never built"):
        attach_probe(keras.Sequential([keras.layers.Dense(3, activation="softmax")]), 3)


def test_model_without_probe():
    with pytest.raises(ProbeError, match="attach_probe"):
        split_probe(sequential_classifier())
    with pytest.raises(ProbeError):
        beta_eff(sequential_classifier(), *batch((8, 8, 1)))


def test_probe_survives_save_and_load(tmp_path):
    probed = attach_probe(sequential_classifier(), num_classes=3)
    x, y = batch((8, 8, 1))
    path = tmp_path / "probed.keras"
    probed.save(path)
    loaded = keras.models.load_model(path)
    assert beta_eff(loaded, x, y, precision="float64") == pytest.approx(
        beta_eff(probed, x, y, precision="float64"), rel=1e-12
    )


def test_clone_leaves_source_untouched():
    model = sequential_classifier()
    before = [w.copy() for w in model.get_weights()]
    probed = attach_probe(model, num_classes=3, clone=True)
    x, y = batch((8, 8, 1), n=32)
    probed.compile(keras.optimizers.SGD(0.5), "sparse_categorical_crossentropy")
    probed.fit(x, y, epochs=1, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_lazy_names_are_exported():
    assert ncp_search.attach_probe is attach_probe
    with pytest.raises(AttributeError):
        ncp_search.no_such_name  # noqa: B018
