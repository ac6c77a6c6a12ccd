"""Ray Tune trainables that report ``beta_eff``, and trial resources.

- :class:`KerasProbeTrainable`: a class trainable whose actor holds the Keras model
  and computes ``beta_eff`` in a method (:meth:`KerasProbeTrainable.beta_eff`) after
  every epoch; subclass it and implement :meth:`build`.
- :func:`report_beta_eff_to_tune`: for function trainables with a loop of their
  own, reports the metrics together with ``beta_eff`` through ``ray.tune.report``
  (Ray 2.60 raises on ``ray.train.report`` inside Tune). With ``model.fit``, use
  :class:`ncp_search.NCPTuneCallback` instead.
- :func:`trial_resources`: one GPU share per trial when Ray sees GPUs, CPUs
  otherwise, for ``tune.with_resources``.
- :func:`predictor_reads_beta_eff`: whether a scheduler's predictor reads
  ``beta_eff``, which decides whether a trainable measures it (a trainable cannot
  see Tune's scheduler, so it is told the predictor's name).
"""

from __future__ import annotations

import math
from typing import Any

try:
    import ray
    from ray import tune
except ImportError as error:  # pragma: no cover
    raise ImportError(
        "ncp_search's Ray helpers need Ray Tune: pip install 'ncp-search[ray]'"
    ) from error

from ncp_search.core.history import probe_series
from ncp_search.core.predictors import get_predictor
from ncp_search.engine.callbacks import check_measure
from ncp_search.integrations.ray.checkpoint import load_keras, save_keras


def tune_metrics(terms: Any) -> dict[str, float]:
    """``beta_eff`` and the probe terms of one measurement (a ``BetaEffTerms`` or its
    ``as_dict()``) under the result keys :class:`ncp_search.NCPScheduler` reads:
    ``beta_eff`` and ``probe_<name>``."""
    return {name: float(value) for name, value in probe_series(terms, beta_eff=True).items()}


def predictor_reads_beta_eff(predictor: str | None) -> bool:
    """Whether the scheduler's predictor ``predictor`` (``NCPScheduler(predictor=...)``)
    reads ``beta_eff`` or a probe term; ``None`` (NCPScheduler's default, ``"best"``,
    or a scheduler of Ray's own) reads neither.

    Raises:
        ValueError: for an unknown predictor name (the message lists the known ones).
    """
    if predictor is None:
        return False
    return get_predictor(predictor).uses_beta_eff


def measures_beta_eff(measure: str, predictor: str | None) -> bool:
    """What ``measure`` (``"auto"``, ``"always"``, ``"never"``) means for a trainable
    whose scheduler's predictor is ``predictor``: ``"auto"`` measures when
    :func:`predictor_reads_beta_eff`.

    Raises:
        ValueError: for an unknown ``measure`` or predictor name.
    """
    reads = predictor_reads_beta_eff(predictor)
    return check_measure(measure) == "always" or (measure == "auto" and reads)


def report_beta_eff_to_tune(
    metrics: dict[str, Any], meter: Any | None, *, checkpoint: Any = None
) -> dict[str, Any]:
    """Measure ``beta_eff`` with ``meter`` (a :class:`ncp_search.BetaEffMeter`) and
    report it with ``metrics`` through ``ray.tune.report``, inside a function
    trainable (Ray 2.60 raises on ``ray.train.report`` inside Tune).

    The result holds ``metrics``, ``beta_eff`` and the probe terms as
    ``probe_<name>`` (``probe_feature_norm``, ...), the names
    :class:`ncp_search.NCPScheduler` and its predictors read.

    Args:
        metrics: the trial's metrics for this step (e.g. ``{"val_accuracy": 0.93}``).
        meter: the trial's meter, built once on the fixed probe batch; ``None``
            reports ``metrics`` alone (a trainable whose scheduler reads no
            ``beta_eff``: :func:`measures_beta_eff`).
        checkpoint: a ``ray.tune.Checkpoint`` to report with them, or ``None``.

    Returns:
        What was reported.

    Example:
        >>> import ncp_search
        >>> def train(config):  # a Tune function trainable
        ...     model = build_model(config)  # the user's own compiled classifier
        ...     meter = ncp_search.BetaEffMeter(ncp_search.observer_probe(model), x_probe,
        ...                                     y_probe)
        ...     for epoch in range(config["epochs"]):
        ...         history = model.fit(x, y, validation_data=(x_val, y_val), epochs=1,
        ...                             verbose=0)
        ...         ncp_search.report_beta_eff_to_tune(
        ...             {"val_accuracy": history.history["val_accuracy"][-1]}, meter)
    """
    reported = {**metrics, **(tune_metrics(meter()) if meter is not None else {})}
    if checkpoint is None:
        tune.report(reported)
    else:
        tune.report(reported, checkpoint=checkpoint)
    return reported


def trial_resources(cpus: float = 1.0, gpus_per_trial: float | None = None) -> dict[str, float]:
    """Resources for one trial: ``gpus_per_trial`` (default 1) GPUs when the Ray
    cluster has GPUs, else CPUs only. Fractional GPUs pack several trials per GPU.

    Raises:
        ValueError: for non-positive amounts.
    """
    if cpus <= 0:
        raise ValueError(f"cpus must be > 0, but got cpus={cpus}.")
    if gpus_per_trial is not None and gpus_per_trial <= 0:
        raise ValueError(f"gpus_per_trial must be > 0, but got gpus_per_trial={gpus_per_trial}.")
    available = ray.cluster_resources() if ray.is_initialized() else {}
    if available.get("GPU", 0) > 0:
        return {"cpu": cpus, "gpu": 1.0 if gpus_per_trial is None else gpus_per_trial}
    return {"cpu": cpus}


class KerasProbeTrainable(tune.Trainable):
    """A Tune class trainable: one epoch per ``step``, ``beta_eff`` from the actor.

    Subclasses implement :meth:`build`, returning a dict with ``trained`` (the
    compiled model to fit), ``probed`` (the model carrying the probe; the same
    model in probe-as-head mode), ``x``, ``y``, ``x_val``, ``y_val``, ``x_probe``,
    ``y_probe`` and optionally ``batch_size`` and ``epochs_per_step``.
    Each step reports the Keras epoch logs (``loss``, ``val_accuracy``, ...), and
    ``beta_eff`` and the probe terms (``probe_<name>``) when it measures.

    When to measure: the class attributes ``measure`` (``"auto"``, the default,
    ``"always"`` or ``"never"``) and ``predictor`` (the scheduler's predictor name,
    ``None`` for NCPScheduler's default or another scheduler), or the same keys in
    what :meth:`build` returns; ``"auto"`` measures when the predictor reads
    ``beta_eff`` (:func:`measures_beta_eff`). When it does not measure, no meter is
    built (no tracing) and :meth:`beta_eff` returns NaN.

    Checkpoints (Tune asks for one when it pauses the trial, and at
    ``CheckpointConfig(checkpoint_frequency=...)``) hold the trained model with its
    optimizer state, the epochs done and the ``Dropout`` seed states
    (:mod:`ncp_search.integrations.ray.checkpoint`): a paused trial, restored, goes
    on to the same weights as one that ran on (``build`` must seed the model as
    before). Epochs are counted on (``initial_epoch``) for Keras callbacks.
    """

    measure: str = "auto"
    predictor: str | None = None

    def build(self, config: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError("subclass KerasProbeTrainable and implement build(config)")

    def setup(self, config: dict[str, Any]) -> None:
        from ncp_search.engine.capacitance import BetaEffMeter

        parts = self.build(config)
        missing = {"trained", "probed", "x", "y", "x_val", "y_val", "x_probe", "y_probe"} - set(
            parts
        )
        if missing:
            raise ValueError(f"build() must return {sorted(missing)} as well.")
        self.parts = parts
        self.epochs_done = 0
        measuring = measures_beta_eff(parts.get("measure", self.measure),
                                      parts.get("predictor", self.predictor))
        self.meter = (BetaEffMeter(parts["probed"], parts["x_probe"], parts["y_probe"])
                      if measuring else None)

    def beta_eff(self) -> float:
        """``beta_eff`` of the actor's model on the fixed probe batch (an actor method;
        NaN when the trainable does not measure)."""
        return float(self.meter().beta_eff) if self.meter is not None else math.nan

    def step(self) -> dict[str, Any]:
        parts = self.parts
        start = self.epochs_done
        history = parts["trained"].fit(
            parts["x"], parts["y"], validation_data=(parts["x_val"], parts["y_val"]),
            epochs=start + int(parts.get("epochs_per_step", 1)), initial_epoch=start,
            batch_size=int(parts.get("batch_size", 64)), verbose=0,
        )
        self.epochs_done = start + len(history.epoch)
        logs = {key: float(values[-1]) for key, values in history.history.items()}
        return {**logs, **(tune_metrics(self.meter()) if self.meter is not None else {})}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        save_keras(self.parts["trained"], checkpoint_dir, self.epochs_done)

    # Tune passes the checkpoint directory here; its stub says dict | None.
    def load_checkpoint(self, checkpoint_dir: str) -> None:  # type: ignore[override]
        self.epochs_done = load_keras(self.parts["trained"], checkpoint_dir)
