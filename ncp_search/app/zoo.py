"""A small local model zoo: source models pre-trained here and cached.

ImageNet weights cannot be fetched on every machine, so the "pre-trained source
models" of Algorithm 1 (Jiang et al. 2024) are trained locally on a source task (by
default Fashion-MNIST classes 0-4) and cached as ``<key>.keras`` files with a
``<key>.json`` sidecar. Each architecture ends in
``Dense(num_classes, softmax, name="predictions")`` on a flat feature vector from a
layer named ``features``, so :func:`ncp_search.attach_probe` finds its features.

Cache folder: the ``cache_dir`` argument, else ``$NCP_SEARCH_CACHE/zoo``, else
``~/.cache/ncp_search/zoo``. The cache key is made of the architecture, the source
task spec, the epochs, the seed and ``n_train`` (a :class:`ZooKey`).

Importing this module does not import Keras; the functions do.

Example:
    >>> model = load_source_model("mlp", source="digits:0-4", epochs=1)  # doctest: +SKIP
    >>> model.get_layer("features").output.shape[-1]  # doctest: +SKIP
    128
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

CACHE_ENV = "NCP_SEARCH_CACHE"

Builder = Callable[[Sequence[int], int, int], Any]
ARCHITECTURES: dict[str, Builder] = {}
"""Architecture name -> ``builder(input_shape, num_classes, seed) -> keras.Model``."""


def _check_build_args(name: str, input_shape: Sequence[int], num_classes: int) -> None:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
        raise ValueError(
            f"{name} needs input_shape=(height, width, channels) of positive integers, but "
            f"got input_shape={input_shape!r}; e.g. (28, 28, 1)."
        )
    if num_classes < 2:
        raise ValueError(f"{name} needs num_classes >= 2, but got num_classes={num_classes}.")


def _architecture(name: str) -> Callable[[Callable[[Any], Any]], Builder]:
    """Register a feature body under ``name``; the builder adds input, seed and head."""

    def register(body: Callable[[Any], Any]) -> Builder:
        def build(input_shape: Sequence[int], num_classes: int, seed: int) -> Any:
            import keras

            _check_build_args(name, input_shape, num_classes)
            keras.utils.set_random_seed(seed)  # same seed, same initial weights
            inputs = keras.Input(tuple(input_shape))
            features = body(inputs)  # built before the head: layer order fixes the weights
            head = keras.layers.Dense(num_classes, activation="softmax", name="predictions")
            outputs = head(features)
            return keras.Model(inputs, outputs, name=name)

        build.__name__ = build.__qualname__ = name
        build.__doc__ = f"Build the zoo's {name}: {body.__doc__}"
        ARCHITECTURES[name] = build
        return build

    return register


def _pool(x: Any) -> Any:
    """2x2 max pooling, skipped where the feature map is too small (8x8 digits)."""
    from keras import layers

    return layers.MaxPooling2D(2)(x) if min(x.shape[1:3]) >= 4 else x


@_architecture("cnn_small")
def _cnn_small(inputs: Any) -> Any:
    """2 conv (16, 32) with max pooling, flatten, dense 128 features."""
    from keras import layers

    x = _pool(layers.Conv2D(16, 3, padding="same", activation="relu")(inputs))
    x = _pool(layers.Conv2D(32, 3, padding="same", activation="relu")(x))
    x = layers.Flatten()(x)
    return layers.Dense(128, activation="relu", name="features")(x)


@_architecture("cnn_wide")
def _cnn_wide(inputs: Any) -> Any:
    """3 wide conv (48, 48/2, 64), global average pooling, dense 96 features."""
    from keras import layers

    x = layers.Conv2D(48, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(48, 3, padding="same", strides=2, activation="relu")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(96, activation="relu", name="features")(x)


@_architecture("mlp")
def _mlp(inputs: Any) -> Any:
    """flatten, dense 256, dense 128 features."""
    from keras import layers

    x = layers.Flatten()(inputs)
    x = layers.Dense(256, activation="relu")(x)
    return layers.Dense(128, activation="relu", name="features")(x)


def _residual_block(x: Any, filters: int, stride: int) -> Any:
    from keras import layers

    y = layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
    y = layers.Conv2D(filters, 3, padding="same")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, padding="same")(x)
    return layers.Activation("relu")(layers.Add()([y, shortcut]))


@_architecture("resnet_tiny")
def _resnet_tiny(inputs: Any) -> Any:
    """conv 24, residual blocks (24, 48/2), global average pooling, dense 64 features."""
    from keras import layers

    x = layers.Conv2D(24, 3, padding="same", activation="relu")(inputs)
    x = _residual_block(x, 24, 1)
    x = _residual_block(x, 48, 2)
    x = layers.GlobalAveragePooling2D()(x)
    return layers.Dense(64, activation="relu", name="features")(x)


def available_models() -> list[str]:
    """Names of the zoo's architectures, sorted."""
    return sorted(ARCHITECTURES)


def cache_folder(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where cached source models live: ``cache_dir``, ``$NCP_SEARCH_CACHE/zoo`` or ``~/.cache``."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / "zoo"
    return Path.home() / ".cache" / "ncp_search" / "zoo"


def _key(name: str, source: str, epochs: int, seed: int, n_train: int | None) -> str:
    text = f"{name}|{source}|{epochs}|{seed}|{n_train}"
    return f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


class SourceSpec(TypedDict, total=False):
    """The keyword arguments that say which source model of an architecture is meant and
    where it is cached; :func:`load_source_model`, :func:`source_model_info` and
    :func:`plan_zoo` take them. Their meaning and defaults: :class:`ZooKey`."""

    source: str
    epochs: int
    seed: int
    n_train: int | None
    cache_dir: str | os.PathLike[str] | None


@dataclass(frozen=True)
class ZooKey:
    """One source model of the cache: the architecture, how it is pre-trained, and the
    cache folder. The cache file's name is made of all but ``cache_dir``.

    Attributes:
        name: an architecture from :func:`available_models`.
        source: task spec of the source task (see :func:`ncp_search.app.data.load_task`).
        epochs: training epochs, >= 1.
        seed: seed of the data subset, the initial weights and training.
        n_train: train on a seeded subset of this many samples (None: all).
        cache_dir: cache folder (default: see the module docstring).
    """

    name: str
    source: str = "fashion_mnist:0-4"
    epochs: int = 3
    seed: int = 0
    n_train: int | None = None
    cache_dir: str | os.PathLike[str] | None = None

    @property
    def folder(self) -> Path:
        """The cache folder (:func:`cache_folder` of ``cache_dir``)."""
        return cache_folder(self.cache_dir)

    @property
    def path(self) -> Path:
        """The model's cache file, ``<key>.keras``; its sidecar is ``<key>.json``."""
        key = _key(self.name, self.source, self.epochs, self.seed, self.n_train)
        return self.folder / f"{key}.keras"

    def check(self) -> None:
        """Raise ValueError for an unknown architecture, ``epochs < 1`` or ``n_train < 1``."""
        _check_name(self.name)
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, but got epochs={self.epochs}.")
        if self.n_train is not None and self.n_train < 1:
            raise ValueError(
                f"n_train must be None (all) or >= 1, but got n_train={self.n_train}."
            )


def _check_name(name: str) -> None:
    if name not in ARCHITECTURES:
        raise ValueError(
            f"the zoo model must be one of {available_models()}, but got {name!r}; pick one "
            "of those (ncp_search.app.zoo.available_models())."
        )


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _fit(model: Any, task: Any, epochs: int, name: str, say: Callable[[str], Any]) -> list:
    """Train epoch by epoch (one progress line each); returns the val accuracies."""
    accuracies = []
    for epoch in range(epochs):
        history = model.fit(
            task.x_train,
            task.y_train,
            batch_size=128,
            epochs=1,
            verbose=0,
            validation_data=(task.x_val, task.y_val),
        )
        accuracies.append(float(history.history["val_accuracy"][-1]))
        say(f"zoo: {name} epoch {epoch + 1}/{epochs}: val_accuracy {accuracies[-1]:.4f}")
    return accuracies


def _train(key: ZooKey, say: Callable[[str], Any]) -> tuple[Any, dict[str, Any]]:
    """Train ``key.name`` on ``key.source``; returns the model and its sidecar info."""
    import keras

    from ncp_search.app.data import load_task

    name, source, epochs, seed, n_train = key.name, key.source, key.epochs, key.seed, key.n_train
    task = load_task(source, seed=seed, **({"n_train": n_train} if n_train else {}))
    keras.utils.set_random_seed(seed)  # seeds initial weights and shuffling
    model = ARCHITECTURES[name](task.x_train.shape[1:], task.num_classes, seed)
    model.compile(
        keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    say(f"zoo: training {name} on {task.name} ({len(task.y_train)} samples, {epochs} epochs)")
    started = time.perf_counter()
    accuracies = _fit(model, task, epochs, name, say)
    info = {
        "architecture": name,
        "source": source,
        "epochs": epochs,
        "seed": seed,
        "n_train": n_train,
        "val_accuracy": accuracies[-1],
        "val_accuracy_history": accuracies,
        "train_seconds": time.perf_counter() - started,
        "train_samples": len(task.y_train),
        "val_samples": len(task.y_val),
        "num_classes": task.num_classes,
        "input_shape": list(task.x_train.shape[1:]),
        "keras": keras.__version__,
        "tensorflow": _version("tensorflow"),
        "backend": keras.backend.backend(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return model, info


def _write_atomic(target: Path, write: Callable[[str], Any]) -> None:
    """Write ``target`` through a temporary file in its folder and ``os.replace``."""
    handle, tmp = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.stem}-", suffix=target.suffix
    )
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(model: Any, info: dict[str, Any], folder: Path, key: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(folder / f"{key}.keras", model.save)
    text = json.dumps(info, indent=2)
    _write_atomic(folder / f"{key}.json", lambda tmp: Path(tmp).write_text(text))


def _load_cached(path: Path, name: str) -> Any | None:
    """The cached model, or None (with a warning) if it is unreadable or not a ``name``."""
    import keras

    try:
        model = keras.models.load_model(path)
    except Exception as error:  # a broken cache entry must not break a sweep
        logger.warning(
            "zoo: cached model %s is unreadable (%s: %s); retraining and overwriting it",
            path,
            type(error).__name__,
            error,
        )
        return None
    last = model.layers[-1].name if model.layers else None
    if model.name != name or last != "predictions":
        logger.warning(
            "zoo: cached model %s is unreadable as a %s (it is %r, last layer %r); "
            "retraining and overwriting it",
            path,
            name,
            model.name,
            last,
        )
        return None
    return model


def load_source_model(
    name: str,
    *,
    retrain: bool = False,
    progress: Callable[[str], Any] | None = None,
    **spec: Unpack[SourceSpec],
) -> Any:
    """A source model pre-trained on ``source``: from the cache, else trained and cached.

    Training uses Adam (learning rate 1e-3), sparse categorical cross-entropy,
    batch size 128, after ``keras.utils.set_random_seed(seed)`` (which reseeds
    Python, NumPy and Keras globally). The model is saved atomically with a JSON
    sidecar (see :func:`source_model_info`). A cached file that cannot be loaded
    is reported with a warning, retrained and overwritten. Each call returns a
    fresh model object, so trials do not share layers.

    Args:
        name: an architecture from :func:`available_models`.
        retrain: train and overwrite even if a cached model exists.
        progress: callable receiving one line per training step (default: the
            module's logger at INFO level).
        **spec: which model and where it is cached: ``source``, ``epochs``, ``seed``,
            ``n_train``, ``cache_dir`` (see :class:`ZooKey` for their meaning and
            defaults).

    Returns:
        The compiled ``keras.Model``.

    Raises:
        ValueError: for an unknown architecture name, ``epochs < 1``,
            ``n_train < 1`` or a bad task spec.
        ncp_search.DataError: if the source task's data cannot be found.
    """
    import keras

    key = ZooKey(name, **spec)
    key.check()
    say = progress or logger.info
    path = key.path
    if path.exists() and not retrain:
        model = _load_cached(path, name)
        if model is not None:
            logger.debug("zoo: loaded %s from %s", name, path)
            return model
    model, info = _train(key, say)
    _save(model, info, key.folder, path.stem)
    say(f"zoo: cached {name} at {path}")
    return keras.models.load_model(path)


def source_model_info(name: str, **spec: Unpack[SourceSpec]) -> dict[str, Any] | None:
    """The sidecar JSON of a cached source model, or None if there is none.

    The sidecar holds ``architecture``, ``source``, ``epochs``, ``seed``,
    ``n_train``, ``val_accuracy`` (and its per-epoch history), ``train_seconds``,
    sample counts, ``keras``/``tensorflow`` versions and the ``created`` UTC time.
    An unreadable sidecar gives None and a warning.

    Args:
        name: an architecture from :func:`available_models`.
        **spec: which model and where it is cached: ``source``, ``epochs``, ``seed``,
            ``n_train``, ``cache_dir`` (see :class:`ZooKey`).

    Raises:
        ValueError: for an unknown architecture name.
    """
    key = ZooKey(name, **spec)
    _check_name(name)
    path = key.path.with_suffix(".json")
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        logger.warning("zoo: sidecar %s is unreadable (%s); ignoring it", path, error)
        return None


REFERENCE_MS_PER_SAMPLE = {"cnn_small": 0.6, "cnn_wide": 3.5, "mlp": 0.7, "resnet_tiny": 4.1}
"""Milliseconds of training per sample-epoch on 28x28x1 images (a validation sample
counts a third), measured on a busy 2-core CPU with ``benchmarks/zoo_cost.py``: the
rough figure :func:`plan_zoo` estimates from when the cache holds no model of the
same architecture and input shape to measure from."""
FIXED_SECONDS = 5.0
"""Seconds a model costs besides its epochs (building, compiling, loading the data)."""
_SIZES = {"digits": ((8, 8, 1), 135, 45), "fashion_mnist": ((28, 28, 1), 6000, 1000)}
"""Dataset -> (image shape, training and validation samples per class)."""


@dataclass(frozen=True)
class PlannedModel:
    """One zoo model of a plan: where it is cached, whether it must be trained, and
    about how long that takes.

    Attributes:
        name: the architecture.
        path: its cache file (``<key>.keras``).
        cached: found in the cache (nothing to train unless ``retrain``).
        train: it will be trained.
        seconds: estimated training seconds (0.0 when not trained).
        measured: the estimate comes from models of this architecture trained here
            (their sidecars' ``train_seconds``), not from :data:`REFERENCE_MS_PER_SAMPLE`.
    """

    name: str
    path: Path
    cached: bool
    train: bool
    seconds: float
    measured: bool


def _sample_epochs(source: str, epochs: int, n_train: int | None) -> tuple[tuple, float]:
    """The source task's image shape and its training samples x epochs (validation at a
    third of a sample), from the dataset's known sizes (no data is loaded)."""
    from ncp_search.app.data import _parse_spec

    dataset, classes = _parse_spec(source)
    shape, train, val = _SIZES[dataset]
    count = len(set(classes)) if classes else 10
    samples = train * count if n_train is None else min(n_train, train * count)
    return shape, epochs * (samples + val * count / 3)


def _measured_ms(folder: Path, name: str, shape: tuple) -> float | None:
    """Milliseconds per sample-epoch of ``name`` from the sidecars in the cache (the
    median over models of the same input shape), or None."""
    costs = []
    for sidecar in folder.glob(f"{name}-*.json"):
        try:
            info = json.loads(sidecar.read_text())
            if tuple(info["input_shape"]) != shape or info["architecture"] != name:
                continue
            work = info["epochs"] * (info["train_samples"] + info["val_samples"] / 3)
            costs.append(1000.0 * float(info["train_seconds"]) / work)
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
            continue
    return sorted(costs)[len(costs) // 2] if costs else None


def plan_zoo(
    names: Sequence[str] | None = None,
    *,
    retrain: bool = False,
    **spec: Unpack[SourceSpec],
) -> list[PlannedModel]:
    """What :func:`build_zoo` with the same arguments would do, without doing it:
    which models are cached, which would be trained, and roughly how long each takes.

    The estimate is :data:`FIXED_SECONDS` plus the epochs' samples times a cost per
    sample: measured from the cache's sidecars of the same architecture and input
    shape where there are any, else :data:`REFERENCE_MS_PER_SAMPLE` scaled by the
    image's pixels. It is a rough figure (CPU, load and threads change it several
    fold), meant to say "seconds" or "minutes" before a long run starts.

    Args:
        names: architectures (default: all of :func:`available_models`).
        retrain: every model would be trained, cached or not.
        **spec: which models and where they are cached: ``source``, ``epochs``,
            ``seed``, ``n_train``, ``cache_dir`` (see :class:`ZooKey`).

    Raises:
        ValueError: for an unknown architecture name, ``epochs < 1``, ``n_train < 1``
            or a bad task spec.
    """
    keys = [ZooKey(name, **spec) for name in (list(names) if names else available_models())]
    for key in keys:
        key.check()
    plan = []
    for key in keys:
        name, folder, path = key.name, key.folder, key.path
        shape, work = _sample_epochs(key.source, key.epochs, key.n_train)
        cached = path.exists()
        measured = _measured_ms(folder, name, shape)
        per_sample = (measured if measured is not None else
                      REFERENCE_MS_PER_SAMPLE.get(name, max(REFERENCE_MS_PER_SAMPLE.values()))
                      * (shape[0] * shape[1]) / (28 * 28))
        train = retrain or not cached
        seconds = FIXED_SECONDS + work * per_sample / 1000.0 if train else 0.0
        plan.append(PlannedModel(name, path, cached, train, seconds, measured is not None))
    return plan


def build_zoo(
    names: Sequence[str] | None = None,
    *,
    retrain: bool = False,
    progress: Callable[[str], Any] | None = None,
    **spec: Unpack[SourceSpec],
) -> dict[str, dict[str, Any]]:
    """Train (or find cached) several source models.

    Args:
        names: architectures (default: all of :func:`available_models`); all are
            checked before any is trained.
        retrain, progress, **spec: as for :func:`load_source_model`.

    Returns:
        Architecture name -> sidecar info.

    Raises:
        ValueError: for an unknown architecture name (before any training).
    """
    chosen = list(names) if names else available_models()
    for name in chosen:
        _check_name(name)
    infos = {}
    for name in chosen:
        load_source_model(name, retrain=retrain, progress=progress, **spec)
        infos[name] = source_model_info(name, **spec) or {}
    return infos
