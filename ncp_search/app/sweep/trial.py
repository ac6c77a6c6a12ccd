"""One trial of a sweep: load the source model, build, fine-tune epoch by epoch.

Framework-free: the backends (Optuna, Ray Tune) pass an ``on_epoch`` hook that
reports the epoch's validation accuracy and ``beta_eff`` to their host and may
raise to stop the trial (``optuna.TrialPruned``) or return ``True`` to stop it.

Diverged trials: after each epoch :func:`divergence` says whether training has
diverged: a non-finite loss or validation accuracy, a training loss above
:data:`EXPLODED` times ``ln K`` (what a uniform guess over the ``K`` classes
scores), or two epochs in a row at chance (training loss >= ``ln K`` and not
falling, validation accuracy <= ``1/K`` + :data:`CHANCE_MARGIN`). The hook gets the
reason (``EpochInfo.diverged``); both backends then stop the trial at once and
record it as PRUNED with the reason (Optuna user attribute ``ncp_diverged``, Ray
record key ``diverged``): a pruned trial counts against the budget (an all-diverging
sweep ends) and samplers such as TPE learn from it, where a FAIL trial would be
ignored and its region sampled again.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ncp_search.app.sweep.hosts import pid_alive
from ncp_search.app.sweep.seeds import reduce_seed
from ncp_search.errors import NCPSearchError

EXPLODED = 10.0
CHANCE_MARGIN = 0.02


@dataclass(frozen=True)
class EpochInfo:
    """What a trial's epoch hook gets besides the metric and ``beta_eff``."""

    seconds: float  # this epoch's wall time: training, validation, beta_eff, reporting
    train_loss: float
    val_loss: float
    diverged: str | None  # why the trial counts as diverged (None: it does not)
    model: Any = None  # the model being trained (to checkpoint it)
    live: LiveTrial | None = None  # its models after this epoch, to resume from memory


EpochHook = Callable[[int, float, float, dict[str, float], EpochInfo], Any]


@dataclass
class LiveTrial:
    """A paused trial's models kept in memory, with its ``beta_eff`` meter and the
    epochs done: :func:`run_trial` trains on from them instead of loading the source
    model, building, compiling and restoring a checkpoint (the same batches and
    weights as from the checkpoint; what a resume costs otherwise)."""

    models: Any
    meter: Any
    epochs: int

    @property
    def nbytes(self) -> int:
        """About what it holds: the trained and probed models' weights and the
        optimizer's state."""
        from ncp_search.integrations.ray.kept import variable_bytes

        trained, probed = self.models.trained, self.models.probed
        variables = list(trained.weights) + list(getattr(trained.optimizer, "variables", []))
        if probed is not trained:
            variables += list(probed.weights)
        return variable_bytes(variables)


LIVE_MB_ENV = "NCP_SEARCH_PAUSED_MODELS_MB"
"""Environment variable: how many MB of paused trials' models a pausing sweep keeps in
memory, per Optuna worker or Ray actor (default 1024; 0 keeps none: every resume
loads its checkpoint)."""


def live_bytes() -> int:
    """The memory for paused trials' models (:class:`LiveTrial`: a resume then skips
    loading, building, compiling and the checkpoint), from :data:`LIVE_MB_ENV`."""
    raw = os.environ.get(LIVE_MB_ENV, "1024")
    try:
        return max(0, int(float(raw) * 2**20))
    except ValueError:
        raise NCPSearchError(f"{LIVE_MB_ENV} must be a number of MB (0 or more), but got "
                             f"{raw!r}.") from None


def check_live_bytes(config: Mapping[str, Any]) -> None:
    """Refuse a bad :data:`LIVE_MB_ENV` for a sweep that pauses trials (``ncp_pause``
    on either backend, Tune's ``hyperband``) before anything is written.

    Raises:
        NCPSearchError: it is not a number.
    """
    from ncp_search.app.sweep.config import as_config

    typed = as_config(config)
    pauses = typed.choice.rule == "pause" or (typed.backend == "ray"
                                              and typed.choice.name == "hyperband")
    if pauses:  # Tune's HyperBandScheduler pauses too
        live_bytes()


def trim_live(live: dict[str, LiveTrial], limit: int) -> None:
    """Let go of the longest-kept models of ``live`` (kept in insertion order) until
    they hold at most ``limit`` bytes."""
    while live and sum(entry.nbytes for entry in live.values()) > limit:
        del live[next(iter(live))]


def divergence(train_losses: list[float], val_accuracies: list[float],
               val_loss: float, num_classes: int) -> str | None:
    """Why a trial's curve so far counts as diverged, or None (see the module
    docstring). ``train_losses`` and ``val_accuracies``: one per epoch, latest last."""
    loss, accuracy = train_losses[-1], val_accuracies[-1]
    if not (math.isfinite(loss) and math.isfinite(val_loss) and math.isfinite(accuracy)):
        return "non-finite loss or accuracy"
    uniform = math.log(max(num_classes, 2))
    if loss > EXPLODED * uniform:
        return f"training loss {loss:.4g} exploded (> {EXPLODED:g} x ln {num_classes})"
    chance = 1.0 / max(num_classes, 2) + CHANCE_MARGIN
    stuck = [i for i in range(1, len(train_losses))
             if train_losses[i] >= uniform and train_losses[i] >= train_losses[i - 1]
             and val_accuracies[i] <= chance]
    if len(stuck) >= 2 and stuck[-1] == len(train_losses) - 1 and stuck[-2] == stuck[-1] - 1:
        return (f"at chance for 2 epochs (training loss {loss:.4g} >= ln {num_classes} and "
                f"not falling, val_accuracy {accuracy:.4g})")
    return None


@dataclass
class SweepData:
    """The target task, adapted to the source model's input shape, and its probe batch."""

    task: Any
    x_probe: np.ndarray
    y_probe: np.ndarray


def adapt_images(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize NHWC images to ``shape`` (height, width, channels), repeating a single
    channel when the model wants three.

    Raises:
        ValueError: if the channels cannot be matched.
    """
    height, width, channels = (int(v) for v in shape)
    if x.shape[1:] == (height, width, channels):
        return x
    if x.shape[-1] not in (1, channels):
        raise ValueError(f"cannot feed images with {x.shape[-1]} channels to a model that "
                         f"expects input shape {tuple(shape)}.")
    import tensorflow as tf

    out = tf.image.resize(x, (height, width)).numpy()
    if out.shape[-1] != channels:
        out = np.repeat(out, channels, axis=-1)
    return out.astype("float32")


def load_data(config: Mapping[str, Any], input_shape: tuple[int, ...] | None = None) -> SweepData:
    """The config's target task (seeded split), resized to ``input_shape`` if given."""
    from ncp_search.app.data import load_task

    data = config["data"]
    sizes = {k: data[k] for k in ("n_train", "n_val") if data[k] is not None}
    task = load_task(data["target"], seed=reduce_seed(config["seed"]), **sizes)
    if input_shape is not None:
        task = dataclasses.replace(task, x_train=adapt_images(task.x_train, input_shape),
                                   x_val=adapt_images(task.x_val, input_shape))
    probe = config["probe"]
    n_probe = min(int(probe["batch"]), len(task.y_train) // 2)
    x_probe, y_probe = task.probe_batch(n_probe, seed=reduce_seed(probe["seed"]))
    return SweepData(task=task, x_probe=x_probe, y_probe=y_probe)


def application_input_shape(config: Mapping[str, Any]) -> tuple[int, ...] | None:
    """The input shape a ``keras.applications`` source needs (None for other sources)."""
    source = config["source"]
    if source["application"] is None:
        return None
    return tuple(source["input_shape"] or (32, 32, 3))


def load_source(config: Mapping[str, Any], params: Mapping[str, Any], num_classes: int,
                cache_dir: str | None = None) -> Any:
    """A fresh source model for one trial: from the zoo (``params['source_model']``
    overrides ``source.zoo``), a saved ``.keras`` file, or ``keras.applications``."""
    import keras

    source = config["source"]
    zoo_name = params.get("source_model", source["zoo"])
    if "source_model" in params or source["zoo"] is not None:
        from ncp_search.app.zoo import load_source_model

        return load_source_model(zoo_name, source=source["task"], epochs=source["epochs"],
                                 cache_dir=cache_dir)
    if source["file"] is not None:
        # safe_mode: no code from the file runs (Lambda layers are refused)
        return keras.models.load_model(source["file"], safe_mode=True)
    build = getattr(keras.applications, source["application"])
    weights = source["weights"]
    return build(weights=weights, input_shape=application_input_shape(config),
                 include_top=True, classes=1000 if weights == "imagenet" else num_classes)


def check_input_shape(model: Any, task: Any, what: str) -> None:
    """Raise ``ValueError`` when the model cannot take the task's images."""
    expected = tuple(model.inputs[0].shape[1:])
    got = tuple(task.x_train.shape[1:])
    if any(e is not None and e != g for e, g in zip(expected, got)) or len(expected) != len(got):
        raise ValueError(f"{what} expects inputs of shape {expected}, but the target task "
                         f"{task.name} has images of shape {got}; pick a source model trained "
                         "on the same dataset (source.task) or set source.input_shape.")


def reads_beta_eff(config: Mapping[str, Any]) -> bool:
    """Whether the sweep's pruner (Optuna) or scheduler (Ray) reads ``beta_eff``: an
    NCP one whose predictor reads ``beta_eff`` or a probe term. Trials measure
    ``beta_eff`` only then (the probe costs CPU every epoch and a trace per process);
    an unknown predictor name counts as reading it."""
    from ncp_search.app.sweep.config import as_config
    from ncp_search.core.predictors import PREDICTORS

    choice = as_config(config).choice
    if not choice.rule:
        return False
    found = PREDICTORS.get(str(choice.settings["predictor"]))
    return True if found is None else found.uses_beta_eff


def run_trial(
    config: Mapping[str, Any],
    params: Mapping[str, Any],
    data: SweepData,
    on_epoch: EpochHook,
    *,
    trial_seed: int,
    model_path: str | Path | None = None,
    cache_dir: str | None = None,
    measure_beta_eff: bool | None = None,
    restore: Callable[[Any], int] | None = None,
    live: LiveTrial | None = None,
    keep_live: bool = False,
) -> dict[str, Any]:
    """Fine-tune one configuration for up to ``budget.epochs`` epochs.

    Args:
        config: a validated sweep config.
        params: the trial's sampled parameters.
        data: from :func:`load_data`.
        on_epoch: called after each epoch as ``on_epoch(epoch, val_accuracy,
            beta_eff, terms, info)`` (0-based epoch; ``terms``: the probe terms as
            ``probe_<name>`` and ``train_loss``, what the predictors read;
            ``info``: an :class:`EpochInfo`); may raise to abort the trial (the
            exception propagates) or return ``True`` to stop training early.
        trial_seed: seeds the trial's weights and data order.
        model_path: where the trained model is saved when the trial runs all its
            epochs (``None``: not saved).
        cache_dir: model-zoo cache folder.
        measure_beta_eff: measure ``beta_eff`` after each epoch; ``None`` (default):
            when the sweep's pruner or scheduler reads it (:func:`reads_beta_eff`).
            Unmeasured, ``beta_eff`` is NaN and ``terms`` holds ``train_loss`` only,
            and no meter is traced.
        restore: called with the compiled model before training; loads a checkpoint
            into it and returns the epochs it had done (0: none), from which
            training goes on (``initial_epoch``; the record holds the epochs run
            here, ``epochs`` counts them all).
        live: the trial's models kept in memory since it paused: training goes on
            from ``live.epochs`` with them (no source model loaded, no ``restore``).
        keep_live: also return the models, as ``record["live"]`` (a
            :class:`LiveTrial`), to resume from.

    Returns:
        ``{"val_accuracy": [...], "beta_eff": [...], "epoch_seconds": [...],
        "epochs": n, "seconds": s (the whole trial: loading and building the model
        too), "diverged": reason | None, "model_path": str | None}``; a diverged
        trial's model is not saved.
    """
    import keras

    from ncp_search.core.history import probe_series
    from ncp_search.engine.capacitance import NAN_TERMS, BetaEffMeter
    from ncp_search.engine.finetune import EpochEnd, TrialModels, fine_tune

    started = time.perf_counter()
    # No garbage collection here (0.5-2.5 s a trial with TensorFlow loaded, measured
    # on 2 cores, growing with the heap): Python's generational collector frees the
    # trial's cycles at a flat cost per trial (benchmarks/sweep_overhead.py), and a Ray
    # trial runs in its own actor.
    task = data.task
    if live is None:
        keras.backend.clear_session(free_memory=False)
        source = load_source(config, params, task.num_classes, cache_dir)
        check_input_shape(source, task, "the source model")
    else:
        source = None
    if measure_beta_eff is None:
        measure_beta_eff = reads_beta_eff(config)
    record: dict[str, Any] = {"val_accuracy": [], "beta_eff": [], "epoch_seconds": [],
                              "diverged": None, "model_path": None}
    losses: list[float] = []
    # An epoch's time runs from the previous epoch's beta_eff measurement (or the
    # start of training) to its own: training, validation, beta_eff and the previous
    # epoch's reporting (what running one more epoch costs).
    state: dict[str, Any] = {"meter": None, "clock": started, "models": None}

    def built(models: TrialModels) -> None:
        if live is not None:
            state["meter"] = live.meter
        elif measure_beta_eff:
            state["meter"] = BetaEffMeter(models.probed, data.x_probe, data.y_probe)
        state["models"] = models
        state["clock"] = time.perf_counter()

    def end_of_epoch(end: EpochEnd) -> bool:
        logs, meter = end.logs, state["meter"]
        value = float(logs.get("val_accuracy", math.nan))
        measured = meter() if meter is not None else NAN_TERMS
        now = time.perf_counter()
        seconds, state["clock"] = now - state["clock"], now
        beta = float(measured.beta_eff)
        terms = probe_series(measured) if meter is not None else {}
        terms["train_loss"] = float(logs.get("loss", math.nan))
        losses.append(terms["train_loss"])
        record["val_accuracy"].append(value)
        record["beta_eff"].append(beta)
        val_loss = float(logs.get("val_loss", math.nan))
        diverged = divergence(losses, record["val_accuracy"], val_loss, task.num_classes)
        record["epoch_seconds"].append(seconds)
        if diverged:
            record["diverged"] = diverged
        info = EpochInfo(seconds=seconds, train_loss=terms["train_loss"], val_loss=val_loss,
                         diverged=diverged, model=end.models.trained,
                         live=LiveTrial(end.models, meter, end.epoch + 1))
        return on_epoch(end.epoch, value, beta, terms, info) is True or bool(diverged)

    probe = config["probe"]
    epochs = int(config["budget"]["epochs"])
    start = fine_tune(source, task, params, epochs=epochs, trial_seed=trial_seed,
                      on_epoch=end_of_epoch, mode=config["mode"], hidden=tuple(probe["hidden"]),
                      probe_seed=reduce_seed(probe["seed"]), on_built=built,
                      restore=None if live is not None else restore,
                      models=None if live is None else live.models,
                      start=0 if live is None else live.epochs)
    record["epochs"] = start + len(record["val_accuracy"])
    record["seconds"] = time.perf_counter() - started
    if model_path is not None and record["epochs"] == epochs and not record["diverged"]:
        save_model(state["models"].trained, Path(model_path))
        record["model_path"] = str(model_path)
    if keep_live:
        record["live"] = LiveTrial(state["models"], state["meter"], record["epochs"])
    return record


PARTIAL = ".partial-"
PARTIAL_GRACE_S = 3600.0


def save_model(model: Any, path: Path) -> None:
    """Save ``model`` to ``path`` atomically: into ``<stem>.partial-<host>-<pid>.keras``
    in the same folder first, flushed to disk (``fsync``), then renamed into place
    (and the folder's entry flushed), so a kill or a power loss during the save
    leaves either the whole model or none (only a partial file, which
    :func:`clean_partial_models` removes)."""
    import socket

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}{PARTIAL}{socket.gethostname()}-{os.getpid()}.keras")
    try:
        model.save(partial)
        _fsync(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, where the system allows it."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) * path.is_dir()
    try:
        handle = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # e.g. a folder on a system that cannot flush one
    finally:
        os.close(handle)


def clean_partial_models(folder: Path, now: float | None = None) -> list[Path]:
    """Remove the partial model files a killed save left in ``folder``: those of dead
    processes on this host, and any older than an hour (a save elsewhere would have
    touched its file since). Returns the removed paths."""
    import socket

    removed = []
    host = socket.gethostname()
    for path in sorted(folder.glob("*.partial*.keras")):
        owner = path.stem.rpartition(PARTIAL)[2]
        where, _, pid = owner.rpartition("-")
        mine_and_dead = where == host and pid.isdigit() and not pid_alive(int(pid))
        try:
            old = (now or time.time()) - path.stat().st_mtime > PARTIAL_GRACE_S
        except FileNotFoundError:
            continue
        if mine_and_dead or old or PARTIAL not in path.name:  # the old .partial.keras
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


