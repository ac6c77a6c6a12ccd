"""Keras callbacks that measure ``beta_eff`` on a fixed probe batch: the shared
:class:`ProbeCallback` (where the probe is, how the meter is built, whether to
measure at all) and :class:`BetaEffLogger`, which writes the measurements into the
epoch logs. The Optuna and Ray callbacks (:class:`ncp_search.NCPCallback`,
:class:`ncp_search.NCPTuneCallback`) derive from :class:`ProbeCallback` too.

Measuring costs CPU (a forward and backward pass on the probe batch each epoch, and
about two seconds once per process to attach the probe and trace the meter), so the
pruning callbacks take ``measure``:

- ``"auto"`` (their default): measure only when the predictor that decides reads
  ``beta_eff`` or a probe term (``Predictor.uses_beta_eff``); otherwise attach no
  probe, trace nothing and report the learning curve alone, at the cost of a plain
  report-per-epoch callback.
- ``"always"``: measure every ``interval`` epochs (to record ``beta_eff`` although
  nothing reads it).
- ``"never"``: never measure.

:class:`BetaEffLogger` always measures: logging ``beta_eff`` is its purpose.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ncp_search.core.history import probe_series
from ncp_search.engine.capacitance import BetaEffMeter
from ncp_search.engine.keras_import import keras
from ncp_search.engine.probe import ProbeOptions, check_probe_options, probe_for

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

MEASURE_MODES = ("auto", "always", "never")


def check_interval(interval: Any) -> int:
    """``interval`` as an int, or a ValueError naming it (an integer >= 1)."""
    if isinstance(interval, bool) or not isinstance(interval, (int, np.integer)) or interval < 1:
        raise ValueError(f"interval must be an integer >= 1, but got interval={interval!r}.")
    return int(interval)


def check_measure(measure: Any) -> str:
    """``measure`` if it is one of :data:`MEASURE_MODES`, or a ValueError naming it."""
    if not isinstance(measure, str) or measure not in MEASURE_MODES:
        raise ValueError(f"measure must be one of {list(MEASURE_MODES)}, but got "
                         f"measure={measure!r}.")
    return measure


class ProbeCallback(keras.callbacks.Callback):
    """What every ncp_search Keras callback shares: the probe batch, where ``beta_eff``
    is read (``probed_model``, the fit model when it carries a probe, or an observer
    probe attached beside its head: :func:`ncp_search.engine.probe.probe_for`) and a
    :class:`~ncp_search.engine.capacitance.BetaEffMeter` built once per model being fit,
    only when it measures (see the module docstring for ``measure``).

    Args:
        x_probe, y_probe: the fixed probe batch and its labels.
        precision: the meter's precision, ``"float32"`` or ``"float64"``.
        measure: ``"auto"``, ``"always"`` or ``"never"``; ``"auto"`` asks
            :meth:`needs_beta_eff` at the start of each ``fit``.
        **probe: where ``beta_eff`` is read: ``probed_model``, ``num_classes``,
            ``hidden``, ``feature_layer``, ``probe_seed``
            (:class:`~ncp_search.engine.probe.ProbeOptions`).

    Attributes:
        measuring: whether this ``fit`` measures ``beta_eff`` (decided in
            ``on_train_begin``).

    Raises:
        ValueError: for an unknown ``measure``.
        TypeError: for a keyword argument that is not a probe option.
    """

    def __init__(
        self,
        x_probe: Any,
        y_probe: Any,
        *,
        precision: str = "float32",
        measure: str = "always",
        **probe: Unpack[ProbeOptions],
    ) -> None:
        super().__init__()
        options = check_probe_options(type(self).__name__, dict(probe))
        if "hidden" in options:  # a copy: a list changed later does not change the probe
            options["hidden"] = tuple(options["hidden"])
        self.measure = check_measure(measure)
        self.measuring = self.measure == "always"
        self.x_probe = x_probe
        self.y_probe = y_probe
        self.probed_model = options.get("probed_model")
        self.precision = precision
        self._probe_options = options
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
            probed = probe_for(self.model, self.x_probe, **self._probe_options)
            self._probed = (self.model, probed)
        return BetaEffMeter(self._probed[1], self.x_probe, self.y_probe,
                            precision=self.precision)

    def needs_beta_eff(self) -> bool:
        """Whether ``measure="auto"`` measures: here always; the pruning callbacks
        ask the predictor that decides."""
        return True

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.measuring = self.measure == "always" or (
            self.measure == "auto" and self.needs_beta_eff())
        # No probe attached, no meter traced when nothing reads beta_eff.
        self._meter = self._build_meter() if self.measuring else None

    def measure_terms(self) -> dict[str, float]:
        """``beta_eff`` and its terms with the model's current weights (measured
        whatever ``measure`` says; the callbacks call it only when :attr:`measuring`)."""
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
        **probe: ``probed_model``, ``num_classes``, ``hidden``, ``feature_layer``,
            ``probe_seed``, as described above
            (:class:`~ncp_search.engine.probe.ProbeOptions`).

    Raises:
        ValueError: for a bad ``interval``.
        TypeError: for a keyword argument that is not a probe option.
        ncp_search.ProbeError: at the start of ``fit`` when no probe can be attached
            to the model (the message says how to fix it).

    NaN and edge cases:
        A diverged model yields ``beta_eff = NaN`` (with a ``RuntimeWarning``) and
        training goes on; the callback never raises during ``fit`` for that.

    Example:
        >>> import ncp_search
        >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
        ...                           keras.layers.Dense(3, activation="softmax")])
        >>> model.compile("adam", "sparse_categorical_crossentropy")
        >>> rng = np.random.default_rng(0)
        >>> x_train, y_train = rng.random((96, 8), dtype="float32"), rng.integers(0, 3, 96)
        >>> x_probe, y_probe = ncp_search.probe_batch(x_train, y_train, n=32)
        >>> logger = BetaEffLogger(x_probe, y_probe)
        >>> history = model.fit(x_train, y_train, epochs=2, verbose=0, callbacks=[logger])
        >>> [r["epoch"] for r in logger.records], len(history.history["beta_eff"])
        ([0.0, 1.0], 2)
    """

    def __init__(
        self,
        x_probe: Any,
        y_probe: Any,
        *,
        interval: int = 1,
        precision: str = "float32",
        log_terms: bool = False,
        **probe: Unpack[ProbeOptions],
    ) -> None:
        self.interval = check_interval(interval)
        super().__init__(x_probe, y_probe, precision=precision, **probe)
        self.log_terms = log_terms
        self.records: list[dict[str, float]] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.records = []
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.interval:
            return
        terms = self.measure_terms()
        record = {"epoch": float(epoch), **terms}
        self.records.append(record)
        if logs is not None:
            logs["beta_eff"] = terms["beta_eff"]
            if self.log_terms:
                logs.update(probe_series(terms))
        logger.debug("epoch %d: beta_eff=%.6g", epoch, terms["beta_eff"])
