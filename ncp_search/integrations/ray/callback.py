"""Feed Ray Tune from Keras training: the NCPTuneCallback."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:
    from ray import tune
except ImportError as error:  # pragma: no cover
    raise ImportError(
        "ncp_search.NCPTuneCallback needs Ray Tune: pip install 'ncp-search[ray]'"
    ) from error

from ncp_search.core.history import PROBE_TERMS
from ncp_search.engine.callbacks import ProbeCallback
from ncp_search.integrations.ray.checkpoint import keras_checkpoint
from ncp_search.integrations.ray.kept import megabytes, model_bytes, report_keeping
from ncp_search.integrations.ray.trainable import predictor_reads_beta_eff, tune_metrics

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ncp_search.engine.probe import ProbeOptions

REPORTED = ("beta_eff", *PROBE_TERMS)  # what this callback adds to every report
CHECKPOINT_HOOKS = ("epoch_end", "train_end")


class NCPTuneCallback(ProbeCallback):
    """Each epoch: the metrics reported to Tune, with ``beta_eff`` when it is read.

    For a function trainable that calls ``model.fit``: at the end of every epoch it
    measures ``beta_eff`` (and the probe terms) on the fixed batch when the
    scheduler's predictor reads them, writes them into the epoch logs as
    ``beta_eff`` and ``probe_<name>`` (the keys :class:`ncp_search.NCPScheduler`
    reads), and reports ``metrics`` with them through ``ray.tune.report``, with a
    checkpoint of the whole training state, as Ray's own
    ``TuneReportCheckpointCallback`` reports one of the model: ``model.keras`` (with
    the optimizer state) and the epochs done, in a temporary folder, reported, the
    folder removed (:mod:`ncp_search.integrations.ray.checkpoint`).
    ``checkpoint_on=None`` reports without a checkpoint, which saves the time of
    saving the model every epoch when nothing restores it.

    Pause and resume: a trial Tune pauses (``NCPScheduler`` with a ``PausingPolicy``,
    Tune's ``HyperBandScheduler``) or restores continues where it stopped when the
    trainable calls ``initial_epoch=restore_keras(model)``
    (:func:`ncp_search.integrations.ray.restore_keras`) before ``fit``: same weights as
    a trial that ran on. A pausing scheduler needs a checkpoint at every epoch where it
    may pause (its rungs): keep ``checkpoint_frequency=1`` or a divisor of the rungs.

    When to measure: a callback in a trainable cannot see Tune's scheduler, so
    ``measure="auto"`` (the default) follows ``predictor``, the name given to
    ``NCPScheduler(predictor=...)``: it measures when that predictor reads
    ``beta_eff`` or a probe term (e.g. ``"ncp_raw"``) and not for the default
    ``"best"`` or another scheduler (``predictor=None``). Then no probe is attached,
    nothing is traced or measured, and only ``metrics`` are reported. Pass the same
    name to both (an NCPScheduler whose predictor gets no ``beta_eff`` warns and
    lets the trials run), or ``measure="always"``.

    Where ``beta_eff`` is read: as :class:`ncp_search.NCPCallback` (an observer
    probe attached beside a plain model's own head; the model itself when it carries
    a probe; ``probed_model`` when given).

    Args:
        x_probe: fixed probe batch (inputs of the model), e.g. from
            :func:`ncp_search.probe_batch`.
        y_probe: its labels.
        metrics: the Keras log keys to report, as in Ray's callback: ``None`` (all
            logs), a key, a list of keys, or ``{reported name: log key}``.
            ``beta_eff`` and the probe terms are added when measured.
        checkpoint_on: when to save and report a checkpoint: ``"epoch_end"`` (Ray's
            default), ``"train_end"`` (one more report with the final model), both,
            or ``None`` (never).
        checkpoint_frequency: with ``"epoch_end"``, a checkpoint every this many
            epochs (after epochs k, 2k, ...; as Tune's ``CheckpointConfig``); the
            other epochs report metrics only. Default 1: every epoch.
        precision: ``"float32"`` (default) or ``"float64"``.
        predictor: the scheduler's predictor name (``NCPScheduler(predictor=...)``),
            which ``measure="auto"`` follows; ``None``: NCPScheduler's default or
            another scheduler, which read no ``beta_eff``.
        measure: ``"auto"`` (default), ``"always"`` or ``"never"``.
        keep_in_memory_mb: keep the model in this actor's memory at each report with a
            checkpoint, up to this many MB per actor (0, the default: never), so that
            a trial Tune pauses and resumes on the same actor trains on from it
            (:func:`ncp_search.integrations.ray.kept_model`; with
            ``NCPScheduler(resume_where_paused=True)`` and ``reuse_actors=True``).
        **probe: ``probed_model``, ``num_classes``, ``hidden``, ``feature_layer``,
            ``probe_seed``: where ``beta_eff`` is read, as described above
            (:class:`~ncp_search.engine.probe.ProbeOptions`).

    Attributes:
        measuring: whether the current ``fit`` measures ``beta_eff``.

    Raises:
        ValueError: for an unknown ``checkpoint_on``, ``predictor`` or ``measure``, a
            ``checkpoint_frequency`` below 1, a negative ``keep_in_memory_mb``;
            during ``fit``, if a requested metric is not in the epoch logs (the
            message lists the available keys).
        TypeError: for a keyword argument that is not a probe option.
        ncp_search.ProbeError: at the start of ``fit`` when no probe can be attached;
            the message says how to fix it.

    NaN and edge cases:
        A diverged model reports ``beta_eff = NaN`` (with a ``RuntimeWarning``);
        NCPScheduler lets such trials run on what else they report.

    Example:
        >>> import ncp_search
        >>> def train(config):
        ...     model = build_model(config)   # the user's own compiled classifier
        ...     model.fit(x, y, validation_data=(x_val, y_val), epochs=20, verbose=0,
        ...               callbacks=[ncp_search.NCPTuneCallback(x_probe, y_probe,
        ...                                                     metrics=["val_accuracy"])])
        >>> # paused trials resumed where they stopped (NCPScheduler with a PausingPolicy):
        >>> from ncp_search.integrations.ray import restore_keras
        >>> def train(config):
        ...     model = build_model(config)   # built and compiled as before, same seed
        ...     model.fit(x, y, validation_data=(x_val, y_val), epochs=20, verbose=0,
        ...               initial_epoch=restore_keras(model),
        ...               callbacks=[ncp_search.NCPTuneCallback(x_probe, y_probe,
        ...                                                     metrics=["val_accuracy"])])
        >>> # with NCPScheduler(predictor="ncp_raw"), which reads beta_eff:
        >>> callback = ncp_search.NCPTuneCallback(x_probe, y_probe, metrics=["val_accuracy"],
        ...                                       predictor="ncp_raw")  # doctest: +SKIP
    """

    def __init__(
        self,
        x_probe: Any,
        y_probe: Any,
        metrics: str | Sequence[str] | Mapping[str, str] | None = None,
        *,
        checkpoint_on: str | Sequence[str] | None = "epoch_end",
        checkpoint_frequency: int = 1,
        precision: str = "float32",
        predictor: str | None = None,
        measure: str = "auto",
        keep_in_memory_mb: float = 0,
        **probe: Unpack[ProbeOptions],
    ) -> None:
        super().__init__(x_probe, y_probe, precision=precision, measure=measure, **probe)
        self._keep_bytes = megabytes(keep_in_memory_mb, "keep_in_memory_mb")
        self.predictor = predictor
        self._reads_beta_eff = predictor_reads_beta_eff(predictor)  # checks the name
        self.metrics = metrics
        self._wanted = _wanted_keys(metrics)
        checkpoints = [] if checkpoint_on is None else (
            [checkpoint_on] if isinstance(checkpoint_on, str) else list(checkpoint_on))
        unknown = [hook for hook in checkpoints if hook not in CHECKPOINT_HOOKS]
        if unknown:
            raise ValueError(
                f"checkpoint_on must be None or among {list(CHECKPOINT_HOOKS)}, but got "
                f"checkpoint_on={checkpoint_on!r}."
            )
        if isinstance(checkpoint_frequency, bool) or not isinstance(checkpoint_frequency, int) \
                or checkpoint_frequency < 1:
            raise ValueError(
                "checkpoint_frequency must be an integer >= 1 (a checkpoint every so many "
                f"epochs), but got checkpoint_frequency={checkpoint_frequency!r}; pass "
                "checkpoint_on=None for no checkpoints."
            )
        self.checkpoint_on = checkpoints
        self.checkpoint_frequency = checkpoint_frequency
        # Known now (it follows predictor alone), so the reported keys are fixed here.
        self.measuring = self.measure == "always" or (
            self.measure == "auto" and self._reads_beta_eff)
        self._reported = _with_keys(metrics, REPORTED if self.measuring else ())
        self._epochs_done: int | None = None

    def needs_beta_eff(self) -> bool:
        """Whether ``predictor`` reads ``beta_eff`` (what ``"auto"`` follows)."""
        return self._reads_beta_eff

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        self._epochs_done = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {} if logs is None else logs
        missing = [key for key in self._wanted if key not in logs]
        if missing:
            raise ValueError(
                f"NCPTuneCallback reports {missing}, which are not in the epoch logs; "
                f"available: {sorted(logs)}. Pass validation_data to fit() or choose other "
                "metrics."
            )
        if self.measuring:
            logs.update(tune_metrics(self.measure_terms()))
        self._epochs_done = epoch + 1
        save = ("epoch_end" in self.checkpoint_on
                and (epoch + 1) % self.checkpoint_frequency == 0)
        self._send(logs, save)

    def on_train_end(self, logs: dict | None = None) -> None:
        # as Ray's callback: one more report, with the final model, when asked for
        if "train_end" in self.checkpoint_on and self._epochs_done is not None:
            self._send({} if logs is None else logs, True)

    def _send(self, logs: Mapping[str, Any], save: bool) -> None:
        metrics = _pick(self._reported, logs)
        if not save:
            tune.report(metrics)
            return
        assert self._epochs_done is not None
        trial_id = tune.get_context().get_trial_id() if self._keep_bytes else None
        with keras_checkpoint(self.model, self._epochs_done) as checkpoint:
            report_keeping(metrics, checkpoint, None if trial_id is None else str(trial_id),
                           self.model, lambda: model_bytes(self.model), self._keep_bytes)


def _wanted_keys(metrics: Any) -> list[str]:
    """The log keys ``metrics`` asks for (none for ``None``: all logs)."""
    if metrics is None:
        return []
    if isinstance(metrics, str):
        return [metrics]
    if isinstance(metrics, Mapping):
        return [key for key in metrics.values() if key not in REPORTED]
    return [key for key in metrics if key not in REPORTED]


def _pick(metrics: Any, logs: Mapping[str, Any]) -> dict[str, Any]:
    """What is reported of ``logs`` for ``metrics`` as :func:`_with_keys` returns them."""
    if metrics is None:
        return dict(logs)
    if isinstance(metrics, Mapping):
        return {name: logs[key] for name, key in metrics.items()}
    return {key: logs[key] for key in metrics}


def _with_keys(metrics: Any, keys: Sequence[str]) -> Any:
    """``metrics`` as Ray's callback takes them, with ``keys`` added (``None``: all
    logs, which hold them anyway)."""
    if metrics is None:
        return None
    if isinstance(metrics, str):
        metrics = [metrics]
    if isinstance(metrics, Mapping):
        return {**dict(metrics), **{key: key for key in keys}}
    return list(dict.fromkeys([*metrics, *keys]))
