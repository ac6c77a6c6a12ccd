"""BetaEffLogger: beta_eff in the epoch logs of a real fit."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ncp_search import BetaEffLogger, attach_probe, beta_eff
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
