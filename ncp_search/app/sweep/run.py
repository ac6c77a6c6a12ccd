"""``ncp-search sweep``: run a config-driven sweep on Optuna or Ray Tune.

The output folder holds ``sweep.json`` (the validated config, backend and
storage, its password masked), the study (``study.db`` on the embedded default)
or the Ray experiment (``ray/``), the trained models of complete trials
(``models/``) and, at the end, ``summary.json``; every one of these files is
written atomically (a temporary file renamed into place), so a kill never leaves
half a file.

Nothing is written before the whole config (with the command line's overrides)
and the storage URL pass validation (:mod:`ncp_search.app.sweep.config`). A
second run into a folder whose sweep ran trials refuses unless ``--resume`` is
given; a folder left by a start that ran no trial is not a sweep, and is reused
(with or without ``--resume``). A resumed sweep keeps every finished trial and
runs only what is left.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ncp_search.app.jsonio import write_json
from ncp_search.app.sweep.folder import (
    META_FILE,
    TUNER_DIGEST,
    IdentityError,
    check_ray_experiment,
    check_study,
    check_tuner_pickle,
    read_meta,
    refuse_symlinks,
    resolve_ray_storage,
)
from ncp_search.app.sweep.progress import (
    ProgressLine,
    TrialStatus,
    resume_starts,
    trial_seconds,
)
from ncp_search.app.sweep.results import RAY_TRIALS_FILE, read_ray_records
from ncp_search.app.sweep.secrets import STORAGE_ENV, hide, mask_url, masked_logs, secrets_of
from ncp_search.app.sweep.trial import check_live_bytes
from ncp_search.errors import NCPSearchError
from ncp_search.integrations import registry

SUMMARY_FILE = "summary.json"
# Changing these between a sweep and its resume would mix incomparable trials.
FIXED_ON_RESUME = ("data", "source", "probe", "mode", "search_space", "backend")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _masked_config(config: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(config)
    out["optuna"] = {**config["optuna"], "storage": mask_url(config["optuna"]["storage"])}
    return out


def _load_study(url: str, name: str) -> Any:
    """The study ``name`` in ``url`` (None: no such study, or no SQLite file yet)."""
    match = re.match(r"^sqlite(?:\+\w+)?:///(.*)$", url)
    if match and not Path(match[1]).exists():
        return None
    import optuna

    from ncp_search.app.sweep.optuna_backend import open_storage

    try:
        return optuna.load_study(study_name=name, storage=open_storage(url))
    except KeyError:
        return None


def _ran_trials(meta: Mapping[str, Any], output: Path, url: str | None) -> bool:
    """Whether the sweep recorded in ``meta`` ran any trial (a start that failed
    before its first trial left no sweep).

    Raises:
        IdentityError: its storage holds trials of another sweep.
    """
    if meta.get("backend") == "ray":
        if read_ray_records(output / RAY_TRIALS_FILE):
            return True
        storage = resolve_ray_storage(meta.get("storage"), output)
        return "://" not in storage and (Path(storage) / str(meta.get("name"))).is_dir()
    if url is None:
        return False
    study = _load_study(url, str(meta.get("study_name")))
    if study is None or not study.get_trials(deepcopy=False):
        return False
    check_study(study, meta, output)
    return True


def _refuse_foreign_study(config: Mapping[str, Any], url: str | None) -> None:
    """A new sweep never joins a study that already ran trials (another sweep's)."""
    if config["backend"] != "optuna" or url is None:
        return
    name = config["optuna"]["study_name"] or config["name"]
    study = _load_study(url, name)
    if study is not None and study.get_trials(deepcopy=False):
        raise IdentityError(
            f"the storage {mask_url(url)} already holds a study named {name!r} with trials, "
            "and no sweep.json in the output folder describes it (another sweep's, or its "
            "folder was moved); resume it from its own output folder, or set another "
            "optuna.study_name (or name) for a new sweep.")


def _previous_sweep(meta: dict[str, Any] | None, meta_path: Path, config: Mapping[str, Any],
                    url: str | None, resume: bool, stream: TextIO) -> dict[str, Any] | None:
    """The ``sweep.json`` of the sweep this run continues (None: a fresh start).

    Raises:
        NCPSearchError: a sweep that ran trials is there and ``resume`` is False; a
            resume that changes what must not change; a folder of the other backend.
            (``resume`` with no ``sweep.json`` is refused before, by the caller, which
            then makes no folder.)
        IdentityError: the folder's storage holds another sweep.
    """
    if meta is None:
        _refuse_foreign_study(config, url)
        return None
    if meta["backend"] != config["backend"]:
        raise NCPSearchError(
            f"{meta_path.parent} holds a sweep of backend {meta['backend']!r} (sweep.json); a "
            f"{config['backend']!r} sweep cannot use it: run with --backend "
            f"{meta['backend']} (add --resume to continue it), or set another output folder "
            "(config key output, or --output).")
    if not _ran_trials(meta, meta_path.parent, url):
        _refuse_foreign_study(config, url)
        stream.write(f"note: {meta_path.parent} holds a sweep that ran no trial (a start that "
                     "failed); starting it afresh\n")
        return None
    if not resume:
        raise NCPSearchError(
            f"{meta_path.parent} already holds a sweep; pass --resume to continue it, or "
            "set another output folder (config key output, or --output) to start a new one.")
    old = meta["config"]
    changed = [key for key in FIXED_ON_RESUME if old.get(key) != config.get(key)]
    if (old.get("budget") or {}).get("epochs") != config["budget"]["epochs"]:
        changed.append("budget.epochs")
    if changed:
        raise NCPSearchError(
            f"cannot resume {meta_path.parent}: the config changed {changed} since the sweep "
            "started; restore them, or start a new sweep in another output folder.")
    _same_kind_of_choice(old, config, meta_path.parent)
    return meta


def _choice_it_ran(config_path: str | os.PathLike[str], config: Any) -> str | None:
    """The pruner or scheduler name a resumed sweep ran, when the config file names
    none and its default is another (the default changed with the release, or with
    ``budget.minutes``); else None. A folder without a readable ``sweep.json`` gives
    None: the resume's own checks say what is wrong."""
    from ncp_search.app.sweep.config import as_config, read_yaml

    section = registry.SECTIONS[config["backend"]]
    raw = read_yaml(config_path)
    named = raw.get(section) if isinstance(raw, Mapping) else None
    if isinstance(named, Mapping) and named.get("name") is not None:
        return None
    meta_path = Path(config["output"]) / META_FILE
    if not meta_path.is_file():
        return None
    try:
        meta = read_meta(meta_path)
        stored = meta["config"]
        if stored.get("backend", meta.get("backend")) != config["backend"]:
            return None  # refused later, with its own message
        name = as_config(stored).choice.name
    except (NCPSearchError, KeyError, TypeError, ValueError, AttributeError):
        return None
    return name if name != config.choice.name else None


def _same_kind_of_choice(old: Mapping[str, Any], config: Mapping[str, Any],
                         folder: Path) -> None:
    """A resume may change the pruner or scheduler, but not between pausing and
    killing: a pausing policy rebuilds its brackets from the sweep's trials, which
    another rule ran (and the other way round, paused trials would never resume).

    Raises:
        NCPSearchError: one of the two choices pauses and the other does not."""
    from ncp_search.app.sweep.config import as_config

    now = as_config(config).choice
    try:
        ran = as_config(old).choice
    except (KeyError, TypeError, ValueError):  # a damaged stored choice: the backend's
        return  # own checks of the study decide (fail open)
    if (ran.rule == "pause") == (now.rule == "pause"):
        return
    section = registry.SECTIONS[config["backend"]]
    raise NCPSearchError(
        f"cannot resume {folder}: it ran {section} {ran.name}, and this config's {section} "
        f"is {now.name}; a sweep cannot switch between pausing and stopping "
        f"trials part-way: set {section}: {{name: {ran.name}}} to resume it, or start a new "
        "sweep in another output folder.")


def _write_meta(meta_path: Path, config: Mapping[str, Any], storage: str | None,
                previous: Mapping[str, Any] | None, pruner: str,
                warnings: list[str]) -> dict[str, Any]:
    from ncp_search.app.sweep.folder import (
        PAUSE_SETTINGS,
        new_id,
        record_ray_storage,
        record_storage,
    )

    folder = meta_path.parent
    stored = (record_storage(storage, folder) if config["backend"] == "optuna"
              else record_ray_storage(storage, folder))
    meta: dict[str, Any] = dict(previous or {})
    meta.update({
        "name": config["name"], "backend": config["backend"], "metric": "val_accuracy",
        "direction": "maximize", "epochs": config["budget"]["epochs"], "pruner": pruner,
        "storage": mask_url(stored),
        "study_name": config["optuna"]["study_name"] or config["name"],
        "config": _masked_config(config), "warnings": list(warnings),
        "num_classes": _num_classes(config["data"]["target"]),
    })
    if not meta.get("id"):  # a new sweep, or one from before sweep ids
        meta["id"] = new_id()
    if previous is None and _pausing(config):  # its rungs, for a resume and the report
        meta[PAUSE_SETTINGS] = _pause_settings(config)
    meta.setdefault("created", _now())
    meta["resumed"] = list(meta.get("resumed", []))
    if previous is not None:
        meta["resumed"].append(_now())
    write_json(meta, meta_path, indent=2)
    return meta


def _pausing(config: Mapping[str, Any]) -> bool:
    from ncp_search.app.sweep.config import as_config

    return as_config(config).choice.rule == "pause"  # as the backends tell


def _pause_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    from ncp_search.core.pausing import auto_keep_min

    trials = int(config["budget"]["trials"])
    return {"reduction_factor": registry.PAUSE_REDUCTION_FACTOR,
            "keep_min": auto_keep_min(trials), "keep_ties": True}


def _num_classes(target: str) -> int:
    from ncp_search.app.data import _parse_spec

    classes = _parse_spec(target)[1]
    return len(set(classes)) if classes else 10


def _storage_url(storage: str | None, config: Mapping[str, Any]) -> str | None:
    """The Optuna storage URL in effect: ``--storage``, else ``$NCP_SEARCH_STORAGE``,
    else the config's ``optuna.storage`` (None: the default SQLite file); checked."""
    from ncp_search.app.sweep.config import check_storage_url

    if storage is not None:
        check_storage_url(storage, "command line", "--storage")
        return storage
    env = os.environ.get(STORAGE_ENV)
    if env:
        check_storage_url(env, "environment", STORAGE_ENV)
        return env
    return config["optuna"]["storage"]


@contextlib.contextmanager
def _secrets_kept(url: str | None) -> Iterator[None]:
    """Mask ``url``'s password in log records, and in the message of any error that
    leaves this block (re-raised as NCPSearchError)."""
    secrets = secrets_of(url)
    with masked_logs(url):
        try:
            yield
        except Exception as error:
            text = str(error)
            if secrets and hide(text, secrets) != text:
                raise NCPSearchError(hide(text, secrets)) from None
            raise


def optuna_status(study: Any) -> list[TrialStatus]:
    """Progress view of an Optuna study's trials."""
    from ncp_search.app.sweep.optuna_backend import EPOCH_SECONDS_ATTR
    from ncp_search.integrations.optuna.pausing import PAUSED_ATTR, configurations

    out = []
    for chain in configurations(study.get_trials(deepcopy=False)):  # ncp_pause: joined
        trial, times = chain[-1], [trial_seconds(t) for t in chain]
        out.append(TrialStatus(chain[0].number, trial.state.name,
                               sum(len(t.intermediate_values) for t in chain),
                               trial.value if trial.state.name == "COMPLETE" else None,
                               None if None in times else sum(t or 0.0 for t in times),
                               tuple(v for t in chain
                                     for v in t.user_attrs.get(EPOCH_SECONDS_ATTR, ())),
                               paused=PAUSED_ATTR in trial.user_attrs,
                               last=_last_value(chain), resumed_at=resume_starts(
                                   len(t.intermediate_values) for t in chain)))
    return out


def _last_value(chain: list[Any]) -> float | None:
    """The latest value a configuration's trials reported (None before any)."""
    for trial in reversed(chain):
        if trial.last_step is not None:
            return float(trial.intermediate_values[trial.last_step])
    return None


PROGRESS_EVERY_S = 1.0
"""The progress line (which reads every trial of the study) is redrawn at most this
often while trials run (and once at the end), so its cost per trial does not grow
with the study."""


def _throttled(call: Callable[[], Any], every_s: float) -> Callable[[], None]:
    """``call``, skipped when the previous run was less than ``every_s`` ago."""
    last = [-math.inf]

    def run() -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            call()

    return run


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


def _run_optuna(config: Mapping[str, Any], storage: str, output: Path,
                workers: int, resume: bool, deadline: float | None,
                progress: ProgressLine, cache_dir: str | None, sweep_id: str) -> None:
    import ncp_search.app.sweep.optuna_backend as sweep_optuna

    study = sweep_optuna.open_study(config, storage, create=True)
    sweep_optuna.publish_run(study, config, output, deadline, sweep_id)
    if resume:
        failed = sweep_optuna.fail_dead_local_trials(study)
        if failed:
            progress.stream.write(f"resume: trials {failed} were interrupted; marked FAIL "
                                  "(partial curves kept) and queued to run again\n")
    progress.update(optuna_status(study))
    if workers == 1:
        redraw = _throttled(lambda: progress.update(optuna_status(study)), PROGRESS_EVERY_S)
        try:
            sweep_optuna.run_worker(
                config, storage, output, deadline=deadline, cache_dir=cache_dir,
                after_trial=lambda _study: redraw(), on_epoch=redraw)
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

    if workers < 1:
        raise ValueError(f"workers must be >= 1, but got workers={workers}.")
    warnings: list[str] = []
    overrides: dict[str, tuple[Any, str]] = {
        "backend": (backend, "--backend"), "output": (
            None if output is None else os.fspath(output), "--output"),
        "budget.trials": (trials, "--trials"), "budget.epochs": (epochs, "--epochs"),
    }
    config = load_sweep_config(config_path, overrides=overrides, warnings=warnings)
    ran = _choice_it_ran(config_path, config) if resume else None
    if ran is not None:  # the file names no choice: the sweep goes on with the one it ran
        warnings = []
        config = load_sweep_config(config_path, overrides={
            **overrides, f"{registry.SECTIONS[config['backend']]}.name": (
                ran, "the sweep being resumed (its sweep.json)")}, warnings=warnings)
    url = _storage_url(storage, config) if config["backend"] == "optuna" else None
    check_live_bytes(config)
    stream = stream or sys.stderr
    for warning in warnings:
        stream.write(f"warning: {warning}\n")
    # Everything is validated: from here on files are written.
    with _secrets_kept(url or storage):
        return _run(config, storage, url, workers, resume, address, cache_dir, stream,
                    warnings)


RAY_CONNECT_TIMEOUT_S = 10.0
"""Seconds a Ray cluster address may take to accept a connection."""


def check_ray_address(address: str | None, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Refuse a Ray cluster address that does not accept a connection within
    ``timeout_s`` (Ray itself retries for minutes). ``None``, ``auto`` and ``local``
    are left to Ray.

    Raises:
        NCPSearchError: the address is not ``[ray://]host:port`` or is not reachable.
    """
    import socket

    if not address or address in ("auto", "local"):
        return
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not port.isdigit() or not host:
        raise NCPSearchError(f"the Ray address must be host:port or ray://host:port, but got "
                             f"{address!r}; fix ray.address (or --address).")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise NCPSearchError(
            f"cannot reach the Ray cluster at {address} within {timeout_s:g} s "
            f"({error.strerror or error}); start it (ray start --head), or fix ray.address "
            "(or --address), or leave it null for a local Ray.") from None


def _run(config: Mapping[str, Any], storage: str | None, url: str | None, workers: int,
         resume: bool, address: str | None, cache_dir: str | None, stream: TextIO,
         warnings: list[str]) -> dict[str, Any]:
    from ncp_search.app.sweep.results import load_trials, summarize_sweep

    started = time.monotonic()  # the sweep's wall clock, printed apart from trial time
    output = Path(config["output"])
    refuse_symlinks(output)
    if config["backend"] == "ray":
        check_ray_address(address or config["ray"]["address"])
    if url is not None and not url.startswith("sqlite"):
        from ncp_search.app.sweep.optuna_backend import check_storage

        check_storage(url)  # reachable: nothing is written before
    meta_path = output / META_FILE
    old_meta = read_meta(meta_path) if meta_path.exists() or meta_path.is_symlink() else None
    if resume and old_meta is None:  # before the folder is made: a mistyped path makes none
        raise NCPSearchError(f"nothing to resume: {meta_path} does not exist; run the sweep "
                             "without --resume first.")
    output.mkdir(parents=True, exist_ok=True)
    if config["backend"] == "optuna" and url is None:
        from ncp_search.app.sweep.optuna_backend import default_storage

        url = default_storage(output)
    ray_storage = storage
    if config["backend"] == "ray" and storage is None and old_meta is not None and resume:
        # the folder the sweep started with, found where the folder is now
        ray_storage = resolve_ray_storage(old_meta.get("storage"), output)
    previous = _previous_sweep(old_meta, meta_path, config, url, resume, stream)
    resume = previous is not None
    if previous is not None and config["backend"] == "ray":
        experiment = Path(ray_storage or resolve_ray_storage(None, output)) / config["name"]
        if "://" not in str(ray_storage or ""):
            check_ray_experiment(experiment, previous, output)  # before anything is written
            check_tuner_pickle(experiment, previous)
    if resume:
        from ncp_search.app.sweep.trial import clean_partial_models

        removed = clean_partial_models(output / "models")
        if removed:
            stream.write(f"resume: removed {len(removed)} partial model file(s) left by an "
                         "interrupted save\n")
    budget = config["budget"]
    deadline = time.time() + 60 * budget["minutes"] if budget["minutes"] else None
    progress = ProgressLine(budget["trials"], budget["epochs"], stream,
                            pausing=_pausing(config))
    if config["backend"] == "optuna":
        from ncp_search.app.sweep.optuna_backend import describe_pruner

        assert url is not None
        meta = _write_meta(meta_path, config, url, previous, describe_pruner(config), warnings)
        try:
            _run_optuna(config, url, output, workers, resume, deadline, progress, cache_dir,
                        meta["id"])
        finally:
            progress.close()
    else:
        from ncp_search.app.sweep.ray_backend import describe_scheduler, run_ray_sweep

        meta = _write_meta(meta_path, config, ray_storage, previous, describe_scheduler(config),
                           warnings)
        try:
            run_ray_sweep(config, output, workers=workers, resume=resume,
                          address=address or config["ray"]["address"], progress=progress,
                          cache_dir=cache_dir, storage_override=ray_storage, sweep_meta=meta,
                          on_created=lambda digest: write_json(
                              {**meta, TUNER_DIGEST: digest}, meta_path, indent=2))
        finally:
            progress.close()
    meta, records = load_trials(output, storage=url)
    summary = summarize_sweep(meta, records)
    from ncp_search.app.report.html import write_report

    summary["output"] = str(output)
    summary["report"] = str(write_report(meta, records, output))
    summary["wall_seconds"] = time.monotonic() - started
    write_json(summary, output / SUMMARY_FILE, indent=2)
    return summary
