"""observer_probe / probe_for: a frozen probe beside a plain classifier's own head."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ncp_search import BetaEffLogger, BetaEffMeter, ProbeError, observer_probe, split_probe
from ncp_search.engine.probe import attach_probe, probe_for
from tests.engine.models import batch, functional_classifier, sequential_classifier


def own_mlp(seed=0, classes=10, logits=False):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(classes, activation=None if logits else "softmax"),
    ])


def test_probe_reads_the_head_input_and_leaves_the_model_alone():
    model = own_mlp()
    layers_before = [layer.name for layer in model.layers]
    weights_before = [w.path for w in model.weights]
    probed = observer_probe(model, hidden=(8, 8, 8))
    parts = split_probe(probed)
    assert tuple(parts.kernels[0].shape) == (32, 8)  # the 32 hidden units (after dropout)
    assert parts.num_classes == 10  # read off the output layer
    assert [layer.name for layer in model.layers] == layers_before
    assert [w.path for w in model.weights] == weights_before
    assert model.outputs[0].shape[-1] == 10
    # the probe shares the bottom: its trainable weights are the model's, minus the head
    shared = {id(w) for w in probed.trainable_weights}
    assert shared == {id(w) for w in model.layers[0].weights}


def test_logits_head_and_functional_models():
    assert split_probe(observer_probe(own_mlp(logits=True))).num_classes == 10
    parts = split_probe(observer_probe(functional_classifier(), hidden=(6, 6, 6)))
    assert tuple(parts.kernels[0].shape) == (16, 6) and parts.num_classes == 3


@pytest.mark.slow
def test_the_probe_observes_the_model_training_its_own_head():
    model = own_mlp(seed=1, classes=3)
    probed = observer_probe(model, hidden=(8, 8, 8))
    kernels = [k.numpy().copy() for k in split_probe(probed).kernels]
    x, y = batch((64,), n=96, classes=3)
    meter = BetaEffMeter(probed, x[:32], y[:32])
    before = meter().beta_eff
    head = model.layers[-1].kernel.numpy().copy()
    model.compile(keras.optimizers.SGD(0.2), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert not np.array_equal(head, model.layers[-1].kernel.numpy())  # own head trained
    assert all(np.array_equal(a, k.numpy()) for a, k in zip(kernels, split_probe(probed).kernels))
    assert meter().beta_eff != before


def test_no_hidden_layer_is_refused_with_the_fix():
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(ProbeError, match=r"no weighted layer below its output layer.*Add a hidden"):
        observer_probe(model)
    flat = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])
    with pytest.raises(ProbeError, match="raw inputs"):
        observer_probe(flat)


def test_not_a_classifier_says_feature_layer_and_num_classes():
    binary = keras.Sequential([keras.Input((64,)), keras.layers.Dense(16, activation="relu",
                                                                     name="hidden"),
                               keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(ProbeError, match=r"feature_layer=<name>, num_classes="):
        observer_probe(binary)
    with pytest.raises(ProbeError, match="pass num_classes"):
        observer_probe(binary, feature_layer="hidden")
    parts = split_probe(observer_probe(binary, 2, feature_layer="hidden", hidden=(4, 4, 4)))
    assert tuple(parts.kernels[0].shape) == (16, 4) and parts.num_classes == 2


def test_subclassed_model_is_refused_with_the_fix():
    class Own(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(8, activation="relu")
            self.out = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.out(self.hidden(x))

    model = Own()
    model(np.zeros((2, 5), "float32"))
    with pytest.raises(ProbeError, match=r"no symbolic graph.*keras.Input\(shape\).*probed_model"):
        observer_probe(model)


def test_frozen_bottom_is_warned_about():
    model = own_mlp()
    model.layers[0].trainable = False
    with pytest.warns(RuntimeWarning, match="frozen"):
        observer_probe(model)


def test_probe_for_prefers_explicit_then_carried_probe_then_observer():
    model = sequential_classifier()
    explicit = attach_probe(sequential_classifier(seed=2), 3)
    assert probe_for(model, probed_model=explicit) is explicit
    carried = attach_probe(model, 3)
    assert probe_for(carried) is carried
    observer = probe_for(model, hidden=(5, 5, 5))
    assert observer is not model and split_probe(observer).num_classes == 4


def test_probe_for_builds_a_sequential_model_without_input():
    model = keras.Sequential([keras.layers.Dense(12, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    x, y = batch((7,), n=16, classes=3)
    probed = probe_for(model, x)
    assert model.built and tuple(split_probe(probed).kernels[0].shape) == (12, 64)
    assert np.isfinite(BetaEffMeter(probed, x, y)().beta_eff)


def test_logger_attaches_an_observer_to_a_plain_model():
    model = own_mlp(classes=3)
    model.compile("sgd", "sparse_categorical_crossentropy")
    x, y = batch((64,), n=32, classes=3)
    logger = BetaEffLogger(x[:16], y[:16], hidden=(8, 8, 8), log_terms=True)
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[logger])
    assert len(history.history["beta_eff"]) == 2
    assert "probe_feature_norm" in history.history
    assert split_probe(logger.probed).num_classes == 3
    assert logger.probed is not model
