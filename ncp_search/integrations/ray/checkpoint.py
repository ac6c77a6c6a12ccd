"""Keras checkpoints for Ray Tune: a trial's whole training state, saved and restored.

A trial that Tune pauses (``NCPScheduler`` with a
:class:`~ncp_search.core.pausing.PausingPolicy`, Tune's ``HyperBandScheduler``) or
restores after a failure starts its trainable again; with a checkpoint it continues
where it stopped instead of from its first epoch. A checkpoint folder holds:

- ``model.keras``: the model with its optimizer state, as ``model.save`` writes it
  (the file Ray's own Keras callback writes; ``keras.models.load_model`` reads it);
- ``training_state.json``: ``{"epoch": n}``, the epochs done, and the states of the
  model's random seed generators (``Dropout`` masks), which ``model.keras`` leaves out.

:func:`keras_checkpoint` writes one for ``tune.report(metrics, checkpoint=...)``
(:class:`ncp_search.NCPTuneCallback` does it each epoch); :func:`restore_keras`
loads the trial's latest one (``tune.get_checkpoint()``) into the freshly built and
compiled model and returns the epoch to pass as ``model.fit(initial_epoch=...)``.
Restored so, a trial reaches the same weights as one that ran on (same seed, tested
with ``Dropout`` and shuffled batches).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ray import tune


def _tune() -> Any:
    """``ray.tune``, imported on first use: :func:`save_keras` and :func:`load_keras`
    need no Ray (the Optuna sweep's ``ncp_pause`` uses them)."""
    try:
        from ray import tune
    except ImportError as error:  # pragma: no cover
        raise ImportError(
            "ncp_search's Ray checkpoints need Ray Tune: pip install 'ncp-search[ray]'"
        ) from error
    return tune

MODEL_FILE = "model.keras"
STATE_FILE = "training_state.json"


def save_keras(model: Any, folder: str | os.PathLike[str], epoch: int) -> None:
    """Write ``model`` (weights, optimizer state, seed generator states) and ``epoch``
    (the epochs done) into ``folder`` in the checkpoint format of this module.

    Raises:
        ValueError: for a negative ``epoch``.
    """
    if int(epoch) < 0:
        raise ValueError(f"epoch must be the number of epochs done (>= 0), but got "
                         f"epoch={epoch}.")
    os.makedirs(folder, exist_ok=True)
    model.save(os.path.join(folder, MODEL_FILE))
    state = {"epoch": int(epoch), "id": uuid.uuid4().hex,  # this checkpoint's identity
             "seed_states": [[int(v) for v in _flat(state)] for state in _seed_states(model)]}
    with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as handle:
        json.dump(state, handle)


@contextlib.contextmanager
def keras_checkpoint(model: Any, epoch: int) -> Iterator[tune.Checkpoint]:
    """A ``ray.tune.Checkpoint`` of ``model`` after ``epoch`` epochs, in a temporary
    folder removed on leaving the block (``tune.report`` has copied it by then).

    Example:
        >>> from ray import tune
        >>> from ncp_search.integrations.ray import keras_checkpoint, restore_keras
        >>> def train(config):  # a Tune function trainable with a loop of its own
        ...     model = build_model(config)  # the user's own compiled model, same seed
        ...     for epoch in range(restore_keras(model), config["epochs"]):
        ...         logs = model.fit(x, y, validation_data=(x_val, y_val), verbose=0,
        ...                          epochs=epoch + 1, initial_epoch=epoch).history
        ...         with keras_checkpoint(model, epoch + 1) as checkpoint:
        ...             tune.report({"val_accuracy": logs["val_accuracy"][-1]},
        ...                         checkpoint=checkpoint)
    """
    folder = tempfile.mkdtemp(prefix="ncp_checkpoint_")
    try:
        save_keras(model, folder, epoch)
        yield cast("tune.Checkpoint", _tune().Checkpoint.from_directory(folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_keras(model: Any, folder: str | os.PathLike[str]) -> int:
    """Load a checkpoint folder written by :func:`save_keras` into ``model`` (built
    and compiled as when it was saved); return the epochs it had done.

    Raises:
        ValueError: when the folder is not such a checkpoint, or ``model`` is not
            compiled or does not match it (the message says what to do).
    """
    path = os.path.join(folder, MODEL_FILE)
    state_path = os.path.join(folder, STATE_FILE)
    if not (os.path.isfile(path) and os.path.isfile(state_path)):
        raise ValueError(
            f"A Keras checkpoint must hold {MODEL_FILE} and {STATE_FILE}, but {folder} holds "
            f"{sorted(os.listdir(folder))}. Report checkpoints with NCPTuneCallback or "
            "ncp_search.integrations.ray.keras_checkpoint(model, epoch).")
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None:
        raise ValueError(
            "restore_keras restores the optimizer state too, so the model must be compiled "
            "first, but it has no optimizer. Call model.compile(...) as the trainable did "
            "before its first checkpoint, then restore_keras(model).")
    if not optimizer.built:  # its moments are created at the first step; load needs them
        optimizer.build(model.trainable_variables)
    model.load_weights(path)
    with open(state_path, encoding="utf-8") as handle:
        state = json.load(handle)
    seeds, saved = _seed_states(model), state.get("seed_states", [])
    if len(seeds) != len(saved):
        raise ValueError(
            f"The checkpoint in {folder} has {len(saved)} random seed generator states, but "
            f"the model has {len(seeds)}: build the model the trainable saved.")
    for variable, values in zip(seeds, saved):
        variable.assign(_shaped(values, variable))
    return int(state["epoch"])


def checkpoint_state(checkpoint: tune.Checkpoint) -> tuple[int, str] | None:
    """``(epochs done, id)`` of a checkpoint of this module, read without loading the
    model (a model kept in memory resumes only in the state of the trial's
    checkpoint); None for a checkpoint without them (another format, or written
    before ids)."""
    with checkpoint.as_directory() as folder:
        try:
            with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as handle:
                state = json.load(handle)
            return int(state["epoch"]), str(state["id"])
        except (OSError, ValueError, KeyError, TypeError):
            return None


def restore_keras(model: Any, checkpoint: tune.Checkpoint | None = None) -> int:
    """Restore the trial's latest checkpoint into ``model``; the epoch to go on from.

    Call it in a Tune function trainable after building and compiling the model
    exactly as before (same seed), and pass the result to ``model.fit(...,
    initial_epoch=...)``: a trial Tune paused or restored continues where it stopped,
    its weights, optimizer state (Adam's moments, the step count its learning-rate
    schedule reads) and ``Dropout`` seed states as they were.

    Args:
        model: the built and compiled Keras model.
        checkpoint: the checkpoint to restore; default ``tune.get_checkpoint()``.

    Returns:
        The epochs the checkpoint had done; 0 (nothing restored) when the trial has
        no checkpoint (its first start).

    Raises:
        ValueError: when the checkpoint was not written by :class:`ncp_search.NCPTuneCallback`
            or :func:`keras_checkpoint`, or the model is not compiled or does not
            match it.

    Example:
        >>> import ncp_search
        >>> from ncp_search.integrations.ray import restore_keras
        >>> def train(config):
        ...     model = build_model(config)  # the user's own compiled model, same seed
        ...     model.fit(x, y, validation_data=(x_val, y_val), epochs=20, verbose=0,
        ...               initial_epoch=restore_keras(model),
        ...               callbacks=[ncp_search.NCPTuneCallback(x_probe, y_probe,
        ...                                                     metrics=["val_accuracy"])])
    """
    if checkpoint is None:
        checkpoint = _tune().get_checkpoint()
    if checkpoint is None:
        return 0
    kept = _KEPT_STATE.pop(id(model), None)
    if kept is not None and kept[0] is model:
        state = checkpoint_state(checkpoint)
        if state is not None and state == kept[1]:
            return state[0]  # kept_model() gave it back in the checkpoint's state: no load
    with checkpoint.as_directory() as folder:
        return load_keras(model, folder)


_KEPT_STATE: dict[int, tuple[Any, tuple[int, str]]] = {}  # id -> (model, checkpoint state)


def kept_model(checkpoint: tune.Checkpoint | None = None) -> Any | None:
    """The model this Ray actor kept when Tune paused the current trial, in the state
    of the trial's checkpoint (the same epochs and checkpoint id), or None: no
    checkpoint, none kept, another state (e.g. PBT replaced the checkpoint), or a
    checkpoint of another format. Build the model as usual then.

    ``NCPTuneCallback(keep_in_memory_mb=...)`` keeps it (see
    :mod:`ncp_search.integrations.ray.kept`). With ``reuse_actors=True`` a resumed trial
    often runs on the actor that paused it (``NCPScheduler(resume_where_paused=True)``
    makes that the rule where it can): it then trains on from the model in memory,
    without building, compiling, loading or tracing again. :func:`restore_keras` given
    this model returns the checkpoint's epochs without loading it.

    Example:
        >>> def train(config):
        ...     model = kept_model() or build_model(config)  # compiled, same seed
        ...     model.fit(x, y, validation_data=(x_val, y_val), epochs=20, verbose=0,
        ...               initial_epoch=restore_keras(model),
        ...               callbacks=[ncp_search.NCPTuneCallback(
        ...                   x_probe, y_probe, metrics=["val_accuracy"],
        ...                   keep_in_memory_mb=512)])
    """
    from ncp_search.integrations.ray.kept import KEPT

    tune_module = _tune()
    if checkpoint is None:
        checkpoint = tune_module.get_checkpoint()
    trial_id = tune_module.get_context().get_trial_id()
    if checkpoint is None or trial_id is None:
        return None
    state = checkpoint_state(checkpoint)
    model = KEPT.take(str(trial_id), state)
    _KEPT_STATE.clear()  # one trial per actor at a time
    if model is not None and state is not None:
        _KEPT_STATE[id(model)] = (model, state)
    return model


def _seed_states(model: Any) -> list[Any]:
    """The model's random seed generator states, in a fixed order: the variables
    ``model.variables`` holds beyond its weights (``model.keras`` leaves them out)."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _flat(variable: Any) -> list[Any]:
    import numpy as np

    return np.asarray(variable).ravel().tolist()


def _shaped(values: list[int], variable: Any) -> Any:
    import numpy as np

    return np.asarray(values, dtype=variable.dtype).reshape(tuple(variable.shape))
