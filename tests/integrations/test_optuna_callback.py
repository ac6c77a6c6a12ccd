"""NCPCallback on the user's own Keras classifier, and what the study records about
what decides (study and trial user attributes, the one-time log line)."""

from __future__ import annotations

import json
import logging
import math

import keras
import numpy as np
import optuna
import pytest

import ncp_search
from ncp_search import NCPCallback, NCPPruner, ProbeError, probe_batch, report_beta_eff

PERCENTILE = {"rule": "percentile"}  # the rule these tests are about (0.1 default)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def digits_like(n=120, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.normal(size=(n, 16)).astype("float32") + y[:, None].astype("float32")
    return x, y


def own_model(seed=0, classes=3, logits=False):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((16,)),
        keras.layers.Dense(24, activation="relu"),
        keras.layers.Dense(classes, activation=None if logits else "softmax"),
    ])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=logits)
    model.compile(keras.optimizers.Adam(0.01), loss, metrics=["accuracy"])
    return model


def fit(model, trial, epochs=3, **kwargs):
    x, y = digits_like()
    x_probe, y_probe = probe_batch(x, y, n=30)
    callback = NCPCallback(trial, x_probe, y_probe, hidden=(8, 8, 8), **kwargs)
    model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=32, verbose=0,
              callbacks=[callback])
    return callback


@pytest.mark.parametrize("logits", [False, True])
def test_callback_on_a_plain_model_reports_beta_eff_each_epoch(logits):
    # Before: ProbeError "carries no ncp_search probe ... Build it with attach_probe".
    # ncp_raw reads beta_eff, so the default measure="auto" measures.
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(predictor="ncp_raw"))
    trial = study.ask()
    model = own_model(logits=logits)
    trainable_before = [w.path for w in model.trainable_weights]
    callback = fit(model, trial)
    frozen = study.get_trials()[-1]
    betas = frozen.user_attrs["ncp_beta_eff"]
    assert sorted(betas) == ["0", "1", "2"] and all(math.isfinite(v) for v in betas.values())
    assert set(frozen.user_attrs["ncp_probe_terms"]) == set(betas)
    assert sorted(frozen.intermediate_values) == [0, 1, 2]
    # the user's model trains its own head; the probe only observes it
    assert [w.path for w in model.trainable_weights] == trainable_before
    assert callback.probed is not model
    assert callback.probed.get_layer("ncp_probe_features") is not None


def test_probed_model_and_a_model_carrying_a_probe_still_work():
    study = optuna.create_study(direction="maximize")
    model = own_model()
    explicit = ncp_search.observer_probe(model, hidden=(8, 8, 8), seed=5)
    callback = fit(model, study.ask(), epochs=2, probed_model=explicit, measure="always")
    assert callback.probed is explicit
    head = ncp_search.attach_probe(own_model(seed=1), 3, hidden=(8, 8, 8))
    head.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = fit(head, study.ask(), epochs=2, measure="always")
    assert callback.probed is head
    assert len(study.get_trials()[-1].user_attrs["ncp_beta_eff"]) == 2


def test_a_model_without_hidden_layer_fails_at_fit_with_the_fix():
    study = optuna.create_study(direction="maximize")
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(ProbeError, match="Add a hidden layer"):
        fit(model, study.ask(), measure="always")


def test_study_records_the_pruner_and_numeric_trial_attributes(caplog):
    pruner = NCPPruner(**PERCENTILE, predictor="ncp_feature_norm", n_startup_trials=2, max_step=5)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    with caplog.at_level(logging.INFO, logger="ncp_search"):
        for _ in range(2):
            trial = study.ask()
            for step in range(3):
                report_beta_eff(trial, step, 0.5 - 0.1 * step, 0.6 + 0.1 * step,
                                terms={"feature_norm": 2.0})
    settings = study.user_attrs["ncp_pruner"]
    assert settings == pruner.settings()
    assert settings["class"] == "NCPPruner" and settings["predictor"] == "ncp_feature_norm"
    assert settings["rule"] == "percentile" and settings["uses_beta_eff"] is True
    json.dumps(settings)  # storable in any storage
    lines = [r.getMessage() for r in caplog.records if "decides" in r.getMessage()]
    assert len(lines) == 1  # once per study and process, not once per report
    assert "predictor='ncp_feature_norm'" in lines[0] and "uses beta_eff" in lines[0]
    frozen = study.get_trials()[-1]
    assert frozen.user_attrs["ncp_beta_eff_last"] == pytest.approx(0.3)
    assert frozen.user_attrs["ncp_last_step"] == 2
    assert isinstance(frozen.user_attrs["ncp_predicted_final_last"], float)
    assert frozen.user_attrs["ncp_predicted_final_last"] == (
        frozen.user_attrs["ncp_predicted_final"]["value"])
    assert frozen.user_attrs["ncp_beta_eff"] == {"0": 0.5, "1": 0.4, "2": pytest.approx(0.3)}
    # one plain number per step too, which optuna-dashboard sorts and plots
    assert [frozen.user_attrs[f"ncp_beta_eff/{s}"] for s in range(3)] == [
        0.5, 0.4, pytest.approx(0.3)]
    assert all(frozen.user_attrs[f"ncp_predicted_final/{s}"] == value
               for s, value in frozen.user_attrs["ncp_predicted_history"].items())


def test_default_predictor_is_logged_as_not_using_beta_eff(caplog):
    study = optuna.create_study(direction="maximize", pruner=NCPPruner())
    with caplog.at_level(logging.INFO, logger="ncp_search"):
        report_beta_eff(study.ask(), 0, 1.0, 0.5)
    assert study.user_attrs["ncp_pruner"]["uses_beta_eff"] is False
    (line,) = [r.getMessage() for r in caplog.records if "decides" in r.getMessage()]
    assert "predictor='best'" in line and "does not use beta_eff" in line
    assert "rule='asha'" in line


def test_other_pruners_are_recorded_as_not_reading_beta_eff(caplog):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner())
    with caplog.at_level(logging.INFO, logger="ncp_search"):
        trial = study.ask()
        report_beta_eff(trial, 0, float("nan"), 0.5)
    assert study.user_attrs["ncp_pruner"] == {"class": "MedianPruner", "uses_beta_eff": False}
    assert any("MedianPruner decides from the reported values alone" in r.getMessage()
               for r in caplog.records)
    frozen = study.get_trials()[-1]
    assert frozen.user_attrs["ncp_beta_eff_last"] is None  # NaN is stored as None
    assert "ncp_predicted_final_last" not in frozen.user_attrs


def test_asha_and_base_pruners_are_described():
    from ncp_search.integrations.optuna.reporting import describe_pruner

    assert "rule='asha'" in describe_pruner(NCPPruner(rule="asha", min_resource=2))
    text = describe_pruner(NCPPruner(base=optuna.pruners.MedianPruner()))
    assert "MedianPruner run on the predicted finals" in text


def test_attributes_survive_sqlite_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(direction="maximize", storage=storage, study_name="s",
                                pruner=NCPPruner(rule="asha"))
    trial = study.ask()
    report_beta_eff(trial, 0, 1.25, 0.5)
    loaded = optuna.load_study(study_name="s", storage=storage)
    assert loaded.user_attrs["ncp_pruner"]["rule"] == "asha"
    assert loaded.get_trials()[0].user_attrs["ncp_beta_eff_last"] == 1.25


def test_a_sequential_model_without_input_is_built_from_the_probe_batch():
    study = optuna.create_study(direction="maximize")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Dense(24, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    fit(model, study.ask(), epochs=2, measure="always")
    assert len(study.get_trials()[-1].user_attrs["ncp_beta_eff"]) == 2


@pytest.mark.parametrize("pruner", [NCPPruner(), optuna.pruners.MedianPruner()],
                         ids=["NCPPruner()", "MedianPruner"])
def test_default_callback_never_measures_when_the_pruner_does_not_read_beta_eff(
        meter_calls, pruner):
    # Was: beta_eff measured every epoch (+22% CPU on a small MLP), read by nothing.
    study = optuna.create_study(direction="maximize", pruner=pruner)
    callback = fit(own_model(), study.ask(), epochs=3)
    assert meter_calls == {"probe_for": 0, "measure": 0}
    assert callback.measuring is False and callback.probed is None
    frozen = study.get_trials()[-1]
    assert sorted(frozen.intermediate_values) == [0, 1, 2]  # the curve is still reported
    assert "ncp_beta_eff" not in frozen.user_attrs and "ncp_beta_eff_last" not in (
        frozen.user_attrs)
    # what curve-only predictors read (tse: the training loss) is still stored
    terms = frozen.user_attrs["ncp_probe_terms"]
    assert sorted(terms) == ["0", "1", "2"] and all(set(t) == {"train_loss"}
                                                    for t in terms.values())


def test_default_callback_measures_each_epoch_when_the_predictor_reads_beta_eff(meter_calls):
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(predictor="ncp_raw"))
    callback = fit(own_model(), study.ask(), epochs=3)
    assert meter_calls == {"probe_for": 1, "measure": 3}
    assert callback.measuring is True
    assert sorted(study.get_trials()[-1].user_attrs["ncp_beta_eff"]) == ["0", "1", "2"]


@pytest.mark.parametrize("pruner", [NCPPruner(), optuna.pruners.MedianPruner()],
                         ids=["NCPPruner()", "MedianPruner"])
def test_measure_always_overrides_the_pruner(meter_calls, pruner):
    study = optuna.create_study(direction="maximize", pruner=pruner)
    callback = fit(own_model(), study.ask(), epochs=3, measure="always")
    assert meter_calls == {"probe_for": 1, "measure": 3} and callback.measuring is True
    assert len(study.get_trials()[-1].user_attrs["ncp_beta_eff"]) == 3


def test_measure_never_overrides_the_pruner_which_then_warns_and_keeps_the_trial(meter_calls):
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(predictor="ncp_raw"))
    with pytest.warns(RuntimeWarning, match="reports no beta_eff"):
        callback = fit(own_model(), study.ask(), epochs=3, measure="never")
    assert meter_calls == {"probe_for": 0, "measure": 0} and callback.measuring is False
    assert "ncp_beta_eff" not in study.get_trials()[-1].user_attrs


def test_measure_every_interval_epochs_only(meter_calls):
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(predictor="ncp_raw"))
    fit(own_model(), study.ask(), epochs=4, interval=2)
    assert meter_calls["measure"] == 2
    assert sorted(study.get_trials()[-1].user_attrs["ncp_beta_eff"]) == ["1", "3"]


@pytest.mark.parametrize("measure", ["sometimes", None, True, 2])
def test_bad_measure_is_refused_with_the_choices(measure):
    study = optuna.create_study(direction="maximize")
    with pytest.raises(ValueError, match=r"measure must be one of \['auto', 'always', 'never'\]"):
        NCPCallback(study.ask(), np.zeros((2, 16)), [0, 1], measure=measure)


def test_a_fixed_trial_measures_nothing_by_default():
    x, y = digits_like()
    callback = NCPCallback(optuna.trial.FixedTrial({}), x[:30], y[:30], hidden=(8, 8, 8))
    assert callback.needs_beta_eff() is False


def test_a_pruned_trial_says_epoch_step_value_and_threshold_and_stores_them():
    # Was: "pruned at epoch 0 by its predicted final value." (0-based, no numbers) and
    # no ncp_decision from NCPCallback.
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(
        **PERCENTILE, n_startup_trials=2, n_warmup_steps=0))
    for _ in range(3):
        study.add_trial(optuna.trial.create_trial(
            value=0.999, intermediate_values={0: 0.999, 1: 0.999, 2: 0.999}))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned) as pruned:
        fit(own_model(), trial, epochs=3)
    decision = study.get_trials()[-1].user_attrs["ncp_decision"]
    assert decision["step"] == 0 and decision["epoch"] == 1  # epoch = step + 1
    assert decision["reason"] == "below" and decision["threshold"] == pytest.approx(0.999)
    assert decision["value"] < decision["threshold"]
    assert str(pruned.value) == (f"pruned at epoch 1 (step 0): predicted final "
                                 f"{decision['value']:.4g} below threshold 0.999")


def test_another_pruner_is_named_in_the_prune_message():
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(
        lower=0.999))
    with pytest.raises(optuna.TrialPruned, match=r"^pruned at epoch 1 \(step 0\) by "
                                                 r"ThresholdPruner$"):
        fit(own_model(), study.ask(), epochs=3)
    assert "ncp_decision" not in study.get_trials()[-1].user_attrs
