"""A Keras callback that measures ``beta_eff`` on a fixed probe batch each epoch."""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

from ncp_search.engine.capacitance import BetaEffMeter

logger = logging.getLogger(__name__)


class BetaEffLogger(keras.callbacks.Callback):
    """Adds ``beta_eff`` (and its terms) to the epoch logs of a probed model.

    Each ``interval`` epochs it evaluates ``beta_eff`` on the fixed batch
    ``(x_probe, y_probe)`` with the compiled fast path, writes it into ``logs``
    under ``"beta_eff"`` (so ``History`` and later callbacks see it), and keeps one
    record per measured epoch in :attr:`records`.

    Args:
        x_probe: the fixed probe batch (e.g. 256 training samples).
        y_probe: its labels.
        interval: measure every ``interval`` epochs (>= 1).
        precision: ``"float32"`` (default) or ``"float64"``.
        log_terms: also write the numerator, denominator and diagnostics into logs
            with a ``beta_eff_`` prefix.

    NaN and edge cases:
        A diverged model yields ``beta_eff = NaN`` (with a ``RuntimeWarning``) and
        training goes on; the callback never raises during ``fit`` for that.

    Example:
        >>> logger = BetaEffLogger(*task.probe_batch(256))
        >>> probed.fit(x, y, epochs=10, callbacks=[logger])
        >>> [r["beta_eff"] for r in logger.records]
    """

    def __init__(
        self,
        x_probe: Any,
        y_probe: Any,
        *,
        interval: int = 1,
        precision: str = "float32",
        log_terms: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(interval, (int, np.integer)) or interval < 1:
            raise ValueError(f"interval must be an integer >= 1, but got interval={interval!r}.")
        self.x_probe = x_probe
        self.y_probe = y_probe
        self.interval = int(interval)
        self.precision = precision
        self.log_terms = log_terms
        self.records: list[dict[str, float]] = []
        self._meter: BetaEffMeter | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.records = []
        self._meter = BetaEffMeter(self.model, self.x_probe, self.y_probe, precision=self.precision)

    def measure(self) -> dict[str, float]:
        """``beta_eff`` and its terms with the model's current weights."""
        if self._meter is None:
            self._meter = BetaEffMeter(
                self.model, self.x_probe, self.y_probe, precision=self.precision
            )
        return self._meter().as_dict()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.interval:
            return
        terms = self.measure()
        record = {"epoch": float(epoch), **terms}
        self.records.append(record)
        if logs is not None:
            logs["beta_eff"] = terms["beta_eff"]
            if self.log_terms:
                logs.update({f"beta_eff_{k}": v for k, v in terms.items() if k != "beta_eff"})
        logger.debug("epoch %d: beta_eff=%.6g", epoch, terms["beta_eff"])
