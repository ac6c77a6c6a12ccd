"""``ncp-search sweep``: run a config-driven sweep on Optuna or Ray Tune.

The output folder holds ``sweep.json`` (the validated config, backend and
storage), the study (``study.db`` on the embedded default) or the Ray experiment
(``ray/``), the trained models of complete trials (``models/``) and, at the end,
``summary.json``. A second run into the same folder refuses unless ``--resume``
is given; a resumed sweep keeps every finished trial and runs only what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ncp_search.app.jsonio import write_json
from ncp_search.app.sweep.progress import ProgressLine, TrialStatus
from ncp_search.errors import NCPSearchError

META_FILE = "sweep.json"
SUMMARY_FILE = "summary.json"
# Changing these between a sweep and its resume would mix incomparable trials.
FIXED_ON_RESUME = ("data", "source", "probe", "mode", "search_space", "backend")


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - display only
        return url


def _check_resume(meta_path: Path, config: Mapping[str, Any], resume: bool) -> None:
    if not resume:
        if meta_path.exists():
            raise NCPSearchError(
                f"{meta_path.parent} already holds a sweep; pass --resume to continue it, or "
                "set another output folder (config key output) to start a new one.")
        return
    if not meta_path.exists():
        raise NCPSearchError(f"nothing to resume: {meta_path} does not exist; run the sweep "
                             "without --resume first.")
    old = json.loads(meta_path.read_text(encoding="utf-8"))["config"]
    changed = [key for key in FIXED_ON_RESUME if old.get(key) != config.get(key)]
    if old["budget"]["epochs"] != config["budget"]["epochs"]:
        changed.append("budget.epochs")
    if changed:
        raise NCPSearchError(
            f"cannot resume {meta_path.parent}: the config changed {changed} since the sweep "
            "started; restore them, or start a new sweep in another output folder.")


def _write_meta(meta_path: Path, config: Mapping[str, Any], storage: str | None,
                resume: bool, pruner: str) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if resume and meta_path.exists():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta.update({
        "name": config["name"], "backend": config["backend"], "metric": "val_accuracy",
        "direction": "maximize", "epochs": config["budget"]["epochs"], "pruner": pruner,
        "storage": storage, "study_name": config["optuna"]["study_name"] or config["name"],
        "config": dict(config),
    })
    meta.setdefault("created", datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    meta.setdefault("resumed", [])
    if resume:
        meta["resumed"].append(datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    write_json(meta, meta_path, indent=2)
    return meta


def optuna_status(study: Any) -> list[TrialStatus]:
    """Progress view of an Optuna study's trials."""
    out = []
    for trial in study.get_trials(deepcopy=False):
        out.append(TrialStatus(trial.number, trial.state.name, len(trial.intermediate_values),
                               trial.value if trial.state.name == "COMPLETE" else None))
    return out


def _spawn_workers(study_name: str, storage: str, output: Path, n: int,
                   cache_dir: str | None) -> list[subprocess.Popen]:
    """Start ``n`` worker processes. They read the effective settings from the study
    (:func:`~ncp_search.app.sweep.optuna_backend.publish_run`), get the storage URL
    in the environment (never on the command line, which ``ps`` shows to every user)
    and stop when this process dies."""
    from ncp_search.app.sweep.secrets import STORAGE_ENV

    env = {**os.environ, STORAGE_ENV: storage}
    procs = []
    for worker in range(n):
        command = [sys.executable, "-m", "ncp_search.app.sweep.worker", "--study", study_name,
                   "--output", str(output), "--worker", str(worker),
                   "--parent", str(os.getpid())]
        if cache_dir:
            command += ["--cache-dir", cache_dir]
        # Own session: a terminal's Ctrl-C reaches the driver only, which passes one
        # SIGINT on to each worker (stop at the end of the epoch).
        procs.append(subprocess.Popen(command, start_new_session=True, env=env))
    return procs


def _stop_workers(procs: list[subprocess.Popen], wait_s: float = 300.0) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Optuna marks the running trial FAIL and exits
    end = time.time() + wait_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()


def _run_optuna(config: dict[str, Any], config_path: str, storage: str, output: Path,
                workers: int, resume: bool, deadline: float | None,
                progress: ProgressLine, cache_dir: str | None) -> None:
    import ncp_search.app.sweep.optuna_backend as sweep_optuna

    study = sweep_optuna.open_study(config, storage, create=True)
    sweep_optuna.publish_run(study, config, output, deadline)
    if resume:
        failed = sweep_optuna.fail_dead_local_trials(study)
        if failed:
            progress.stream.write(f"resume: trials {failed} were interrupted; marked FAIL "
                                  "(partial curves kept) and queued to run again\n")
    progress.update(optuna_status(study))
    if workers == 1:
        try:
            sweep_optuna.run_worker(
                config, storage, output, deadline=deadline, cache_dir=cache_dir,
                after_trial=lambda s: progress.update(optuna_status(s)),
                on_epoch=lambda: progress.update(optuna_status(study)))
        finally:
            progress.update(optuna_status(study))
        return
    procs = _spawn_workers(study.study_name, storage, output, workers, cache_dir)
    try:
        while any(proc.poll() is None for proc in procs):
            progress.update(optuna_status(study))
            time.sleep(1.0)
    except KeyboardInterrupt:
        _stop_workers(procs)
        raise
    finally:
        progress.update(optuna_status(study))
    bad = [proc.returncode for proc in procs if proc.returncode not in (0, None)]
    if bad:
        raise NCPSearchError(f"{len(bad)} of {workers} workers exited with errors {bad}; "
                             "finished trials are kept, --resume continues the sweep.")


def run_sweep(
    config_path: str,
    *,
    backend: str | None = None,
    storage: str | None = None,
    workers: int = 1,
    resume: bool = False,
    address: str | None = None,
    cache_dir: str | None = None,
    stream: TextIO | None = None,
    output: str | os.PathLike[str] | None = None,
    trials: int | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    """Run (or resume) the sweep of a config file, write ``summary.json`` and
    ``report.html`` into its output folder, and return the summary.

    Args:
        config_path: the YAML config.
        backend: ``"optuna"`` or ``"ray"`` (default: the config's ``backend``).
        storage: Optuna storage URL (default: the config's, else SQLite in the
            output folder).
        workers: parallel trials (Optuna: worker processes; Ray: concurrent trials).
        resume: continue the sweep already in the output folder.
        address: Ray cluster address (default: the config's ``ray.address``, else
            local Ray).
        cache_dir: model-zoo cache folder.
        stream: where progress goes (default: stderr).
        output: the output folder (default: the config's ``output``).
        trials: override ``budget.trials``.
        epochs: override ``budget.epochs``.

    Raises:
        ncp_search.app.sweep.config.ConfigError: for a bad config.
        NCPSearchError: for a sweep that cannot start or resume.
        KeyboardInterrupt: after stopping cleanly (finished trials are kept).
    """
    from ncp_search.app.sweep.config import load_sweep_config
    from ncp_search.app.sweep.results import load_trials, summarize_sweep

    config = load_sweep_config(config_path)
    if backend is not None:
        config["backend"] = backend
    if output is not None:
        config["output"] = os.fspath(output)
    for key, value in (("trials", trials), ("epochs", epochs)):
        if value is not None:
            if value < 1:
                raise ValueError(f"{key} must be >= 1, but got {key}={value}.")
            config["budget"][key] = value
    if workers < 1:
        raise ValueError(f"workers must be >= 1, but got workers={workers}.")
    output = Path(config["output"])
    output.mkdir(parents=True, exist_ok=True)
    meta_path = output / META_FILE
    _check_resume(meta_path, config, resume)
    budget = config["budget"]
    deadline = time.time() + 60 * budget["minutes"] if budget["minutes"] else None
    progress = ProgressLine(budget["trials"], budget["epochs"], stream)
    url = None
    if config["backend"] == "optuna":
        from ncp_search.app.sweep.optuna_backend import default_storage, describe_pruner

        url = storage or config["optuna"]["storage"] or default_storage(output)
        _write_meta(meta_path, config, _hide_password(url), resume, describe_pruner(config))
        try:
            _run_optuna(config, config_path, url, output, workers, resume, deadline, progress,
                        cache_dir)
        finally:
            progress.close()
    else:
        from ncp_search.app.sweep.ray_backend import describe_scheduler, run_ray_sweep

        if storage is None and resume:  # the Ray storage path the sweep started with
            storage = json.loads(meta_path.read_text(encoding="utf-8")).get("storage")
        _write_meta(meta_path, config, storage, resume, describe_scheduler(config))
        try:
            run_ray_sweep(config, output, workers=workers, resume=resume,
                          address=address or config["ray"]["address"], progress=progress,
                          cache_dir=cache_dir, storage_override=storage)
        finally:
            progress.close()
    meta, records = load_trials(output, storage=url)  # ``trials`` is the budget override
    summary = summarize_sweep(meta, records)
    from ncp_search.app.report.html import write_report

    summary["output"] = str(output)
    summary["report"] = str(write_report(meta, records, output))
    write_json(summary, output / SUMMARY_FILE, indent=2)
    return summary
