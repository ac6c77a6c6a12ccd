"""The Keras engine's one import of TensorFlow and Keras, with the install hint."""

from __future__ import annotations

try:
    import keras
    import tensorflow as tf
except ImportError as error:  # pragma: no cover - depends on the install
    raise ImportError(
        "ncp_search's Keras engine needs TensorFlow and Keras: pip install 'ncp-search[keras]'"
    ) from error

__all__ = ["keras", "tf"]
