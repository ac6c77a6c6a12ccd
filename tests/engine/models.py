"""Small seeded Keras classifiers and input batches shared by the engine tests."""

from __future__ import annotations

import keras
import numpy as np


def sequential_classifier(seed: int = 0, classes: int = 4) -> keras.Model:
    """A conv + dense Sequential classifier on 8x8x1 inputs, ``classes`` softmax outputs."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu", padding="same"),
            keras.layers.Flatten(),
            keras.layers.Dense(12, activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ],
        name="seq",
    )


def functional_classifier(seed: int = 0) -> keras.Model:
    """A functional classifier on 10 inputs: two branches, dropout, logits, softmax."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((10,))
    a = keras.layers.Dense(8, activation="relu")(inputs)
    b = keras.layers.Dense(8, activation="tanh")(inputs)
    x = keras.layers.Concatenate(name="merge")([a, b])
    x = keras.layers.Dropout(0.1)(x)
    logits = keras.layers.Dense(3, name="logits")(x)
    out = keras.layers.Softmax()(logits)
    return keras.Model(inputs, out, name="func")


def batch(
    shape: tuple[int, ...], n: int = 16, classes: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` seeded uniform inputs of ``shape`` (float32) and integer labels below ``classes``."""
    rng = np.random.default_rng(seed)
    return rng.random((n, *shape)).astype("float32"), rng.integers(0, classes, n)
