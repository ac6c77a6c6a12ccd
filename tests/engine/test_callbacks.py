"""BetaEffLogger: beta_eff in the epoch logs of a real fit."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ncp_search import BetaEffLogger, attach_probe, beta_eff, observer_probe, split_probe
from tests.engine.models import batch, sequential_classifier


def test_beta_eff_reaches_history_every_interval():
    probed = attach_probe(sequential_classifier(seed=1), num_classes=3, hidden=(8, 8, 8))
    probed.compile(keras.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    x, y = batch((8, 8, 1), n=48, classes=3)
    logger = BetaEffLogger(x[:16], y[:16], interval=2, log_terms=True)
    history = probed.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[logger])
    assert [r["epoch"] for r in logger.records] == [1.0, 3.0]
    assert len(history.history["beta_eff"]) == 2
    assert "probe_denominator" in history.history  # the names NCPScheduler reads
    # the last record is the value of the final weights on the same batch
    assert logger.records[-1]["beta_eff"] == pytest.approx(beta_eff(probed, x[:16], y[:16]))
    # a second fit starts a fresh record
    probed.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[logger])
    assert len(logger.records) == 1


@pytest.mark.parametrize("interval", [0, -1, 1.5])
def test_bad_interval(interval):
    with pytest.raises(ValueError, match="interval"):
        BetaEffLogger(np.zeros((2, 8, 8, 1)), [0, 1], interval=interval)


def test_probe_options_reach_the_observer_probe_and_unknown_ones_are_refused():
    model = sequential_classifier(seed=0, classes=3)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    x, y = batch((8, 8, 1), n=32, classes=3)
    hidden = [5, 6, 7]
    logger = BetaEffLogger(x[:16], y[:16], hidden=hidden, probe_seed=3)
    hidden.append(9)  # changing the list afterwards does not change the probe
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[logger])
    kernels = [np.asarray(k) for k in split_probe(logger.probed).kernels]
    assert [k.shape[1] for k in kernels] == [5, 6, 7, 3]
    same_seed = split_probe(observer_probe(model, hidden=(5, 6, 7), seed=3)).kernels
    for ours, expected in zip(kernels, same_seed):
        np.testing.assert_array_equal(ours, np.asarray(expected))
    with pytest.raises(TypeError, match=r"BetaEffLogger .*\['hiden'\].*'probe_seed'"):
        BetaEffLogger(x, y, hiden=(5, 5, 5))
