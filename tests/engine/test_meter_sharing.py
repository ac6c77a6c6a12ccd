"""BetaEffMeter compiles once per architecture: later trials reuse the trace, with
their own weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ncp_search import BetaEffMeter, attach_probe, observer_probe
from tests.engine.models import batch


def trial_model(seed, width=24, activation="relu", batch_norm=True):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((10,)), keras.layers.Dense(width, activation=activation)]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.Dropout(0.2), keras.layers.Dense(4, activation="softmax")]
    return keras.Sequential(layers)


def meters(models, x, y, **kwargs):
    return [BetaEffMeter(observer_probe(m, hidden=(8, 8, 8)), x, y, **kwargs) for m in models]


def test_trials_of_one_architecture_share_one_trace_and_use_their_own_weights():
    x, y = batch((10,), n=32, classes=4, seed=3)
    models = [trial_model(seed) for seed in (11, 12, 13)]
    # layer names differ between the trials (dense, dense_1, ...): still one architecture
    assert len({m.layers[0].name for m in models}) == 3
    shared = meters(models, x, y)
    alone = meters(models, x, y, share_trace=False)
    values = [m().beta_eff for m in shared]
    assert all(m.shares_trace for m in shared) and not alone[0].shares_trace
    assert [m.traces for m in shared] == [1, 1, 1]
    for got, meter in zip(values, alone):
        assert got == pytest.approx(meter().beta_eff, rel=1e-5)
    assert len(set(values)) == 3  # each trial's own weights, not the first one's


def test_shared_trace_follows_training_and_moving_statistics():
    x, y = batch((10,), n=64, classes=4, seed=5)
    first, second = trial_model(21), trial_model(22)
    (m1, m2), (a2,) = meters([first, second], x[:32], y[:32]), meters([second], x[:32], y[:32],
                                                                     share_trace=False)
    m1()
    before = m2().beta_eff
    second.compile(keras.optimizers.SGD(0.3), "sparse_categorical_crossentropy")
    second.fit(x, y, epochs=2, batch_size=16, verbose=0)  # kernels and BN statistics move
    after = m2().beta_eff
    assert after != before
    assert after == pytest.approx(a2().beta_eff, rel=1e-5)
    assert m2.traces == 1


CHANGES = {"width": {"width": 16}, "activation": {"activation": "tanh"},
           "batch_norm": {"batch_norm": False}, "inputs": {}}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_different_architecture_or_batch_traces_its_own(change):
    x, y = batch((10,), n=32, classes=4, seed=7)
    base = meters([trial_model(31)], x, y)[0]
    base()
    if change == "inputs":
        x, y = x[:16], y[:16]
    other = meters([trial_model(32, **CHANGES[change])], x, y)[0]
    alone = meters([trial_model(32, **CHANGES[change])], x, y, share_trace=False)[0]
    got = other().beta_eff
    assert other.traces == 1  # a trace of its own, not the base's
    assert got == pytest.approx(alone().beta_eff, rel=1e-5)


def test_probe_as_head_models_share_too():
    x, y = batch((10,), n=16, classes=3, seed=1)
    probed = [attach_probe(trial_model(s), 3, hidden=(6, 6, 6)) for s in (41, 42)]
    shared = [BetaEffMeter(p, x, y) for p in probed]
    values = [m().beta_eff for m in shared]
    assert [m.traces for m in shared] == [1, 1]
    assert values[1] == pytest.approx(BetaEffMeter(probed[1], x, y, share_trace=False)()
                                      .beta_eff, rel=1e-5)


def test_keras_applications_model_shares_and_matches():
    x, y = batch((32, 32, 3), n=8, classes=4)
    apps = [keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                           classes=10) for _ in range(2)]
    probed = [attach_probe(app, 4, hidden=(8, 8, 8)) for app in apps]
    shared = [BetaEffMeter(p, x, y) for p in probed]
    values = [m().beta_eff for m in shared]
    assert shared[1].traces == 1
    assert values[1] == pytest.approx(BetaEffMeter(probed[1], x, y, share_trace=False)()
                                      .beta_eff, rel=1e-4)


def test_probe_batch_of_the_wrong_shape_is_refused():
    model = trial_model(51)
    with pytest.raises(ValueError, match=r"shape \(8, 12\).*\(None, 10\).*probe_batch"):
        BetaEffMeter(observer_probe(model), np.zeros((8, 12), "float32"), np.zeros(8, int))
