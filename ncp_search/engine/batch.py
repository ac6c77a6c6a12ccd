"""Draw the fixed probe batch from a user's own training data: :func:`probe_batch`.

NumPy only (no TensorFlow), so it is cheap to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def probe_batch(x: Any, y: Any, n: int = 256, seed: int = 0) -> tuple[Any, np.ndarray]:
    """A fixed, class-balanced probe batch drawn from training data.

    ``beta_eff`` must be measured on the same batch at every epoch, so draw it once,
    before training, and pass it to :class:`ncp_search.NCPCallback`,
    :class:`ncp_search.NCPTuneCallback` or :class:`ncp_search.BetaEffLogger`.
    Each class present in ``y`` gets ``n // k`` samples (``k`` classes; the
    ``n % k`` left over go to as many classes chosen with ``seed``), drawn at
    random with ``seed``; the same arguments always give the same batch.

    Args:
        x: training inputs, an array of ``N`` samples (or a list, tuple or dict of
            such arrays, for a model with several inputs).
        y: their labels: ``N`` integer class ids (shape ``(N,)`` or ``(N, 1)``) or
            one-hot rows ``(N, k)``; returned in the same form.
        n: batch size, at least the number of classes (256 is the default of the
            paper's setting; a few hundred are enough).
        seed: seed of the draw.

    Returns:
        ``(x_probe, y_probe)``: ``n`` samples and their labels, in the order they
        have in the data.

    Raises:
        ValueError: for a bad ``n``, ``x`` and ``y`` of different lengths, labels
            that are not class ids or one-hot rows, NaN or inf in ``x`` or ``y``, or
            a class with fewer samples than its share of the batch (the message
            gives the largest ``n`` the data allows).

    Example:
        >>> x_train = np.random.default_rng(0).random((1000, 8, 8, 1), dtype="float32")
        >>> y_train = np.arange(1000) % 10
        >>> x_probe, y_probe = probe_batch(x_train, y_train, n=256, seed=0)
        >>> x_probe.shape, np.bincount(y_probe).tolist()  # every class, in proportion
        ((256, 8, 8, 1), [25, 25, 26, 26, 26, 26, 26, 26, 25, 25])
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, but got n={n!r}.")
    arrays = _input_arrays(x)
    labels = np.asarray(y)
    lengths = {name: len(a) for name, a in arrays.items()}
    if labels.ndim == 0:
        raise ValueError(f"y must hold one label per sample, but got a scalar {labels!r}.")
    for name, length in lengths.items():
        if length != len(labels):
            raise ValueError(
                f"{name} and y must have the same number of samples, but got {length} "
                f"inputs and {len(labels)} labels."
            )
    ids = _class_ids(labels)
    for name, array in arrays.items():
        _check_finite(name, array)
    classes, counts = np.unique(ids, return_counts=True)
    k = len(classes)
    if n < k:
        raise ValueError(
            f"a class-balanced batch needs at least one sample of each of the {k} classes in "
            f"y, but got n={n}; pass n >= {k}."
        )
    rng = np.random.default_rng(seed)
    need = np.full(k, n // k)
    need[rng.permutation(k)[: n % k]] += 1
    short = [(int(c), int(have), int(want))
             for c, have, want in zip(classes, counts, need) if have < want]
    if short:
        label, have, want = short[0]
        largest = int(counts.min()) * k
        raise ValueError(
            f"too few samples per class for a class-balanced batch of n={n} over {k} classes: "
            f"class {label} has {have} samples but needs {want}"
            + (f" ({len(short)} classes are short)" if len(short) > 1 else "")
            + f"; pass n <= {largest} or more data."
        )
    chosen = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(ids == c), size=int(want), replace=False)
        for c, want in zip(classes, need)
    ]))
    picked = [array[chosen] for array in arrays.values()]
    if isinstance(x, Mapping):
        x_probe: Any = dict(zip(x.keys(), picked))
    elif isinstance(x, (list, tuple)):
        x_probe = type(x)(picked)
    else:
        x_probe = picked[0]
    return x_probe, labels[chosen]


def _input_arrays(x: Any) -> dict[str, np.ndarray]:
    if isinstance(x, Mapping):
        items = {f"x[{key!r}]": np.asarray(value) for key, value in x.items()}
    elif isinstance(x, (list, tuple)):
        items = {f"x[{i}]": np.asarray(value) for i, value in enumerate(x)}
    else:
        items = {"x": np.asarray(x)}
    if not items:
        raise ValueError("x holds no arrays; pass the training inputs.")
    for name, array in items.items():
        if array.ndim == 0:
            raise ValueError(f"{name} must hold one sample per row, but got a scalar.")
    return items


def _class_ids(labels: np.ndarray) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 2:
        if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)):
            raise ValueError("y contains NaN or inf (or non-numbers); clean the labels first.")
        return np.argmax(labels, axis=1)
    if labels.ndim != 1:
        raise ValueError(
            f"y must be class ids of shape (N,) or one-hot rows (N, k), but got shape "
            f"{labels.shape}."
        )
    if np.issubdtype(labels.dtype, np.integer):
        return labels
    if not np.issubdtype(labels.dtype, np.number) or labels.dtype == np.bool_:
        raise ValueError(f"y must hold integer class ids, but got dtype {labels.dtype}.")
    if not np.all(np.isfinite(labels)):
        bad = np.flatnonzero(~np.isfinite(labels))
        raise ValueError(
            f"y contains NaN or inf ({len(bad)} labels, e.g. at index {int(bad[0])}); clean "
            "the labels first."
        )
    if np.any(labels != np.round(labels)):
        raise ValueError("y must hold integer class ids, but got non-integer values.")
    return labels.astype(np.int64)


def _check_finite(name: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.inexact):
        return
    finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1) if len(array) else None
    if finite is not None and not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{name} contains NaN or inf ({len(bad)} samples, e.g. at index {int(bad[0])}); "
            "clean or impute the data first (beta_eff of such a batch would be NaN)."
        )
