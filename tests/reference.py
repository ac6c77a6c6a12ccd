"""The literal, materialised route to ``beta_eff``: for tests and benchmarks only.

Builds the full Hessian of the mean cross-entropy over all probe weights, keeps its
``(l, l+1)`` blocks as ``P`` (Eq. 7) and evaluates Eq. 2 as written. Memory grows
with the square of the number of probe weights (``N^2`` floats), so it is usable
only for small probes; :mod:`ncp_search.engine.capacitance` computes the same value with
Hessian-vector products.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from ncp_search.engine.capacitance import DEFAULT_EPS


def _unflatten(flat: tf.Tensor, shapes: Sequence[tuple[int, int]]) -> list[tf.Tensor]:
    kernels, start = [], 0
    for rows, cols in shapes:
        kernels.append(tf.reshape(flat[start : start + rows * cols], (rows, cols)))
        start += rows * cols
    return kernels


def probe_loss(flat: tf.Tensor, shapes, features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean softmax cross-entropy of a bias-free ReLU probe with flattened weights."""
    kernels = _unflatten(flat, shapes)
    z = features
    for kernel in kernels[:-1]:
        z = tf.nn.relu(z @ kernel)
    logits = z @ kernels[-1]
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def probe_gradient(flat: tf.Tensor, shapes, features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Gradient of :func:`probe_loss` with respect to the flattened weights."""
    with tf.GradientTape() as tape:
        tape.watch(flat)
        loss = probe_loss(flat, shapes, features, labels)
    return tape.gradient(loss, flat)


def materialised_hessian(
    kernels: Sequence[Any], features: Any, labels: Any, *, dtype: tf.DType = tf.float64
) -> tuple[np.ndarray, list[tuple[int, int]], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
    """The full ``N x N`` Hessian over all probe weights (forward-mode-free jacobian)."""
    shapes = [tuple(np.shape(k)) for k in kernels]
    flat = tf.constant(np.concatenate([np.ravel(k) for k in kernels]), dtype=dtype)
    x = tf.constant(features, dtype=dtype)
    y = tf.constant(np.asarray(labels, dtype=np.int64))
    with tf.GradientTape() as tape:
        tape.watch(flat)
        grad = probe_gradient(flat, shapes, x, y)
    return tape.jacobian(grad, flat).numpy(), shapes, (flat, x, y)


def materialised_beta_eff(
    kernels: Sequence[Any],
    features: Any,
    labels: Any,
    *,
    eps: float = DEFAULT_EPS,
    dtype: tf.DType = tf.float64,
) -> tuple[float, np.ndarray]:
    """Eq. 2 evaluated literally on a materialised ``P``; returns ``(beta_eff, P)``."""
    hessian, shapes, _ = materialised_hessian(kernels, features, labels, dtype=dtype)
    offsets = np.cumsum([0] + [rows * cols for rows, cols in shapes])
    p = np.zeros_like(hessian)
    for layer in range(len(shapes) - 1):
        rows = slice(offsets[layer], offsets[layer + 1])
        cols = slice(offsets[layer + 1], offsets[layer + 2])
        p[rows, cols] = hessian[rows, cols]
    del hessian
    ones = np.ones(p.shape[0], dtype=p.dtype)
    delta_in = p @ ones
    delta_out = ones @ p
    return float(delta_out @ delta_in / (ones @ delta_in + eps)), p
