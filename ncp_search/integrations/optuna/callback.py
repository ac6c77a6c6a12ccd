"""Feed NCPPruner from Keras training: the NCPCallback."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

try:
    import optuna
except ImportError as error:  # pragma: no cover
    raise ImportError(
        "ncp_search.NCPCallback needs Optuna: pip install 'ncp-search[optuna]'"
    ) from error

from ncp_search.engine.capacitance import BetaEffMeter
from ncp_search.integrations.optuna.reporting import report_beta_eff, report_predicted_final


class NCPCallback(keras.callbacks.Callback):
    """Each ``interval`` epochs: beta_eff on the probe batch, report, maybe prune.

    Args:
        trial: the Optuna trial.
        x_probe: fixed probe batch (inputs of the probed model).
        y_probe: its labels.
        monitor: the epoch-log metric reported to Optuna (e.g. ``"val_accuracy"``).
        interval: measure and report every ``interval`` epochs.
        probed_model: the model carrying the probe when it is not the trained model
            (observer mode: :func:`ncp_search.engine.finetune.observer_probe`); default:
            the trained model itself.
        report_prediction_on_prune: before raising ``TrialPruned``, report the
            predicted final value as one more step, so the sampler sees the
            prediction rather than the raw value (see the README's sampler
            benchmark for whether it helps).

    Raises:
        optuna.TrialPruned: when the pruner says so (training is stopped first).
        ValueError: if ``monitor`` is missing from the logs (the message lists the
            available keys).
    """

    def __init__(
        self,
        trial: optuna.Trial,
        x_probe: Any,
        y_probe: Any,
        monitor: str = "val_accuracy",
        interval: int = 1,
        *,
        probed_model: Any = None,
        report_prediction_on_prune: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(interval, (int, np.integer)) or interval < 1:
            raise ValueError(f"interval must be an integer >= 1, but got interval={interval!r}.")
        self.trial = trial
        self.x_probe = x_probe
        self.y_probe = y_probe
        self.monitor = monitor
        self.interval = int(interval)
        self.probed_model = probed_model
        self.report_prediction_on_prune = report_prediction_on_prune
        self._meter: BetaEffMeter | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._meter = BetaEffMeter(self.probed_model or self.model, self.x_probe, self.y_probe)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.interval:
            return
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"NCPCallback monitors {self.monitor!r}, which is not in the epoch logs; "
                f"available: {sorted(logs)}. Pass validation_data to fit() or choose "
                "another monitor."
            )
        assert self._meter is not None
        terms = self._meter().as_dict()
        if "loss" in logs:
            terms["train_loss"] = logs["loss"]
        report_beta_eff(self.trial, epoch, terms["beta_eff"], float(logs[self.monitor]),
                        terms=terms)
        if self.trial.should_prune():
            self.model.stop_training = True
            if self.report_prediction_on_prune:
                report_predicted_final(self.trial, epoch + 1)
            raise optuna.TrialPruned(f"pruned at epoch {epoch} by its predicted final value.")
