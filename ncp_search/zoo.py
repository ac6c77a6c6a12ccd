"""A small local model zoo: source models pre-trained here and cached.

ImageNet weights cannot be fetched on every machine, so the "pre-trained source
models" of Algorithm 1 are trained locally on a source task (by default
Fashion-MNIST classes 0-4) and cached as ``.keras`` files with a JSON sidecar.
Each architecture ends in ``Dense(num_classes, softmax, name="predictions")`` on a
flat feature vector named ``features``.

Cache folder: the ``cache_dir`` argument, else ``$NCP_SEARCH_CACHE/zoo``, else
``~/.cache/ncp_search/zoo``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _cnn_small(input_shape, num_classes: int, seed: int):
    import keras
    from keras import layers

    pool = 2 if min(input_shape[:2]) >= 8 else 1
    inputs = keras.Input(input_shape)
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(pool)(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(pool)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu", name="features")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="cnn_small")


def _cnn_wide(input_shape, num_classes: int, seed: int):
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = layers.Conv2D(48, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(48, 3, padding="same", strides=2, activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(96, activation="relu", name="features")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="cnn_wide")


def _mlp(input_shape, num_classes: int, seed: int):
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = layers.Flatten()(inputs)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dense(128, activation="relu", name="features")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="mlp")


def _resnet_tiny(input_shape, num_classes: int, seed: int):
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = layers.Conv2D(24, 3, padding="same", activation="relu")(inputs)
    for filters, stride in ((24, 1), (48, 2)):
        shortcut = x
        y = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        y = layers.Conv2D(filters, 3, padding="same")(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = layers.Conv2D(filters, 1, strides=stride, padding="same")(shortcut)
        x = layers.Activation("relu")(layers.Add()([y, shortcut]))
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(64, activation="relu", name="features")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet_tiny")


ARCHITECTURES: dict[str, Callable[..., Any]] = {
    "cnn_small": _cnn_small,
    "cnn_wide": _cnn_wide,
    "mlp": _mlp,
    "resnet_tiny": _resnet_tiny,
}


def available_models() -> list[str]:
    """Names of the zoo's architectures."""
    return sorted(ARCHITECTURES)


def cache_folder(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where cached source models live (see the module docstring)."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("NCP_SEARCH_CACHE")
    if root:
        return Path(root) / "zoo"
    return Path.home() / ".cache" / "ncp_search" / "zoo"


def _key(name: str, source: str, epochs: int, seed: int, n_train: int | None) -> str:
    text = f"{name}|{source}|{epochs}|{seed}|{n_train}"
    return f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _check_name(name: str) -> None:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown zoo model {name!r}; available: {available_models()}.")


def _train(name, source, epochs, seed, n_train, say) -> tuple[Any, dict[str, Any]]:
    import keras

    from ncp_search.data import load_task

    task = load_task(source, seed=seed, **({"n_train": n_train} if n_train else {}))
    keras.utils.set_random_seed(seed)
    model = ARCHITECTURES[name](task.x_train.shape[1:], task.num_classes, seed)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    say(f"zoo: training {name} on {task.name} ({len(task.y_train)} samples, {epochs} epochs)")
    started = time.perf_counter()
    for epoch in range(epochs):
        history = model.fit(task.x_train, task.y_train, batch_size=128, epochs=1, verbose=0,
                            validation_data=(task.x_val, task.y_val))
        say(f"zoo: {name} epoch {epoch + 1}/{epochs}: val_accuracy "
            f"{history.history['val_accuracy'][-1]:.4f}")
    info = {
        "architecture": name, "source": source, "epochs": epochs, "seed": seed,
        "n_train": n_train, "val_accuracy": float(history.history["val_accuracy"][-1]),
        "train_seconds": time.perf_counter() - started, "keras": keras.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return model, info


def _save(model: Any, info: dict[str, Any], folder: Path, key: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".keras", delete=False) as tmp:
        tmp_path = tmp.name
    model.save(tmp_path)
    os.replace(tmp_path, folder / f"{key}.keras")
    (folder / f"{key}.json.tmp").write_text(json.dumps(info, indent=2))
    os.replace(folder / f"{key}.json.tmp", folder / f"{key}.json")


def load_source_model(
    name: str,
    *,
    source: str = "fashion_mnist:0-4",
    epochs: int = 3,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    retrain: bool = False,
    n_train: int | None = None,
    progress: Callable[[str], Any] | None = None,
) -> Any:
    """A source model pre-trained on ``source``: from the cache, else trained and cached.

    A cached file that cannot be loaded is reported, retrained and replaced. Each
    call returns a fresh model object (its own weights), so trials do not share
    layers.

    Raises:
        ValueError: for an unknown architecture name or task spec.
    """
    import keras

    _check_name(name)
    say = progress or logger.info
    folder = cache_folder(cache_dir)
    key = _key(name, source, epochs, seed, n_train)
    path = folder / f"{key}.keras"
    if path.exists() and not retrain:
        try:
            return keras.models.load_model(path)
        except Exception as error:  # a broken cache entry must not break a sweep
            logger.warning("zoo: cached model %s is unreadable (%s); retraining", path, error)
    model, info = _train(name, source, epochs, seed, n_train, say)
    _save(model, info, folder, key)
    say(f"zoo: cached {name} at {path}")
    return keras.models.load_model(path)


def source_model_info(
    name: str,
    *,
    source: str = "fashion_mnist:0-4",
    epochs: int = 3,
    seed: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    n_train: int | None = None,
) -> dict[str, Any] | None:
    """The sidecar JSON of a cached source model, or ``None`` if it is not cached."""
    _check_name(name)
    path = cache_folder(cache_dir) / f"{_key(name, source, epochs, seed, n_train)}.json"
    return json.loads(path.read_text()) if path.exists() else None


def build_zoo(
    names: Sequence[str] | None = None, **kwargs: Any
) -> dict[str, dict[str, Any]]:
    """Train (or find cached) several source models; returns name -> sidecar info."""
    infos = {}
    for name in names or available_models():
        load_source_model(name, **kwargs)
        info_kwargs = {k: v for k, v in kwargs.items() if k not in ("retrain", "progress")}
        infos[name] = source_model_info(name, **info_kwargs) or {}
    return infos
