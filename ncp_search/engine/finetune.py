"""Build and fine-tune one trial's model from a source model and a configuration.

A trial configuration may set:

- ``optimizer``: ``sgd`` (plain, slow to start), ``momentum`` (SGD, 0.9), ``adam``,
  ``rmsprop`` or ``adagrad``;
- ``learning_rate`` (float > 0) and ``schedule``: ``constant``, ``warmup`` (linear
  ramp from 1% over the first 30% of epochs), ``step`` (x0.1 at 50% and again at
  75% of epochs) or ``cosine``;
- ``batch_size`` (int), ``dropout`` (rate before the head, in [0, 1)),
  ``weight_decay`` (decoupled, >= 0);
- ``trainable``: ``all`` (fine-tune the whole bottom) or ``top`` (only the last
  weighted layer of the bottom);
- ``head_units``: 0 for a linear softmax head (default) or the width of one hidden
  ReLU layer in the user's own head (observer mode only).

Two ways of tuning, named ``mode``:

- ``probe_head``: Algorithm 1, the frozen probe is the trained model's head;
- ``observer``: the user's own (trainable) head is trained, as in ordinary
  fine-tuning; the probe sits beside it on the same features and only observes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ncp_search.engine.keras_import import keras
from ncp_search.engine.probe import attach_probe, classifier_features, observer_probe

__all__ = ["build_trial_models", "compile_trial", "EpochEnd", "fine_tune", "learning_rate_at",
           "observer_probe", "schedule_callback", "trial_settings", "TrialModels"]

MODES = ("probe_head", "observer")
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad")
SCHEDULES = ("constant", "warmup", "step", "cosine")
DEFAULTS: dict[str, Any] = {
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "schedule": "constant",
    "batch_size": 64,
    "dropout": 0.0,
    "weight_decay": 0.0,
    "trainable": "all",
    "head_units": 0,
}


@dataclass
class TrialModels:
    """The model that is trained and the probed model ``beta_eff`` is read from."""

    trained: Any
    probed: Any


def trial_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` completed with defaults and checked; raises ``ValueError``."""
    known = set(DEFAULTS) | {"source_model"}
    settings = {**DEFAULTS, **{k: v for k, v in config.items() if k in known}}
    if settings["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {settings['optimizer']!r}.")
    if settings["schedule"] not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {settings['schedule']!r}.")
    if not settings["learning_rate"] > 0:
        raise ValueError(f"learning_rate must be > 0, got {settings['learning_rate']!r}.")
    if not 0.0 <= settings["dropout"] < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {settings['dropout']!r}.")
    if settings["trainable"] not in ("all", "top"):
        raise ValueError(f"trainable must be 'all' or 'top', got {settings['trainable']!r}.")
    return settings


def learning_rate_at(epoch: int, epochs: int, base: float, schedule: str) -> float:
    """Learning rate of a 0-based ``epoch`` under ``schedule``."""
    fraction = epoch / max(epochs, 1)
    if schedule == "warmup":
        ramp = max(1, round(0.3 * epochs))
        return base * (0.01 + 0.99 * min(1.0, epoch / ramp))
    if schedule == "step":
        return base * (1.0 if fraction < 0.5 else 0.1 if fraction < 0.75 else 0.01)
    if schedule == "cosine":
        return base * 0.5 * (1.0 + math.cos(math.pi * fraction))
    return base


def _optimizer(name: str, learning_rate: float, weight_decay: float) -> Any:
    decay = weight_decay or None
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, weight_decay=decay)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, weight_decay=decay)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate, weight_decay=decay)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, weight_decay=decay)
    return keras.optimizers.Adagrad(learning_rate, weight_decay=decay)


def _freeze_all_but_top(source: Any, features: Any) -> None:
    bottom = keras.Model(source.inputs, features)
    weighted = [layer for layer in bottom.layers if layer.weights]
    for layer in weighted[:-1]:
        layer.trainable = False


def build_trial_models(
    source: Any,
    num_classes: int,
    config: Mapping[str, Any],
    *,
    mode: str = "observer",
    hidden: Sequence[int] = (64, 64, 64),
    probe_seed: int = 0,
) -> TrialModels:
    """Cut ``source`` at its features and build the trained and the probed model.

    The source model's layers are reused (not copied): pass a freshly loaded model.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, but got mode={mode!r}.")
    settings = trial_settings(config)
    features = classifier_features(source)
    if settings["trainable"] == "top":
        _freeze_all_but_top(source, features)
    x = features
    if len(x.shape) > 2:
        x = keras.layers.Flatten(name="trial_flatten")(x)
    if settings["dropout"] > 0:
        x = keras.layers.Dropout(settings["dropout"], name="trial_dropout")(x)
    if mode == "observer" and settings["head_units"]:
        x = keras.layers.Dense(
            int(settings["head_units"]), activation="relu", name="head_hidden"
        )(x)
    out = keras.layers.Dense(num_classes, activation="softmax", name="trial_head")(x)
    inputs = source.inputs[0] if len(source.inputs) == 1 else source.inputs
    classifier = keras.Model(inputs, out, name="trial_classifier")
    if mode == "probe_head":
        probed = attach_probe(classifier, num_classes, hidden=hidden, seed=probe_seed)
        return TrialModels(trained=probed, probed=probed)
    probed = observer_probe(source, num_classes, hidden=hidden, seed=probe_seed)
    return TrialModels(trained=classifier, probed=probed)


def compile_trial(model: Any, config: Mapping[str, Any]) -> None:
    """Compile ``model`` with the trial's optimizer, loss and accuracy metric."""
    settings = trial_settings(config)
    model.compile(
        _optimizer(settings["optimizer"], settings["learning_rate"], settings["weight_decay"]),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def schedule_callback(config: Mapping[str, Any], epochs: int) -> Any:
    """A ``LearningRateScheduler`` applying the trial's schedule per epoch."""
    settings = trial_settings(config)
    return keras.callbacks.LearningRateScheduler(
        lambda epoch, _lr: learning_rate_at(
            epoch, epochs, settings["learning_rate"], settings["schedule"]
        )
    )


@dataclass(frozen=True)
class EpochEnd:
    """What :func:`fine_tune`'s ``on_epoch`` hook gets after each epoch."""

    epoch: int  # 0-based, counting the epochs a restored checkpoint had done
    logs: Mapping[str, float]  # Keras' logs: loss, accuracy, val_loss, val_accuracy
    train_seconds: float  # the epoch's training and validation (Keras' epoch)
    models: TrialModels


def fine_tune(
    source: Any,
    task: Any,
    config: Mapping[str, Any],
    *,
    epochs: int,
    trial_seed: int,
    on_epoch: Callable[[EpochEnd], Any],
    mode: str = "observer",
    hidden: Sequence[int] = (64, 64, 64),
    probe_seed: int = 0,
    on_built: Callable[[TrialModels], Any] | None = None,
    restore: Callable[[Any], int] | None = None,
    models: TrialModels | None = None,
    start: int = 0,
) -> int:
    """Build one trial's models on ``source`` and fine-tune them on ``task``: the one
    trial runner of the sweeps and the research recorder.

    Seeds Keras with ``trial_seed``, builds the trained and the probed model
    (:func:`build_trial_models`), compiles the trained one (:func:`compile_trial`),
    then trains for up to ``epochs`` epochs with the trial's learning-rate schedule.

    Args:
        source: a freshly loaded source model (its layers are reused).
        task: the target task (``x_train``, ``y_train``, ``x_val``, ``y_val``,
            ``num_classes``).
        config: the trial's configuration (module docstring).
        epochs: the trial's length.
        trial_seed: seeds the head's weights, dropout and the data order.
        on_epoch: called after each epoch with an :class:`EpochEnd`; a return of
            ``True`` stops training, an exception propagates.
        mode, hidden, probe_seed: as :func:`build_trial_models`.
        on_built: called with the :class:`TrialModels` before training (to measure
            the untrained model or to attach meters).
        restore: called with the compiled trained model; loads a checkpoint into it
            and returns the epochs it had done, from which training goes on.
        models: the models of this trial from an earlier call, kept in memory (a
            paused trial that resumes): trained on from ``start`` epochs without
            building, compiling or restoring (``source`` is not used). Training goes
            on as from a checkpoint of the same epoch (same seed, same batches).
        start: with ``models``, the epochs they have done.

    Returns:
        The epoch training started from (0 without a checkpoint).
    """
    keras.utils.set_random_seed(int(trial_seed))
    if models is None:
        models = build_trial_models(source, task.num_classes, config, mode=mode,
                                    hidden=hidden, probe_seed=probe_seed)
        compile_trial(models.trained, config)
        start = 0 if restore is None else int(restore(models.trained))
    if on_built is not None:
        on_built(models)
    clock = {"begin": time.perf_counter()}

    def begin(epoch: int, logs: Any = None) -> None:
        clock["begin"] = time.perf_counter()

    def end(epoch: int, logs: Mapping[str, Any] | None) -> None:
        seconds = time.perf_counter() - clock["begin"]
        numbers = {k: float(v) for k, v in (logs or {}).items()}
        if on_epoch(EpochEnd(epoch, numbers, seconds, trial_models)) is True:
            trial_models.trained.stop_training = True

    trial_models = models

    models.trained.fit(
        task.x_train, task.y_train, validation_data=(task.x_val, task.y_val),
        epochs=int(epochs), initial_epoch=start, verbose=0,
        batch_size=int(config.get("batch_size", 64)),
        callbacks=[schedule_callback(config, int(epochs)),
                   keras.callbacks.LambdaCallback(on_epoch_begin=begin, on_epoch_end=end)])
    return start
