"""Record complete trials of a workload as a table of runs (JSON lines).

``python -m research record CONFIG`` reads a workload config (YAML), samples its trial
configurations with a fixed seed, fine-tunes each one for all its epochs, and
appends one JSON object per trial and mode to the output file::

    {"trial": "t007-observer", "config": {...}, "curve": [
        {"step": 0, "val_accuracy": ..., "train_loss": null, "beta_eff": ..., ...},
        {"step": 1, "val_accuracy": ..., "train_loss": ..., "beta_eff": ..., ...}, ...],
     "final_val_accuracy": ...}

Step 0 is measured before training. Every line is flushed as soon as the trial
ends, so an interrupted recording loses at most the trial in progress; running the
same command again skips trials already in the file. NaN is written as ``null``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ncp_search.app.jsonio import read_jsonl as read_table  # noqa: F401 (research API)
from ncp_search.app.jsonio import strict_json
from ncp_search.app.search_space import sample_configs, validate_space
from ncp_search.core.history import probe_series
from ncp_search.errors import NCPSearchError

REQUIRED = ("name", "target", "trials", "epochs", "search_space")
OPTIONAL: dict[str, Any] = {
    "source_model": "cnn_small",
    "source": "fashion_mnist:0-4",
    "source_epochs": 3,
    "n_train": None,
    "n_val": None,
    "modes": ["observer", "probe_head"],
    "probe": {"hidden": [64, 64, 64], "batch": 256, "seed": 0},
    "seed": 0,
    "description": "",
    "extra_probes": [],
}


def load_workload(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a workload config (YAML, safe loader)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{path}: a workload config must be a mapping at the top level.")
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise ValueError(f"{path}: missing required keys {missing}.")
    unknown = set(raw) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        raise ValueError(
            f"{path}: unknown keys {sorted(unknown)}; allowed: "
            f"{sorted(set(REQUIRED) | set(OPTIONAL))}."
        )
    config = {**OPTIONAL, **raw}
    config["probe"] = {**OPTIONAL["probe"], **(raw.get("probe") or {})}
    for key in ("trials", "epochs"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ValueError(f"{path}: {key} must be a positive integer, got {config[key]!r}.")
    validate_space(config["search_space"], where=f"{path}: search_space")
    for position, extra in enumerate(config["extra_probes"]):
        if not isinstance(extra, Mapping) or set(extra) - {"name", "hidden", "seed"} or not (
            isinstance(extra.get("name"), str) and isinstance(extra.get("hidden"), list)
        ):
            raise ValueError(
                f"{path}: extra_probes[{position}] must be {{name: str, hidden: [int, ...], "
                f"seed: int}}, but got {extra!r}."
            )
    return config


def _measure(meters: dict[str, Any]) -> dict[str, Any]:
    """Terms of the main probe (key ``""``) and ``beta_eff<suffix>`` of the others."""
    out: dict[str, Any] = {}
    for suffix, meter in meters.items():
        started = time.perf_counter()
        terms = meter().as_dict()
        if suffix:
            out[f"beta_eff{suffix}"] = terms["beta_eff"]
            continue
        out["beta_eff_seconds"] = time.perf_counter() - started
        out["beta_eff"] = terms["beta_eff"]
        out.update(probe_series(terms))
    return out


def run_trial(
    workload: Mapping[str, Any],
    config: Mapping[str, Any],
    *,
    mode: str,
    task: Any,
    trial_seed: int,
    cache_dir: str | None = None,
) -> dict[str, Any]:
    """Fine-tune one configuration for all epochs and return its curve (through the
    package's trial runner, :func:`ncp_search.engine.finetune.fine_tune`)."""
    import keras

    from ncp_search.app.zoo import load_source_model
    from ncp_search.engine.capacitance import BetaEffMeter
    from ncp_search.engine.finetune import EpochEnd, TrialModels, fine_tune, observer_probe

    keras.backend.clear_session()
    source = load_source_model(
        config.get("source_model", workload["source_model"]),
        source=workload["source"],
        epochs=workload["source_epochs"],
        cache_dir=cache_dir,
    )
    probe = workload["probe"]
    n_probe = min(int(probe["batch"]), len(task.y_train) // 2)
    xa, ya = task.probe_batch(n_probe, seed=int(probe["seed"]))
    xb, yb = task.probe_batch(n_probe, seed=int(probe["seed"]) + 1)
    meters: dict[str, Any] = {}
    curve: list[dict[str, Any]] = []

    def step_zero(models: TrialModels) -> None:
        meters[""] = BetaEffMeter(models.probed, xa, ya)
        meters["_batch2"] = BetaEffMeter(models.probed, xb, yb)
        for extra in workload.get("extra_probes", []):
            # Extra probes only observe the same features (they never change training).
            extra_probe = observer_probe(source, task.num_classes, hidden=tuple(extra["hidden"]),
                                         seed=int(extra.get("seed", 0)))
            meters[f"@{extra['name']}"] = BetaEffMeter(extra_probe, xa, ya)
        val_loss, val_acc = models.trained.evaluate(task.x_val, task.y_val, verbose=0)
        curve.append({"step": 0, "val_accuracy": val_acc, "val_loss": val_loss,
                      "train_loss": None, "train_accuracy": None, "learning_rate": None,
                      **_measure(meters)})

    def on_epoch(end: EpochEnd) -> None:
        optimizer = end.models.trained.optimizer
        curve.append({
            "step": end.epoch + 1,
            "val_accuracy": end.logs["val_accuracy"],
            "val_loss": end.logs["val_loss"],
            "train_loss": end.logs["loss"],
            "train_accuracy": end.logs["accuracy"],
            "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            "epoch_seconds": end.train_seconds,
            **_measure(meters),
        })

    started = time.perf_counter()
    fine_tune(source, task, config, epochs=int(workload["epochs"]), trial_seed=trial_seed,
              on_epoch=on_epoch, mode=mode, hidden=tuple(probe["hidden"]),
              probe_seed=int(probe["seed"]), on_built=step_zero)
    return {
        "curve": curve,
        "final_val_accuracy": curve[-1]["val_accuracy"],
        "seconds": time.perf_counter() - started,
    }


def _lock(handle: Any, path: Any) -> None:
    """One writer per table: a second recorder on the same file stops at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise NCPSearchError(
            f"{path} is being written by another `python -m research record`; wait for it or "
            "record into another file."
        ) from None


def record(
    config_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    trials: int | None = None,
    epochs: int | None = None,
    modes: list[str] | None = None,
    cache_dir: str | None = None,
    progress: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """Record a workload's trials into ``out_path`` (appending; resumes where it stopped).

    Args:
        config_path: the workload config (YAML).
        out_path: the JSON-lines table to append to.
        trials: override the config's number of trials (a prefix of the same draws).
        epochs: override the config's number of epochs.
        modes: override the config's modes.
        cache_dir: model-zoo cache folder.
        progress: callable receiving one line per finished trial.

    Returns:
        All runs in the table after recording.
    """
    from ncp_search.app.data import load_task

    workload = load_workload(config_path)
    if epochs is not None:
        workload["epochs"] = epochs
    n_trials = trials or workload["trials"]
    chosen_modes = modes or workload["modes"]
    configs = sample_configs(workload["search_space"], workload["trials"], workload["seed"])
    configs = configs[:n_trials]
    sizes = {k: workload[k] for k in ("n_train", "n_val") if workload[k] is not None}
    task = load_task(workload["target"], seed=workload["seed"], **sizes)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda _line: None)
    with open(out_path, "a", encoding="utf-8") as handle:
        _lock(handle, out_path)
        done = {run["trial"] for run in read_table(out_path)}
        for index, config in enumerate(configs):
            for mode in chosen_modes:
                trial_id = f"t{index:03d}-{mode}"
                if trial_id in done:
                    continue
                result = run_trial(
                    workload, config, mode=mode, task=task,
                    trial_seed=workload["seed"] * 100_003 + index, cache_dir=cache_dir,
                )
                run = {
                    "trial": trial_id,
                    "config": {**config, "mode": mode, "index": index},
                    "workload": workload["name"],
                    "curve": result["curve"],
                    "final_val_accuracy": result["final_val_accuracy"],
                }
                handle.write(json.dumps(strict_json(run), allow_nan=False) + "\n")
                handle.flush()
                say(
                    f"[{workload['name']}] {trial_id} ({index + 1}/{len(configs)}): final val "
                    f"acc {result['final_val_accuracy']:.4f} in {result['seconds']:.0f} s"
                )
    return read_table(out_path)
