"""Keras callbacks that measure ``beta_eff`` on a fixed probe batch: the shared
:class:`ProbeCallback` (where the probe is, how the meter is built) and
:class:`BetaEffLogger`, which writes the measurements into the epoch logs. The Optuna
and Ray callbacks (:class:`ncp_search.NCPCallback`, :class:`ncp_search.NCPTuneCallback`)
derive from :class:`ProbeCallback` too."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from ncp_search.engine.capacitance import BetaEffMeter
from ncp_search.engine.probe import DEFAULT_HIDDEN, probe_for

logger = logging.getLogger(__name__)


def check_interval(interval: Any) -> int:
    """``interval`` as an int, or a ValueError naming it (an integer >= 1)."""
    if isinstance(interval, bool) or not isinstance(interval, (int, np.integer)) or interval < 1:
        raise ValueError(f"interval must be an integer >= 1, but got interval={interval!r}.")
    return int(interval)


class ProbeCallback(keras.callbacks.Callback):
    """What every ncp_search Keras callback shares: the probe batch, where ``beta_eff``
    is read (``probed_model``, the fit model when it carries a probe, or an observer
    probe attached beside its head: :func:`ncp_search.engine.probe.probe_for`) and a
    :class:`~ncp_search.engine.capacitance.BetaEffMeter` built once per model being fit.

    Args:
        x_probe, y_probe: the fixed probe batch and its labels.
        probed_model: the model carrying the probe, when it is not the model being fit.
        precision: the meter's precision, ``"float32"`` or ``"float64"``.
        num_classes, hidden, feature_layer, probe_seed: how an observer probe is
            attached to a plain model (see :func:`ncp_search.observer_probe`).
    """

    def __init__(
        self,
        x_probe: Any,
        y_probe: Any,
        *,
        probed_model: Any = None,
        precision: str = "float32",
        num_classes: int | None = None,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        feature_layer: str | None = None,
        probe_seed: int = 0,
    ) -> None:
        super().__init__()
        self.x_probe = x_probe
        self.y_probe = y_probe
        self.probed_model = probed_model
        self.precision = precision
        self._probe_options: dict[str, Any] = {
            "num_classes": num_classes, "hidden": tuple(hidden),
            "feature_layer": feature_layer, "seed": probe_seed,
        }
        self._meter: BetaEffMeter | None = None
        self._probed: tuple[Any, Any] | None = None  # (model fit, its probed model)

    @property
    def probed(self) -> Any:
        """The model ``beta_eff`` is read from (known once ``fit`` has started)."""
        return None if self._probed is None else self._probed[1]

    def _build_meter(self) -> BetaEffMeter:
        """Attach (or find) the probe of the model being fit, once per model, and a
        meter on it."""
        if self._probed is None or self._probed[0] is not self.model:
            probed = probe_for(self.model, self.x_probe, probed_model=self.probed_model,
                               **self._probe_options)
            self._probed = (self.model, probed)
        return BetaEffMeter(self._probed[1], self.x_probe, self.y_probe,
                            precision=self.precision)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._meter = self._build_meter()

    def measure(self) -> dict[str, float]:
        """``beta_eff`` and its terms with the model's current weights."""
        if self._meter is None:
            self._meter = self._build_meter()
        return self._meter().as_dict()


class BetaEffLogger(ProbeCallback):
    """Adds ``beta_eff`` (and its terms) to the epoch logs of the model being fit.

    Each ``interval`` epochs it evaluates ``beta_eff`` on the fixed batch
    ``(x_probe, y_probe)`` with the compiled fast path, writes it into ``logs``
    under ``"beta_eff"`` (so ``History`` and the callbacks after it see it, e.g.
    Ray's ``TuneReportCheckpointCallback``), and keeps one record per measured
    epoch in :attr:`records`.

    Where ``beta_eff`` is read: ``probed_model`` when given; the model being fit
    when it carries a probe (:func:`ncp_search.attach_probe`, the probe as its
    head); otherwise a frozen probe attached beside the model's own head on its
    features (:func:`ncp_search.observer_probe`), which only observes.

    Args:
        x_probe: the fixed probe batch (e.g. 256 training samples, see
            :func:`ncp_search.probe_batch`).
        y_probe: its labels.
        interval: measure every ``interval`` epochs (>= 1).
        precision: ``"float32"`` (default) or ``"float64"``.
        log_terms: also write the probe terms into logs as ``probe_<name>``
            (``probe_numerator``, ``probe_feature_norm``, ...), the names
            :class:`ncp_search.NCPScheduler` and the predictors read.
        probed_model: the model carrying the probe, when it is not the model being
            fit (e.g. :func:`ncp_search.observer_probe` built by hand).
        num_classes, hidden, feature_layer, probe_seed: how the observer probe is
            attached to a plain model (see :func:`ncp_search.observer_probe`).

    Raises:
        ValueError: for a bad ``interval``.
        ncp_search.ProbeError: at the start of ``fit`` when no probe can be attached
            to the model (the message says how to fix it).

    NaN and edge cases:
        A diverged model yields ``beta_eff = NaN`` (with a ``RuntimeWarning``) and
        training goes on; the callback never raises during ``fit`` for that.

    Example:
        >>> x_probe, y_probe = ncp_search.probe_batch(x_train, y_train, n=256)
        >>> logger = BetaEffLogger(x_probe, y_probe)
        >>> model.fit(x_train, y_train, epochs=10, callbacks=[logger])
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
        probed_model: Any = None,
        num_classes: int | None = None,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        feature_layer: str | None = None,
        probe_seed: int = 0,
    ) -> None:
        self.interval = check_interval(interval)
        super().__init__(x_probe, y_probe, probed_model=probed_model, precision=precision,
                         num_classes=num_classes, hidden=hidden, feature_layer=feature_layer,
                         probe_seed=probe_seed)
        self.log_terms = log_terms
        self.records: list[dict[str, float]] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.records = []
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.interval:
            return
        terms = self.measure()
        record = {"epoch": float(epoch), **terms}
        self.records.append(record)
        if logs is not None:
            logs["beta_eff"] = terms["beta_eff"]
            if self.log_terms:
                logs.update({f"probe_{k}": v for k, v in terms.items() if k != "beta_eff"})
        logger.debug("epoch %d: beta_eff=%.6g", epoch, terms["beta_eff"])
