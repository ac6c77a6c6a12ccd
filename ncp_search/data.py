"""Offline data sets: Fashion-MNIST from idx files, scikit-learn's digits.

Fashion-MNIST is looked for, in order: an explicit ``path``; the folder in the
environment variable ``NCP_SEARCH_FASHION_MNIST``; the Debian package
``dataset-fashion-mnist`` (idx files under ``/usr/share/datasets/fashion-mnist``);
finally Keras' own download (online only). scikit-learn's bundled digits are
always available and are the embedded default.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ncp_search.errors import DataError

logger = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_ENV = "NCP_SEARCH_FASHION_MNIST"
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_val": "t10k-images-idx3-ubyte",
    "y_val": "t10k-labels-idx1-ubyte",
}
DATASETS = ("digits", "fashion_mnist")


@dataclass(frozen=True)
class TaskData:
    """A classification task: images (NHWC float32 in [0, 1]) and remapped labels.

    Attributes:
        name: e.g. ``"fashion_mnist:5-9"``.
        x_train, y_train, x_val, y_val: arrays; labels are ``0..num_classes-1`` in
            the order of ``classes``.
        num_classes: number of classes.
        classes: the original labels.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    classes: tuple[int, ...]

    def probe_batch(self, n: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A fixed, class-stratified subset of the training set (same seed, same batch)."""
        if not 1 <= n <= len(self.y_train):
            raise ValueError(
                f"the probe batch size must be in [1, {len(self.y_train)}] for {self.name}, "
                f"but got n={n}."
            )
        rng = np.random.default_rng(seed)
        per_class = [rng.permutation(np.flatnonzero(self.y_train == c)) for c in
                     range(self.num_classes)]
        order = [idx for group in zip(*per_class) for idx in group]  # round-robin by class
        rest = rng.permutation(np.setdiff1d(np.arange(len(self.y_train)), order))
        chosen = np.array((order + list(rest))[:n])
        return self.x_train[chosen], self.y_train[chosen]


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``); a corrupt file raises :class:`DataError`."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read IDX file {path}: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4]!r}).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions).")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX data of shape {shape} needs {expected} bytes, but the file has "
            f"{len(raw)} (truncated or corrupt; reinstall the data)."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _check_classes(classes: Sequence[int] | None, n: int, dataset: str) -> tuple[int, ...]:
    if classes is None:
        return tuple(range(n))
    chosen = tuple(int(c) for c in classes)
    if len(chosen) < 2 or len(set(chosen)) != len(chosen) or not all(0 <= c < n for c in chosen):
        raise ValueError(
            f"classes of {dataset} must be at least 2 distinct labels in 0..{n - 1}, "
            f"but got {tuple(classes)}."
        )
    return chosen


def _select(x: np.ndarray, y: np.ndarray, classes: tuple[int, ...]) -> tuple[Any, Any]:
    keep = np.isin(y, classes)
    remap = {c: i for i, c in enumerate(classes)}
    return x[keep], np.array([remap[int(v)] for v in y[keep]], dtype=np.int64)


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, rng: np.random.Generator):
    if n is None or n >= len(y):
        return x, y
    if n < 1:
        raise ValueError(f"a subset size must be >= 1, but got {n}.")
    idx = np.sort(rng.choice(len(y), size=n, replace=False))
    return x[idx], y[idx]


def _find_idx_folder(path: str | os.PathLike[str] | None) -> tuple[Path | None, list[str]]:
    tried = []
    candidates = [("path argument", path), (f"${FASHION_ENV}", os.environ.get(FASHION_ENV)),
                  ("Debian package dataset-fashion-mnist", DEBIAN_FASHION_MNIST)]
    for label, folder in candidates:
        if not folder:
            continue
        folder = Path(folder)
        found = all(
            (folder / name).exists() or (folder / f"{name}.gz").exists() for name in
            _FILES.values()
        )
        tried.append(f"{label}: {folder}{'' if found else ' (missing idx files)'}")
        if found:
            return folder, tried
    return None, tried


def _read_folder(folder: Path) -> dict[str, np.ndarray]:
    out = {}
    for key, name in _FILES.items():
        plain = folder / name
        out[key] = read_idx(plain if plain.exists() else folder / f"{name}.gz")
    return out


def _keras_download() -> dict[str, np.ndarray]:
    import keras

    (x_train, y_train), (x_val, y_val) = keras.datasets.fashion_mnist.load_data()
    return {"x_train": x_train, "y_train": y_train, "x_val": x_val, "y_val": y_val}


def load_fashion_mnist(
    classes: Sequence[int] | None = None,
    *,
    path: str | os.PathLike[str] | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
) -> TaskData:
    """Fashion-MNIST (28x28x1), optionally restricted to ``classes`` and subsampled.

    The validation set is the official test split (filtered to ``classes``).

    Raises:
        ValueError: on bad ``classes`` or sizes.
        ncp_search.DataError: if the data is found nowhere (the message lists where
            it looked and how to fix it).
    """
    chosen = _check_classes(classes, 10, "fashion_mnist")
    folder, tried = _find_idx_folder(path)
    if folder is not None:
        arrays = _read_folder(folder)
    else:
        try:
            arrays = _keras_download()
        except Exception as error:  # any download failure: report every place tried
            tried.append(f"keras.datasets download: {type(error).__name__}: {error}"[:200])
            raise DataError(
                "Fashion-MNIST not found. Tried:\n  " + "\n  ".join(tried) + "\nFix: "
                "`apt-get install dataset-fashion-mnist`, or pass path=<folder with the 4 "
                f"idx files>, or set {FASHION_ENV}."
            ) from None
    rng = np.random.default_rng(seed)
    x_train, y_train = _select(arrays["x_train"], arrays["y_train"], chosen)
    x_val, y_val = _select(arrays["x_val"], arrays["y_val"], chosen)
    x_train, y_train = _subset(x_train, y_train, n_train, rng)
    x_val, y_val = _subset(x_val, y_val, n_val, rng)

    def images(x: np.ndarray) -> np.ndarray:
        return (x.astype(np.float32) / 255.0)[..., None]

    return TaskData(
        name=f"fashion_mnist:{','.join(map(str, chosen))}",
        x_train=images(x_train), y_train=y_train, x_val=images(x_val), y_val=y_val,
        num_classes=len(chosen), classes=chosen,
    )


def load_digits(
    classes: Sequence[int] | None = None, *, val_fraction: float = 0.25, seed: int = 0
) -> TaskData:
    """scikit-learn's bundled 8x8 digits (always offline), stratified train/val split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), but got {val_fraction}.")
    chosen = _check_classes(classes, 10, "digits")
    bunch = sk_digits()
    x, y = _select(bunch.images.astype(np.float32) / 16.0, bunch.target, chosen)
    x_train, x_val, y_train, y_val = train_test_split(
        x[..., None], y, test_size=val_fraction, random_state=seed, stratify=y
    )
    return TaskData(
        name=f"digits:{','.join(map(str, chosen))}",
        x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
        num_classes=len(chosen), classes=chosen,
    )


def _parse_classes(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            out.extend(range(int(low), int(high) + 1))
        else:
            out.append(int(part))
    return out


def load_task(spec: str, **kwargs: Any) -> TaskData:
    """Load ``"digits"``, ``"digits:5-9"``, ``"fashion_mnist:0-4"``, ``"fashion_mnist:0,2,4"``.

    Keyword arguments go to the loader (``n_train``/``n_val``/``path`` for
    Fashion-MNIST, ``val_fraction`` for digits; ``seed`` for both).
    """
    name, _, classes_text = spec.partition(":")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} in {spec!r}; available: {list(DATASETS)}.")
    try:
        classes = _parse_classes(classes_text) if classes_text else None
    except ValueError:
        raise ValueError(
            f"cannot read the classes in {spec!r}; write e.g. 'fashion_mnist:5-9' or "
            "'digits:0,2,4'."
        ) from None
    if name == "digits":
        return load_digits(classes, **kwargs)
    return load_fashion_mnist(classes, **kwargs)
