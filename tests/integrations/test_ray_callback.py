"""NCPTuneCallback, BetaEffLogger with Ray's own TuneReportCheckpointCallback, and
report_beta_eff_to_tune, with ``ray.tune.report`` captured (a real Tune run is the
own-model example, run by tests/test_examples.py)."""

from __future__ import annotations

import math
import os

import keras
import numpy as np
import pytest
import ray.tune
from ray.tune.integration.keras import TuneReportCheckpointCallback

import ncp_search
from ncp_search import BetaEffLogger, NCPTuneCallback, probe_batch
from ncp_search.core.history import PROBE_TERMS


@pytest.fixture
def reports(monkeypatch):
    captured = []

    def report(metrics, *, checkpoint=None):
        files = sorted(os.listdir(checkpoint.path)) if checkpoint is not None else None
        captured.append({"metrics": dict(metrics), "checkpoint_files": files})

    monkeypatch.setattr(ray.tune, "report", report)
    return captured


def own_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(24, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(n=96):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, 16)).astype("float32") + y[:, None], y


def fit(model, callbacks, epochs=2):
    x, y = data()
    model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=32, verbose=0,
              callbacks=callbacks)


def test_reports_metrics_beta_eff_and_probe_terms_with_a_checkpoint_each_epoch(reports):
    x, y = data()
    callback = NCPTuneCallback(*probe_batch(x, y, n=30), metrics=["val_accuracy", "loss"],
                               hidden=(8, 8, 8), predictor="ncp_raw")
    fit(own_model(), [callback])
    assert len(reports) == 2
    for report in reports:
        keys = set(report["metrics"])
        assert keys == {"val_accuracy", "loss", "beta_eff", *PROBE_TERMS}
        assert math.isfinite(report["metrics"]["beta_eff"])
        assert report["checkpoint_files"] is not None
        assert "model.keras" in report["checkpoint_files"]  # Ray's own checkpoint format
    assert callback.probed.get_layer("ncp_probe_features") is not None


def test_renamed_metrics_and_no_checkpoint(reports):
    x, y = data()
    callback = NCPTuneCallback(*probe_batch(x, y, n=30), metrics={"acc": "val_accuracy"},
                               checkpoint_on=None, hidden=(8, 8, 8), measure="always")
    fit(own_model(), [callback], epochs=1)
    (report,) = reports
    assert report["checkpoint_files"] is None
    assert report["metrics"]["acc"] > 0 and "beta_eff" in report["metrics"]
    assert "val_accuracy" not in report["metrics"]


def test_all_logs_by_default_and_later_callbacks_see_beta_eff(reports):
    x, y = data()
    seen = []
    after = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(dict(logs)))
    fit(own_model(), [NCPTuneCallback(*probe_batch(x, y, n=30), checkpoint_on=None,
                                      hidden=(8, 8, 8), measure="always"), after], epochs=1)
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "beta_eff"} <= set(
        reports[0]["metrics"])
    assert "probe_feature_norm" in seen[0]


@pytest.mark.parametrize("kwargs", [{}, {"predictor": "best"}, {"predictor": "tse"},
                                    {"predictor": "ncp_raw", "measure": "never"}])
def test_nothing_measured_when_the_schedulers_predictor_reads_no_beta_eff(
        reports, meter_calls, kwargs):
    # Was: beta_eff measured and reported every epoch, whatever the scheduler read.
    x, y = data()
    callback = NCPTuneCallback(*probe_batch(x, y, n=30), metrics=["val_accuracy", "loss"],
                               hidden=(8, 8, 8), **kwargs)
    fit(own_model(), [callback])
    assert meter_calls == {"probe_for": 0, "measure": 0} and callback.measuring is False
    assert [set(r["metrics"]) for r in reports] == [{"val_accuracy", "loss"}] * 2
    assert reports[0]["checkpoint_files"] is not None


@pytest.mark.parametrize("kwargs", [{"predictor": "ncp_raw"}, {"predictor": "ncp_feature_norm"},
                                    {"measure": "always"}, {"predictor": "best",
                                                            "measure": "always"}])
def test_measured_each_epoch_when_the_predictor_reads_it_or_always(reports, meter_calls, kwargs):
    x, y = data()
    callback = NCPTuneCallback(*probe_batch(x, y, n=30), metrics=["val_accuracy"],
                               hidden=(8, 8, 8), **kwargs)
    fit(own_model(), [callback], epochs=3)
    assert meter_calls == {"probe_for": 1, "measure": 3} and callback.measuring is True
    assert all(set(r["metrics"]) == {"val_accuracy", "beta_eff", *PROBE_TERMS} for r in reports)


def test_unknown_predictor_or_measure_is_refused():
    with pytest.raises(ValueError, match="predictor must be one of"):
        NCPTuneCallback(np.zeros((3, 16)), [0, 1, 2], predictor="ncp_typo")
    with pytest.raises(ValueError, match="measure must be one of"):
        NCPTuneCallback(np.zeros((3, 16)), [0, 1, 2], measure="auto_")


def test_report_beta_eff_to_tune_without_a_meter_reports_the_metrics_alone(reports):
    from ncp_search.integrations.ray.trainable import measures_beta_eff

    assert ncp_search.report_beta_eff_to_tune({"val_accuracy": 0.5}, None) == {
        "val_accuracy": 0.5}
    assert reports[0]["metrics"] == {"val_accuracy": 0.5}
    assert [measures_beta_eff(m, p) for m, p in [("auto", None), ("auto", "ncp_raw"),
                                                 ("always", None), ("never", "ncp_raw")]] == [
        False, True, True, False]


def test_missing_metric_lists_the_available_logs(reports):
    x, y = data()
    callback = NCPTuneCallback(*probe_batch(x, y, n=30), metrics="val_auc", hidden=(8, 8, 8))
    with pytest.raises(ValueError, match=r"\['val_auc'\].*available: \['accuracy'"):
        fit(own_model(), [callback], epochs=1)


def test_bad_checkpoint_hook():
    with pytest.raises(ValueError, match="checkpoint_on"):
        NCPTuneCallback(np.zeros((3, 16)), [0, 1, 2], checkpoint_on="batch_end")


def test_beta_eff_logger_feeds_rays_own_callback(reports):
    # BetaEffLogger first: Keras calls callbacks in order, Ray's reads the logs after it.
    x, y = data()
    x_probe, y_probe = probe_batch(x, y, n=30)
    model = own_model()
    explicit = ncp_search.observer_probe(model, hidden=(8, 8, 8))
    logger = BetaEffLogger(x_probe, y_probe, probed_model=explicit, log_terms=True)
    ray_callback = TuneReportCheckpointCallback(
        metrics=["val_accuracy", "beta_eff", "probe_feature_norm"], checkpoint_on=[])
    fit(model, [logger, ray_callback])
    assert [sorted(r["metrics"]) for r in reports] == [
        ["beta_eff", "probe_feature_norm", "val_accuracy"]] * 2
    assert logger.probed is explicit
    assert reports[-1]["metrics"]["beta_eff"] == pytest.approx(logger.records[-1]["beta_eff"])


def test_report_beta_eff_to_tune_is_exported_and_reports_probe_terms(reports):
    model = own_model()
    x, y = data()
    meter = ncp_search.BetaEffMeter(ncp_search.observer_probe(model, hidden=(8, 8, 8)),
                                    *probe_batch(x, y, n=30))
    reported = ncp_search.report_beta_eff_to_tune({"val_accuracy": 0.5}, meter)
    assert reports[0]["metrics"] == reported
    assert set(reported) == {"val_accuracy", "beta_eff", *PROBE_TERMS}
