"""Offline data sets: Fashion-MNIST from IDX files, scikit-learn's digits.

Fashion-MNIST is looked for, in order: an explicit ``path``; the folder named by
the environment variable ``NCP_SEARCH_FASHION_MNIST``; the Debian package
``dataset-fashion-mnist`` (IDX files under ``/usr/share/datasets/fashion-mnist``);
finally Keras' own download (online only). scikit-learn's bundled digits are
always available and are the embedded default.

Importing this module imports neither TensorFlow nor Keras; Keras is imported only
for the online fallback.

Example:
    >>> task = load_task("digits:5-9")
    >>> task.num_classes, task.x_train.shape[1:]
    (5, (8, 8, 1))
"""

from __future__ import annotations

import gzip
import inspect
import logging
import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ncp_search.errors import DataError

logger = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_ENV = "NCP_SEARCH_FASHION_MNIST"
DATASETS = ("digits", "fashion_mnist")

# IDX type codes (http://yann.lecun.com/exdb/mnist/): all multi-byte types are big-endian.
_IDX_TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_val": "t10k-images-idx3-ubyte",
    "y_val": "t10k-labels-idx1-ubyte",
}
_GZIP_MAGIC = b"\x1f\x8b"
_SOURCES_HELP = (
    "Fix: `apt-get install dataset-fashion-mnist`, or pass path=<folder with the 4 IDX "
    f"files (plain or .gz)>, or set {FASHION_ENV}=<that folder>."
)


@dataclass(frozen=True)
class TaskData:
    """A classification task: images (NHWC float32 in [0, 1]) and remapped labels.

    Attributes:
        name: e.g. ``"fashion_mnist:5,6,7,8,9"``.
        x_train: training images, shape ``(n, height, width, channels)``.
        y_train: int64 training labels in ``0..num_classes-1``.
        x_val: validation images.
        y_val: int64 validation labels.
        num_classes: number of classes.
        classes: the original labels; label ``i`` stands for ``classes[i]``.

    Raises:
        ValueError: if images and labels disagree in length, or labels fall
            outside ``0..num_classes-1``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    classes: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.num_classes != len(self.classes):
            raise ValueError(
                f"num_classes must equal len(classes) for {self.name}, but got "
                f"num_classes={self.num_classes} and classes={self.classes}."
            )
        for split in ("train", "val"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            _check_split(self.name, split, x, y, self.num_classes)

    def probe_batch(self, n: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A fixed subset of the training set: the same ``seed`` gives the same batch.

        Classes are taken in turn (class 0, 1, ... then again), each in a seeded
        random order, so the batch is class-stratified as far as the smallest class
        allows; after that the remaining classes keep taking turns.

        Args:
            n: batch size, ``1 <= n <= len(y_train)``.
            seed: seed of the random order inside each class.

        Returns:
            ``(x, y)``: ``n`` training images and their labels.

        Raises:
            ValueError: if ``n`` is out of range.
        """
        if not 1 <= n <= len(self.y_train):
            raise ValueError(
                f"the probe batch size must be in [1, {len(self.y_train)}] (the training "
                f"set of {self.name}), but got n={n}; pass a smaller n."
            )
        order = _stratified_order(self.y_train, self.num_classes, np.random.default_rng(seed))
        chosen = order[:n]
        return self.x_train[chosen], self.y_train[chosen]


def _check_split(name: str, split: str, x: np.ndarray, y: np.ndarray, num_classes: int) -> None:
    if len(x) != len(y):
        raise ValueError(
            f"x_{split} and y_{split} of {name} must have the same length, but got "
            f"{len(x)} images and {len(y)} labels."
        )
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"y_{split} of {name} must hold labels in 0..{num_classes - 1}, but got labels "
            f"in {y.min()}..{y.max()}; remap the labels in the order of `classes`."
        )


def _stratified_order(y: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``y`` in class-by-class turns, each class in a seeded random order."""
    rank = np.empty(len(y), dtype=np.int64)
    for label in range(num_classes):
        members = rng.permutation(np.flatnonzero(y == label))
        rank[members] = np.arange(len(members))
    return np.lexsort((y, rank))  # by turn (rank), then by class


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file, plain or gzip-compressed (detected from its content).

    Args:
        path: the file.

    Returns:
        The array, in native byte order, with the shape the header declares.

    Raises:
        ncp_search.DataError: if the file cannot be read, is not an IDX file, or
            its length disagrees with its header (truncated or corrupt); the
            message names the file and what is wrong.
    """
    raw = _read_bytes(path)
    dtype, shape, header = _idx_header(raw, path)
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"IDX file {path} must have {expected} bytes for data of shape {shape} and "
            f"dtype {dtype}, but has {len(raw)} (truncated or corrupt); download it again "
            "or reinstall the data set."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        return gzip.decompress(raw) if raw[:2] == _GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"cannot read IDX file {path}: {type(error).__name__}: {error}; check that the "
            "file exists and is complete (download it again if it is truncated)."
        ) from error


def _idx_header(raw: bytes, path: str | os.PathLike[str]) -> tuple[np.dtype, tuple, int]:
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DataError(
            f"{path} is not an IDX file: it must start with the magic number 00 00 "
            f"<type code in {sorted(_IDX_TYPES)}> <number of dimensions >= 1>, but starts "
            f"with {raw[:4].hex(' ') or 'nothing'}; use the original IDX files."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(
            f"IDX file {path} declares {ndim} dimensions and needs a {header}-byte header, "
            f"but has only {len(raw)} bytes (truncated or corrupt); download it again."
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.dtype(_IDX_TYPES[raw[2]]), shape, header


def _check_classes(classes: Sequence[int] | None, n: int, dataset: str) -> tuple[int, ...]:
    if classes is None:
        return tuple(range(n))
    chosen = tuple(int(c) for c in classes)
    if len(chosen) < 2 or len(set(chosen)) != len(chosen) or not all(0 <= c < n for c in chosen):
        raise ValueError(
            f"classes of {dataset} must be at least 2 distinct labels in 0..{n - 1}, "
            f"but got classes={tuple(classes)}; pass e.g. classes=(0, 1, 2, 3, 4)."
        )
    return chosen


def _check_size(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(
            f"{name} must be None (all samples) or an integer >= 1, but got {name}={value!r}."
        )


def _select(x: np.ndarray, y: np.ndarray, classes: tuple[int, ...]) -> tuple[Any, Any]:
    """The samples of ``classes``, labels remapped to their position in ``classes``."""
    keep = np.isin(y, classes)
    lookup = np.zeros(max(classes) + 1, dtype=np.int64)
    lookup[list(classes)] = np.arange(len(classes))
    return x[keep], lookup[y[keep]]


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator):
    """A seeded random subset of ``n`` samples (all of them if ``n`` is None or too big)."""
    if n is None or n >= len(y):
        return x, y
    idx = np.sort(rng.choice(len(y), size=n, replace=False))
    return x[idx], y[idx]


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _candidate_folders(path: str | os.PathLike[str] | None) -> list[tuple[str, Any]]:
    return [
        ("path argument", path),
        (f"${FASHION_ENV}", os.environ.get(FASHION_ENV) or None),
        ("Debian package dataset-fashion-mnist", DEBIAN_FASHION_MNIST),
    ]


def _find_idx_folder(path: str | os.PathLike[str] | None) -> tuple[Path | None, list[str]]:
    """The first candidate folder with all 4 IDX files, and a line per folder tried."""
    tried = []
    for label, folder in _candidate_folders(path):
        if not folder:
            tried.append(f"{label}: not given")
            continue
        missing = [stem for stem in _FILES.values() if _idx_file(Path(folder), stem) is None]
        if not missing:
            return Path(folder), tried
        tried.append(f"{label}: {folder} (missing {', '.join(missing)})")
        if not label.startswith("Debian"):
            logger.warning("Fashion-MNIST: %s; trying the next place", tried[-1])
    return None, tried


def _read_folder(folder: Path) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for key, stem in _FILES.items():
        file = _idx_file(folder, stem)
        if file is None:  # _find_idx_folder saw it; removed since
            raise DataError(f"{folder} must hold the IDX file {stem} (or {stem}.gz), but it "
                            "is gone; reinstall the data set.")
        arrays[key] = read_idx(file)
    for split in ("train", "val"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"the {split} IDX files in {folder} must hold images (n, height, width) and "
                f"n labels, but hold shapes {x.shape} and {y.shape}; reinstall the data set."
            )
    return arrays


def _keras_download() -> dict[str, np.ndarray]:
    """Keras' Fashion-MNIST download (needs internet access)."""
    import keras

    (x_train, y_train), (x_val, y_val) = keras.datasets.fashion_mnist.load_data()
    return {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}


def _fashion_arrays(path: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    folder, tried = _find_idx_folder(path)
    if folder is not None:
        logger.info("Fashion-MNIST: reading IDX files from %s", folder)
        return _read_folder(folder)
    try:
        return _keras_download()
    except Exception as error:  # any download failure: report every place tried
        tried.append(f"keras.datasets download: {type(error).__name__}: {error}"[:300])
        raise DataError(
            "Fashion-MNIST must be available locally or downloadable, but was found "
            "nowhere. Tried:\n  " + "\n  ".join(tried) + "\n" + _SOURCES_HELP
        ) from error


def _images(x: np.ndarray, scale: float) -> np.ndarray:
    """NHWC float32 images in [0, 1] from (n, height, width) raw values."""
    return (x.astype(np.float32) / scale)[..., None]


def load_fashion_mnist(
    classes: Sequence[int] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
) -> TaskData:
    """Fashion-MNIST (28x28x1), optionally restricted to ``classes`` and subsampled.

    The validation set is the official test split (``t10k``), filtered to
    ``classes``. Where the files are looked for is described in the module
    docstring; a folder that lacks some of the files is skipped with a warning.

    Args:
        classes: original labels to keep (at least 2 distinct in 0..9); None keeps
            all 10. Labels are remapped to ``0..k-1`` in this order.
        path: a folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each plain or
            ``.gz``).
        n_train: keep a seeded random subset of this many training samples (None or
            more than available: all).
        n_val: the same for the validation set.
        seed: seed of the subsets.

    Returns:
        The task, named e.g. ``"fashion_mnist:0,1,2,3,4"``.

    Raises:
        ValueError: on bad ``classes``, ``n_train`` or ``n_val``.
        ncp_search.DataError: if the data is found nowhere (the message lists
            every place tried and how to fix it) or a file is corrupt.
    """
    chosen = _check_classes(classes, 10, "fashion_mnist")
    _check_size("n_train", n_train)
    _check_size("n_val", n_val)
    arrays = _fashion_arrays(path)
    rng = np.random.default_rng(seed)
    x_train, y_train = _subset(*_select(arrays["x_train"], arrays["y_train"], chosen), n_train, rng)
    x_val, y_val = _subset(*_select(arrays["x_val"], arrays["y_val"], chosen), n_val, rng)
    return TaskData(
        name=f"fashion_mnist:{','.join(map(str, chosen))}",
        x_train=_images(x_train, 255.0),
        y_train=y_train,
        x_val=_images(x_val, 255.0),
        y_val=y_val,
        num_classes=len(chosen),
        classes=chosen,
    )


def load_digits(
    classes: Sequence[int] | None = None, *, val_fraction: float = 0.25, seed: int = 0
) -> TaskData:
    """scikit-learn's bundled 8x8 digits (always offline), stratified train/val split.

    Args:
        classes: original labels to keep (at least 2 distinct in 0..9); None keeps
            all 10.
        val_fraction: share of the samples held out for validation, in (0, 1).
        seed: seed of the split.

    Returns:
        The task, images of shape ``(n, 8, 8, 1)`` scaled from 0..16 to [0, 1].

    Raises:
        ValueError: on bad ``classes`` or ``val_fraction``.
    """
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), but got val_fraction={val_fraction}.")
    chosen = _check_classes(classes, 10, "digits")
    bunch = sklearn_digits()
    x, y = _select(_images(bunch.images, 16.0), bunch.target, chosen)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=val_fraction, random_state=seed, stratify=y
    )
    return TaskData(
        name=f"digits:{','.join(map(str, chosen))}",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        num_classes=len(chosen),
        classes=chosen,
    )


_LOADERS: dict[str, Callable[..., TaskData]] = {
    "digits": load_digits,
    "fashion_mnist": load_fashion_mnist,
}


def _parse_classes(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if dash and int(high) < int(low):
            raise ValueError(f"descending range {part!r}")
        out.extend(range(int(low), int(high) + 1) if dash else [int(part)])
    return out


def _parse_spec(spec: str) -> tuple[str, list[int] | None]:
    name, _, classes_text = spec.partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in DATASETS:
        raise ValueError(
            f"the dataset of a task spec must be one of {list(DATASETS)}, but got {name!r} "
            f"in {spec!r}; write e.g. 'digits:5-9' or 'fashion_mnist:0,2,4'."
        )
    try:
        return name, (_parse_classes(classes_text) if classes_text.strip() else None)
    except ValueError:
        raise ValueError(
            f"the classes of a task spec must be integers and upward ranges, but cannot read "
            f"{classes_text!r} in {spec!r}; write e.g. 'fashion_mnist:5-9' or 'digits:0,2,4'."
        ) from None


def _check_loader_kwargs(loader: Callable[..., Any], kwargs: dict[str, Any], spec: str) -> None:
    accepted = [p for p in inspect.signature(loader).parameters if p != "classes"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"load_task({spec!r}) passes keyword arguments to {loader.__name__}, which "
            f"accepts {accepted}, but got {unknown}; drop them for this dataset."
        )


def load_task(spec: str, **kwargs: Any) -> TaskData:
    """Load a task from a spec such as ``"digits"``, ``"digits:5-9"``, ``"fashion_mnist:0,2,4"``.

    Args:
        spec: ``<dataset>[:<classes>]`` with a dataset from :data:`DATASETS` and
            classes as comma-separated labels and upward ranges (``0-4``); no
            classes means all 10.
        **kwargs: passed to the loader: ``n_train``, ``n_val``, ``path`` for
            Fashion-MNIST, ``val_fraction`` for digits, ``seed`` for both.

    Returns:
        The task.

    Raises:
        ValueError: for an unknown dataset or unreadable classes.
        TypeError: for keyword arguments the dataset's loader does not accept.
        ncp_search.DataError: if the data cannot be found or read.
    """
    name, classes = _parse_spec(spec)
    loader = _LOADERS[name]
    _check_loader_kwargs(loader, kwargs, spec)
    return loader(classes, **kwargs)
