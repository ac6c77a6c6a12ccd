"""Trial models: probe as head vs observer beside the user's head; schedules; settings."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ncp_search import BetaEffMeter, split_probe
from ncp_search.engine.finetune import (
    build_trial_models,
    compile_trial,
    learning_rate_at,
    trial_settings,
)
from tests.engine.models import batch, sequential_classifier


def test_probe_head_mode_trains_through_the_probe():
    models = build_trial_models(sequential_classifier(), 3, {"dropout": 0.2}, mode="probe_head",
                                hidden=(8, 8, 8))
    assert models.trained is models.probed
    assert models.trained.output.shape[-1] == 3


@pytest.mark.slow
def test_observer_mode_trains_own_head_and_probe_sees_bottom_changes():
    models = build_trial_models(sequential_classifier(), 3, {"optimizer": "momentum",
                                "learning_rate": 0.05}, mode="observer", hidden=(8, 8, 8))
    assert models.trained is not models.probed
    kernels = [k.numpy().copy() for k in split_probe(models.probed).kernels]
    x, y = batch((8, 8, 1), n=64, classes=3)
    meter = BetaEffMeter(models.probed, x[:16], y[:16])
    before = meter().beta_eff
    head = models.trained.get_layer("trial_head").kernel.numpy().copy()
    compile_trial(models.trained, {"optimizer": "momentum", "learning_rate": 0.05})
    models.trained.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert not np.array_equal(head, models.trained.get_layer("trial_head").kernel.numpy())
    assert all(np.array_equal(a, k.numpy()) for a, k in
               zip(kernels, split_probe(models.probed).kernels))
    assert meter().beta_eff != before


def test_trainable_top_freezes_lower_layers():
    source = sequential_classifier()
    models = build_trial_models(source, 3, {"trainable": "top"}, mode="observer",
                                hidden=(8, 8, 8))
    trainable = {id(w) for w in models.trained.trainable_weights}
    assert id(source.layers[0].kernel) not in trainable  # conv frozen
    assert id(source.layers[2].kernel) in trainable  # last bottom Dense trains
    assert id(models.trained.get_layer("trial_head").kernel) in trainable


def test_schedules():
    assert learning_rate_at(0, 10, 0.1, "constant") == 0.1
    assert learning_rate_at(0, 10, 0.1, "warmup") == pytest.approx(0.001)
    assert learning_rate_at(5, 10, 0.1, "warmup") == pytest.approx(0.1)
    assert learning_rate_at(6, 10, 0.1, "step") == pytest.approx(0.01)
    assert learning_rate_at(9, 10, 0.1, "step") == pytest.approx(0.001)
    assert learning_rate_at(5, 10, 0.1, "cosine") == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"schedule": "cyclic"}, "schedule"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"dropout": 1.0}, "dropout"),
        ({"trainable": "some"}, "trainable"),
    ],
)
def test_bad_settings(config, match):
    with pytest.raises(ValueError, match=match):
        trial_settings(config)


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        build_trial_models(sequential_classifier(), 3, {}, mode="both")


def test_compile_uses_weight_decay():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    compile_trial(model, {"optimizer": "adam", "weight_decay": 0.01})
    assert model.optimizer.weight_decay == pytest.approx(0.01)


def _tiny_task(classes: int = 3):
    from types import SimpleNamespace

    x, y = batch((8, 8, 1), n=48, classes=classes)
    return SimpleNamespace(x_train=x[:32], y_train=y[:32], x_val=x[32:], y_val=y[32:],
                           num_classes=classes)


def test_fine_tune_calls_back_in_order_and_stops_when_told():
    from ncp_search.engine.finetune import fine_tune

    calls: list[object] = []

    def built(models):
        calls.append(("built", models.trained.optimizer is not None))

    def on_epoch(end):
        calls.append((end.epoch, {"loss", "val_accuracy"} <= set(end.logs),
                      end.train_seconds >= 0))
        return end.epoch == 1  # stop after the second epoch

    start = fine_tune(sequential_classifier(), _tiny_task(), {"batch_size": 16}, epochs=5,
                      trial_seed=3, on_epoch=on_epoch, hidden=(8, 8, 8), on_built=built)
    assert start == 0
    assert calls == [("built", True), (0, True, True), (1, True, True)]


def test_fine_tune_goes_on_from_the_restored_epoch_and_is_seeded():
    from ncp_search.engine.finetune import fine_tune

    def run(restore=None):
        epochs: list[int] = []
        values: list[float] = []

        def on_epoch(end):
            epochs.append(end.epoch)
            values.append(end.logs["loss"])

        start = fine_tune(sequential_classifier(), _tiny_task(), {"batch_size": 16}, epochs=4,
                          trial_seed=7, on_epoch=on_epoch, hidden=(8, 8, 8), restore=restore)
        return start, epochs, values

    start, epochs, _ = run(restore=lambda model: 3)
    assert (start, epochs) == (3, [3])
    assert run()[2] == run()[2]  # the same seed trains the same model


def test_fine_tune_goes_on_with_kept_models_as_if_it_had_not_stopped():
    # what a paused trial kept in memory does when it resumes (ncp_pause sweeps)
    from ncp_search.engine.finetune import fine_tune

    def run(stop_after=None, models=None, start=0):
        losses: list[float] = []
        kept = {}

        def on_epoch(end):
            losses.append(end.logs["loss"])
            kept["models"] = end.models
            return stop_after is not None and end.epoch + 1 == stop_after

        fine_tune(sequential_classifier(), _tiny_task(), {"batch_size": 16, "dropout": 0.3},
                  epochs=4, trial_seed=7, on_epoch=on_epoch, hidden=(8, 8, 8), models=models,
                  start=start)
        return losses, kept["models"]

    whole, _ = run()
    first, models = run(stop_after=2)
    keras.backend.clear_session(free_memory=False)  # as the sweep does between trials
    run()  # another trial in between
    rest, _ = run(models=models, start=2)
    assert first + rest == whole
