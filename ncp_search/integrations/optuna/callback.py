"""Feed NCPPruner from Keras training: the NCPCallback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Optuna before the Keras engine: without either, the install hint names Optuna first.
from ncp_search.integrations.optuna._optuna import optuna

# isort: split
from ncp_search.engine.callbacks import ProbeCallback, check_interval
from ncp_search.integrations.optuna.reporting import (
    prune_message,
    pruner_settings,
    record_decision,
    report_beta_eff,
    report_predicted_final,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ncp_search.engine.probe import ProbeOptions


class NCPCallback(ProbeCallback):
    """Each ``interval`` epochs: report (with beta_eff when it is read), maybe prune.

    Works on the user's own compiled Keras classifier (Sequential or functional,
    ending in a softmax or logits Dense layer): at the start of ``fit`` it attaches
    a frozen probe beside the model's head, on the features that head reads
    (:func:`ncp_search.observer_probe`). The model keeps training its own head;
    the probe only observes the shared layers. A model that already carries a
    probe (:func:`ncp_search.attach_probe`, the probe as its head) is measured
    as it is, and ``probed_model`` names the probed model explicitly.

    ``beta_eff`` is measured only when it is read (``measure="auto"``): when the
    study's pruner is an :class:`ncp_search.NCPPruner` whose predictor reads
    ``beta_eff`` or a probe term (``NCPPruner.settings()["uses_beta_eff"]``, e.g.
    ``predictor="ncp_raw"``). With the default ``NCPPruner()`` or a built-in Optuna
    pruner no probe is attached and nothing is measured: the callback then costs
    what Optuna's own ``KerasPruningCallback`` does (``benchmarks/probe_cpu.py``).

    Args:
        trial: the Optuna trial.
        x_probe: fixed probe batch (inputs of the model), e.g. from
            :func:`ncp_search.probe_batch`.
        y_probe: its labels.
        monitor: the epoch-log metric reported to Optuna (e.g. ``"val_accuracy"``).
        interval: measure and report every ``interval`` epochs.
        report_prediction_on_prune: before raising ``TrialPruned``, report the
            predicted final value as one more step, so the sampler sees the
            prediction rather than the raw value (see the README's sampler
            benchmark for whether it helps).
        measure: ``"auto"`` (default: measure when the study's pruner reads
            ``beta_eff``, decided at the start of each ``fit``), ``"always"`` (to
            record ``beta_eff`` although nothing reads it, e.g. for the dashboard)
            or ``"never"``. A pruner that wraps an NCPPruner (e.g. Optuna's
            ``PatientPruner``) is not looked into: pass ``"always"`` there.
        **probe: ``probed_model``, ``num_classes``, ``hidden``, ``feature_layer``,
            ``probe_seed``: where ``beta_eff`` is read, as described above
            (:class:`~ncp_search.engine.probe.ProbeOptions`).

    Attributes:
        measuring: whether the current ``fit`` measures ``beta_eff``.

    Raises:
        optuna.TrialPruned: when the pruner says so (training is stopped first); an
            NCPPruner's decision is stored first (the trial user attribute
            ``ncp_decision``) and the message, which Optuna logs, says the epoch
            (counted from 1: the step + 1), the compared value and the threshold.
        ValueError: if ``monitor`` is missing from the logs (the message lists the
            available keys), or for a bad ``interval`` or ``measure``.
        TypeError: for a keyword argument that is not a probe option.
        ncp_search.ProbeError: at the start of ``fit`` when no probe can be attached
            (a subclassed model, no hidden layer, not a classifier); the message
            says how to fix it.

    Example:
        >>> import ncp_search
        >>> def objective(trial):
        ...     model = build_model(trial)  # the user's own compiled classifier
        ...     x_probe, y_probe = ncp_search.probe_batch(x_train, y_train)
        ...     model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=20,
        ...               callbacks=[ncp_search.NCPCallback(trial, x_probe, y_probe)])
        ...     return model.evaluate(x_val, y_val, verbose=0)[1]
        >>> study = optuna.create_study(direction="maximize", pruner=ncp_search.NCPPruner())
        >>> study.optimize(objective, n_trials=50)  # doctest: +SKIP
    """

    def __init__(
        self,
        trial: optuna.Trial,
        x_probe: Any,
        y_probe: Any,
        monitor: str = "val_accuracy",
        interval: int = 1,
        *,
        report_prediction_on_prune: bool = False,
        measure: str = "auto",
        **probe: Unpack[ProbeOptions],
    ) -> None:
        self.interval = check_interval(interval)
        super().__init__(x_probe, y_probe, measure=measure, **probe)
        self.trial = trial
        self.monitor = monitor
        self.report_prediction_on_prune = report_prediction_on_prune

    def needs_beta_eff(self) -> bool:
        """Whether the study's pruner reads ``beta_eff`` (what ``"auto"`` follows)."""
        study = getattr(self.trial, "study", None)  # a FixedTrial has none
        if study is None:
            return False
        return bool(pruner_settings(study.pruner).get("uses_beta_eff", False))

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
        terms: dict[str, float] = self.measure_terms() if self.measuring else {}
        if "loss" in logs:
            terms["train_loss"] = logs["loss"]
        report_beta_eff(self.trial, epoch, terms.get("beta_eff"), float(logs[self.monitor]),
                        terms=terms)
        if self.trial.should_prune():
            self.model.stop_training = True
            decision = record_decision(self.trial, epoch)
            if self.report_prediction_on_prune:
                report_predicted_final(self.trial, epoch + 1)
            raise optuna.TrialPruned(prune_message(epoch, decision, self.trial.study.pruner))
