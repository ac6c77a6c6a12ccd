"""The Optuna backend of ``ncp-search sweep``: studies, workers, resume.

Storage: the config's ``optuna.storage`` or ``--storage`` (e.g.
``postgresql://user@host/db`` shared by workers on several machines), else a
SQLite file ``study.db`` in the output folder (the embedded default).

Settings: the driver (``ncp-search sweep``) stores the effective settings of
each run (the validated config with the command line's overrides, the output
folder and the ``budget.minutes`` deadline) in the study's user attribute
:data:`SWEEP_ATTR` (:func:`publish_run`); every worker reads them from there
(:func:`read_run`), never from the YAML, so ``--trials`` and ``--epochs`` hold
for every worker, also for workers started by hand on other machines.

Budget: every worker runs one trial at a time through
``study.optimize(n_trials=1)`` while fewer than ``budget.trials`` trials are
COMPLETE, PRUNED or RUNNING (or until ``budget.minutes`` pass), so a killed
worker loses at most its running trial. Workers sharing an output folder on one
host check the budget and create their trial under a file lock
(:data:`BUDGET_LOCK`), so they never start more than ``budget.trials`` trials;
a worker started elsewhere (another host or output folder) checks the budget
before each trial, so each such worker can start at most one trial over it. A
worker that finds the budget used waits while other trials still run (one may
fail and free its slot) and exits when none does.

Each trial records its worker (``host:pid``), its seed (``ncp_seed``) and a
heartbeat: a trial left RUNNING by a dead worker is marked FAIL (on this host at
once, by any worker or when the sweep is resumed; elsewhere once its heartbeat is
``optuna.stale_after_s`` old, 120 s by default, through Optuna's heartbeat check),
keeping its partial curve, and its configuration is queued to run again from the
start as a new trial (user attribute ``retry_of``) with the same seed, so it trains
the same model. A RUNNING trial that no worker owns (no worker attribute, so no
heartbeat either: a notebook's ``study.ask()``, a process killed before its
objective started) is failed and queued the same way once it started
``optuna.stale_after_s`` ago, so it never holds ``--resume``. Completed trials are
never run again.

``pruner: {name: ncp_pause}`` (the default of a config that names no pruner): the
study's pruner never prunes (a ``DrivenPruner`` that names the policy) and
:func:`run_pausing` drives each worker instead of ``study.optimize`` (ask and tell,
a driver rebuilt from the study under the same lock before each trial, so all workers
follow one policy; a heartbeat as
``optimize`` keeps): a trial that pauses at a rung saves a checkpoint under
:data:`CHECKPOINTS` and ends PRUNED; a promoted configuration continues as a new trial
that loads it (user attribute ``ncp_resumes``). A stale trial of a chain is failed and
queued again as above, keeping its ``ncp_resumes``. Checkpoints live in the output
folder, so workers on other machines must share it (as they share the budget lock).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ncp_search.app.search_space import suggest
from ncp_search.app.sweep.folder import pause_rungs
from ncp_search.app.sweep.hosts import pid_alive, this_process
from ncp_search.app.sweep.seeds import trial_seed
from ncp_search.app.sweep.trial import (
    EpochInfo,
    LiveTrial,
    SweepData,
    live_bytes,
    run_trial,
    trim_live,
)
from ncp_search.errors import NCPSearchError
from ncp_search.integrations.optuna.pausing import RESUMES_ATTR
from ncp_search.integrations.optuna.reporting import (
    prune_message,
    record_decision,
    report_beta_eff,
)

logger = logging.getLogger(__name__)
WORKER_ATTR = "ncp_worker"
MODEL_ATTR = "ncp_model_path"
RETRY_ATTR = "retry_of"
SEED_ATTR = "ncp_seed"
"""Trial user attribute: the seed of the trial's weights and data order (a retry of a
killed trial reads it back, so it trains the same model)."""
DIVERGED_ATTR = "ncp_diverged"
"""Trial user attribute: why a PRUNED trial counts as diverged (trial.divergence)."""
EPOCH_SECONDS_ATTR = "ncp_epoch_seconds"
"""Trial user attribute: the wall time of each epoch, beta_eff measurement included."""
SWEEP_ATTR = "ncp_sweep"
"""Study user attribute: the effective settings of the current run of the sweep."""
BUDGET_LOCK = ".budget.lock"
"""File in the output folder that local workers lock to check the budget."""
WAIT_S = 2.0  # a worker with no budget left polls this often while others run
GC_AFTER_TRIAL = False
"""No full garbage collection after each trial: with TensorFlow loaded its cost grows
with the heap (0.45 s -> 1.45 s a trial over 150 trials); Python's own collector
already runs a full pass when the long-lived objects grow by a quarter, which keeps
the cost per trial flat (benchmarks/sweep_overhead.py)."""
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
HEARTBEAT_S = 10
GRACE_S = 120


def default_storage(output: str | os.PathLike[str]) -> str:
    """The embedded default: a SQLite file in the output folder."""
    return f"sqlite:///{Path(output).resolve() / 'study.db'}"


def make_pruner(config: Mapping[str, Any]) -> optuna.pruners.BasePruner:
    """The pruner a validated config names (:mod:`ncp_search.integrations.registry`;
    epochs are reported from 0)."""
    from ncp_search.app.sweep.config import as_config

    typed = as_config(config)
    if typed.choice.rule == "pause":  # the pausing driver decides; the study never prunes
        return _driven(typed.choice)
    pruner: optuna.pruners.BasePruner = typed.choice.make(typed.budget.epochs)
    return pruner


def _driven(choice: Any) -> optuna.pruners.BasePruner:
    """The study's pruner under ``ncp_pause``: never prunes, and says what decides."""
    from ncp_search.core.predictors import PREDICTORS
    from ncp_search.integrations.optuna.pausing import DrivenPruner

    predictor = choice.settings["predictor"]  # validated: a registered name
    uses = PREDICTORS[predictor].uses_beta_eff
    reads = "uses beta_eff" if uses else (
        "does not use beta_eff: the decisions come from the reported values alone")
    return DrivenPruner(
        f"{choice.describe()} decides: every trial of the bracket trains to a rung and "
        f"pauses there with a checkpoint; once the rung is full, the best by predicted "
        f"final resume to the next rung and the others stay paused (the study's own "
        f"pruner never prunes); predictor {predictor!r} {reads}.", uses)


def is_pausing(config: Mapping[str, Any]) -> bool:
    """Whether the config's pruner pauses (``ncp_pause``: :func:`run_pausing` drives it)."""
    from ncp_search.app.sweep.config import as_config

    return as_config(config).choice.rule == "pause"


def describe_pruner(config: Mapping[str, Any]) -> str:
    """The pruner and its settings in one line (for logs and reports)."""
    from ncp_search.app.sweep.config import as_config

    return as_config(config).choice.describe()


def make_sampler(config: Mapping[str, Any], worker: int,
                 existing: int = 0) -> optuna.samplers.BaseSampler:
    """A seeded sampler. Each worker, and each start of a resumed sweep (``existing``
    trials already in the study), gets its own seed: otherwise a resumed sweep would
    draw the same first configurations again."""
    from ncp_search.app.sweep.seeds import sampler_seed

    seed = sampler_seed(int(config["seed"]), worker, existing)  # in [0, 2**32 - 1]
    if config["optuna"]["sampler"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)


def _retry(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue a failed (stale) trial's configuration once as a new trial."""
    if trial.user_attrs.get(RETRY_ATTR) is not None:
        return  # already a retry: do not loop on a configuration that kills workers
    attrs: dict[str, Any] = {RETRY_ATTR: trial.number}
    if isinstance(trial.user_attrs.get(SEED_ATTR), int):
        attrs[SEED_ATTR] = trial.user_attrs[SEED_ATTR]  # the retry trains the same model
    if isinstance(trial.user_attrs.get(RESUMES_ATTR), int):  # ncp_pause: resume it again
        attrs[RESUMES_ATTR] = trial.user_attrs[RESUMES_ATTR]
    study.enqueue_trial(trial.params, user_attrs=attrs)


CONNECT_TIMEOUT_S = 10
"""Seconds a PostgreSQL or MySQL storage may take to accept a connection."""


def open_storage(url: str, grace_s: int = GRACE_S) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats (SQLite waits for locks instead of failing; a
    server storage gives up connecting after :data:`CONNECT_TIMEOUT_S`).

    Raises:
        NCPSearchError: the storage cannot be opened (one line, password masked).
    """
    import sqlalchemy.exc

    if url.startswith("sqlite"):
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}}
    elif url.startswith(("postgresql", "mysql")) and "connect_timeout" not in url:
        engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    else:
        engine_kwargs = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                grace_period=int(grace_s), heartbeat_stale_trial_callback=_retry,
            )
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ModuleNotFoundError) as error:
            raise NCPSearchError(_storage_error(url, error)) from None


def _storage_error(url: str, error: BaseException) -> str:
    from ncp_search.app.sweep.secrets import mask_url

    cause = getattr(error, "orig", None) or error
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = lines[0] if lines else type(cause).__name__
    for line in lines[1:]:  # libpq puts the useful part on later lines
        if line.lower().startswith(("fatal", "connection refused", "is the server")):
            reason = f"{reason} ({line})"
            break
    return (f"cannot open the storage {mask_url(url)}: {reason[:300]}; check the host, port, "
            "user, password and database name (the storage must be reachable and the database "
            "must exist).")


def check_storage(url: str) -> None:
    """Open the storage once (within :data:`CONNECT_TIMEOUT_S`), so that a wrong URL
    fails before anything is written.

    Raises:
        NCPSearchError: the storage cannot be opened.
    """
    storage = open_storage(url)
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def open_study(config: Mapping[str, Any], storage_url: str, *, create: bool,
               worker: int = 0) -> optuna.Study:
    """Create (``create=True``) or load the sweep's study."""
    name = config["optuna"]["study_name"] or config["name"]
    kwargs = {"storage": open_storage(storage_url, stale_after(config)),
              "sampler": make_sampler(config, worker),
              "pruner": make_pruner(config), "study_name": name}
    if create:
        study = optuna.create_study(direction="maximize", load_if_exists=True, **kwargs)
    else:
        try:
            study = optuna.load_study(**kwargs)
        except KeyError:
            raise NCPSearchError(f"no study named {name!r} in {storage_url}.") from None
    study.sampler = make_sampler(config, worker, existing=len(study.get_trials(deepcopy=False)))
    return study


def fail_dead_local_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker on this host is gone; queue them again.

    Returns:
        The numbers of the trials marked FAIL.
    """
    host = socket.gethostname()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get(WORKER_ATTR, ""))
        where, _, pid = worker.rpartition(":")
        if where != host or not pid.isdigit() or pid_alive(int(pid)):
            continue
        try:
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process got there first
        failed.append(trial.number)
        _retry(study, trial)
    return failed


def budget_used(study: optuna.Study) -> int:
    """Trials that count against ``budget.trials``: finished or running (not FAIL)."""
    return len(study.get_trials(deepcopy=False, states=BUDGET_STATES))


def publish_run(study: optuna.Study, config: Mapping[str, Any], output: Path,
                deadline: float | None, sweep_id: str | None = None) -> None:
    """Store the effective settings of this run in the study (:data:`SWEEP_ATTR`),
    where every worker reads them (storage URLs masked), and the sweep's creation id
    (:data:`ncp_search.app.sweep.folder.ID_ATTR`)."""
    from ncp_search.app.jsonio import strict_json
    from ncp_search.app.sweep.folder import ID_ATTR
    from ncp_search.app.sweep.secrets import mask_url

    if sweep_id is not None:
        study.set_user_attr(ID_ATTR, sweep_id)

    settings = dict(config)
    settings["optuna"] = {**config["optuna"], "storage": mask_url(config["optuna"]["storage"])}
    study.set_user_attr(SWEEP_ATTR, strict_json({
        "config": settings, "output": str(Path(output).resolve()), "deadline": deadline}))


def read_run(storage_url: str, study_name: str) -> dict[str, Any]:
    """The settings :func:`publish_run` stored: ``{"config", "output", "deadline"}``.

    Raises:
        NCPSearchError: if there is no such study, or no sweep was started on it.
    """
    from ncp_search.app.sweep.secrets import mask_url

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage_url))
    except KeyError:
        raise NCPSearchError(f"no study named {study_name!r} in {mask_url(storage_url)}; "
                             "start the sweep with `ncp-search sweep CONFIG` first.") from None
    run = study.user_attrs.get(SWEEP_ATTR)
    if not isinstance(run, dict) or "config" not in run:
        raise NCPSearchError(f"study {study_name!r} holds no sweep settings; workers take "
                             "them from the sweep's driver: run `ncp-search sweep CONFIG` "
                             "(with the same --storage) first.")
    return run


class BudgetLock:
    """An exclusive lock on a file (``fcntl.flock``; nothing where that is missing),
    taken to check the budget and create a trial as one step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: Any = None

    def acquire(self) -> None:
        if self._handle is not None:
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as error:
            if self.path.is_symlink():
                raise NCPSearchError(f"{self.path} is a symbolic link; ncp-search does not "
                                     "follow links out of a sweep folder: remove it.") from None
            raise error
        handle = os.fdopen(fd, "a")  # held across calls
        fcntl.flock(handle, fcntl.LOCK_EX)
        self._handle = handle

    def release(self) -> None:
        if self._handle is None:
            return
        import fcntl

        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()


def stale_after(config: Mapping[str, Any]) -> int:
    """``optuna.stale_after_s`` of a config (:data:`GRACE_S` where it has none)."""
    return int((config.get("optuna") or {}).get("stale_after_s") or GRACE_S)


def fail_ownerless_trials(study: optuna.Study, grace_s: float) -> list[int]:
    """Mark FAIL (and queue again) the RUNNING trials that no worker owns (no worker
    attribute: created by ``study.ask()`` outside a worker, or by a process killed
    before its objective started) once they started more than ``grace_s`` ago.
    Optuna's own stale-trial check skips them: they never had a heartbeat.

    Returns:
        The numbers of the trials marked FAIL.
    """
    from datetime import datetime, timedelta

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get(WORKER_ATTR) or trial.datetime_start is None:
            continue
        started = trial.datetime_start
        now = datetime.now(started.tzinfo)
        if now - started <= timedelta(seconds=grace_s):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another process got there first
        logger.warning("trial %d has been RUNNING for %.0f s with no worker (created outside "
                       "a sweep worker, or its process died at once): marked FAIL and queued "
                       "again", trial.number, (now - started).total_seconds())
        failed.append(trial.number)
        _retry(study, trial)
    return failed


def fail_stale_trials(study: optuna.Study, grace_s: float = GRACE_S) -> None:
    """Mark FAIL (and queue again) the RUNNING trials whose worker is gone: on this
    host at once (its pid is dead), elsewhere once the heartbeat is older than the
    storage's grace period (Optuna's heartbeat check), and trials no worker owns
    once they are ``grace_s`` old (:func:`fail_ownerless_trials`)."""
    fail_dead_local_trials(study)
    fail_ownerless_trials(study, grace_s)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # calls _retry for each


def _store_epoch(trial: optuna.Trial, epoch: int, value: float, beta: float,
                 terms: dict[str, float], info: EpochInfo, epoch_seconds: list[float]) -> None:
    """Store one epoch in the trial: the value, ``beta_eff`` and probe terms (reported),
    the epoch times so far and, when it diverged, why."""
    report_beta_eff(trial, epoch, beta, value, terms=terms)
    epoch_seconds.append(info.seconds)
    trial.set_user_attr(EPOCH_SECONDS_ATTR, list(epoch_seconds))
    if info.diverged:
        trial.set_user_attr(DIVERGED_ATTR, info.diverged)


def make_objective(config: Mapping[str, Any], data: SweepData, output: Path,
                   on_epoch: Callable[[], Any] | None = None,
                   cache_dir: str | None = None) -> Callable[[optuna.Trial], float]:
    """The objective: fine-tune the trial's configuration, report each epoch's
    validation accuracy and ``beta_eff``, prune when the pruner says so."""

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, this_process())
        params = suggest(trial, config["search_space"])

        epoch_seconds: list[float] = []

        def report(epoch: int, value: float, beta: float, terms: dict[str, float],
                   info: EpochInfo) -> None:
            _store_epoch(trial, epoch, value, beta, terms, info, epoch_seconds)
            if on_epoch is not None:
                on_epoch()
            if info.diverged:
                raise optuna.TrialPruned(f"diverged after epoch {epoch + 1}: {info.diverged}")
            if trial.should_prune():
                decision = record_decision(trial, epoch)
                raise optuna.TrialPruned(prune_message(epoch, decision, trial.study.pruner))

        model_path = output / "models" / f"trial_{trial.number:04d}.keras"
        seed = trial.user_attrs.get(SEED_ATTR)  # a retry's: the killed trial's seed
        if not isinstance(seed, int):
            seed = trial_seed(int(config["seed"]), trial.number)
            trial.set_user_attr(SEED_ATTR, seed)
        record = run_trial(config, params, data, report, trial_seed=seed,
                           model_path=model_path, cache_dir=cache_dir)
        trial.set_user_attr("seconds", record["seconds"])
        if record["model_path"]:
            trial.set_user_attr(MODEL_ATTR, os.path.relpath(record["model_path"], output))
        final = record["val_accuracy"][-1]
        if not math.isfinite(final):
            raise ValueError(f"trial {trial.number} ended with a NaN validation accuracy "
                             "(diverged); marked FAIL.")
        return final

    return objective


def run_worker(config: Mapping[str, Any], storage_url: str, output: Path, *, worker: int = 0,
               deadline: float | None = None, data: SweepData | None = None,
               after_trial: Callable[[optuna.Study], Any] | None = None,
               on_epoch: Callable[[], Any] | None = None, cache_dir: str | None = None) -> None:
    """Run trials one at a time until the budget is used (or ``deadline``, a
    ``time.time()`` value, passes); see the module docstring for the budget.

    Interrupts: a first SIGINT (Ctrl-C) or SIGTERM stops the running trial at the
    end of its current epoch, so no storage write is cut in half; a second one
    stops at once. Either way ``KeyboardInterrupt`` marks the running trial FAIL
    (its reported epochs kept) and propagates.
    """
    from ncp_search.app.sweep.trial import application_input_shape, load_data

    study = open_study(config, storage_url, create=False, worker=worker)
    data = data or load_data(config, application_input_shape(config))
    with StopAtEpochEnd() as stop:

        def epoch_done() -> None:
            if on_epoch is not None:
                on_epoch()
            stop.check()

        if is_pausing(config):
            run_pausing(study, config, data, Path(output), worker=worker, deadline=deadline,
                        after_trial=after_trial, on_epoch=epoch_done, cache_dir=cache_dir,
                        stop=stop)
            return
        objective = make_objective(config, data, output, epoch_done, cache_dir)
        _run_trials(study, objective, config, worker, deadline, after_trial, stop,
                    BudgetLock(Path(output) / BUDGET_LOCK))


class StopAtEpochEnd:
    """While active (main thread only), the first SIGINT or SIGTERM sets a flag that
    :meth:`check` turns into ``KeyboardInterrupt`` at the next safe point; a second
    SIGINT interrupts at once (a second SIGTERM does not)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopAtEpochEnd:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for number, previous in self._previous.items():
            signal.signal(number, signal.SIG_DFL if previous is None else previous)
        self._previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGINT:
            # SIGTERM (e.g. the driver died: the parent-death signal and the parent
            # watch may both send one) never escalates: stop at the end of the epoch.
            if not self.requested:
                self.requested = True
                sys.stderr.write("\nncp-search: stopping at the end of this epoch\n")
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write("\nncp-search: stopping at the end of this epoch (Ctrl-C again to "
                         "stop now)\n")

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


def _run_trials(study: optuna.Study, objective: Callable[[optuna.Trial], float],
                config: Mapping[str, Any], worker: int, deadline: float | None,
                after_trial: Callable[[optuna.Study], Any] | None,
                stop: StopAtEpochEnd, lock: BudgetLock) -> None:
    budget = int(config["budget"]["trials"])
    finished: list[optuna.trial.FrozenTrial] = []
    failures_in_a_row = 0

    def locked_objective(trial: optuna.Trial) -> float:
        lock.release()  # the trial exists (RUNNING): it counts against the budget now
        return objective(trial)

    while deadline is None or time.time() < deadline:
        stop.check()
        fail_stale_trials(study, stale_after(config))
        with lock.held():
            if budget_used(study) < budget:
                study.optimize(locked_objective, n_trials=1, catch=(Exception,),
                               gc_after_trial=GC_AFTER_TRIAL,
                               callbacks=[lambda _study, trial: finished.append(trial)])
            else:
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if not running:
                    return
                lock.release()
                _wait(WAIT_S, stop)  # a running trial may fail and free its slot
                continue
        last = finished[-1]
        failures_in_a_row = failures_in_a_row + 1 if last.state == TrialState.FAIL else 0
        if after_trial is not None:
            after_trial(study)
        if failures_in_a_row >= 3:
            raise NCPSearchError(
                f"3 trials in a row failed in worker {worker} (last: trial {last.number}); "
                "stopping this worker. The errors are logged above; completed trials are kept "
                "and --resume continues the sweep.")


def _wait(seconds: float, stop: StopAtEpochEnd) -> None:
    end = time.time() + seconds
    while time.time() < end:
        stop.check()
        time.sleep(min(0.2, max(0.0, end - time.time())))


# -- ncp_pause: the pausing driver ------------------------------------------------------
CHECKPOINTS = "checkpoints"
"""Folder of the output folder that holds paused configurations' checkpoints
(``checkpoints/<first trial>/epoch_<n>``: the model with its optimizer state and the
epochs done, :func:`ncp_search.integrations.ray.checkpoint.save_keras`)."""
CHECKPOINT_SECONDS_ATTR = "ncp_checkpoint_seconds"
"""Trial user attribute: seconds the trial spent saving and loading checkpoints."""
RESUMED_FROM_ATTR = "ncp_resumed_from"
"""Trial user attribute of a resume: ``"memory"`` (the model its worker kept when the
configuration paused) or ``"checkpoint"`` (built again and loaded: another worker
paused it, or memory let it go)."""


def run_pausing(study: optuna.Study, config: Mapping[str, Any], data: SweepData, output: Path,
                *, worker: int = 0, deadline: float | None = None,
                after_trial: Callable[[optuna.Study], Any] | None = None,
                on_epoch: Callable[[], Any] | None = None, cache_dir: str | None = None,
                stop: StopAtEpochEnd | None = None) -> None:
    """Run the sweep under ``pruner: {name: ncp_pause}`` (one of ``--workers N``): a
    :class:`~ncp_search.integrations.optuna.pausing.PausingDriver` says which trial to
    ask next; a trial that pauses at a rung saves a checkpoint and ends PRUNED
    (``ncp_paused``: its path); a promoted configuration continues as a new trial
    (``ncp_resumes``) that loads it, its epochs counted on.

    The study is the record, and the one state the workers share: before each trial a
    worker takes the budget lock, builds a driver from the study (its COMPLETE and
    PRUNED trials replayed into a fresh policy, its RUNNING ones counted as running)
    and asks the trial that driver names; so every worker follows one policy, on
    SQLite or PostgreSQL. A worker with nothing to run while others train (a rung
    waits for its bracket) polls. An interrupted trial (FAIL) runs again, from the
    last checkpoint its configuration recorded. A trial that raises is marked FAIL
    (its configuration runs again; 3 failures in a row stop the worker).

    Raises:
        NCPSearchError: 3 trials in a row failed, or ``budget.trials`` differs from the
            study's plan.
        KeyboardInterrupt: after marking the running trial FAIL.
    """
    from ncp_search.app.sweep.config import as_config
    from ncp_search.integrations.optuna.pausing import PausingDriver

    typed = as_config(config)
    stop = stop or StopAtEpochEnd()
    folder = Path(output) / CHECKPOINTS
    lock = BudgetLock(Path(output) / BUDGET_LOCK)
    failures_in_a_row = 0

    rungs = pause_rungs(output)  # an older sweep resumed keeps the rungs it ran with

    def policy() -> Any:
        return typed.choice.make(typed.budget.epochs, n_trials=typed.budget.trials,
                                 rungs=rungs)

    def refresh(driver: Any, job: Any) -> None:  # the other workers' reports since
        with lock.held():
            driver.refresh(policy(), job)

    live: dict[str, LiveTrial] = {}  # paused configurations' models, in pause order
    limit = live_bytes()  # a bad NCP_SEARCH_PAUSED_MODELS_MB stops here, before any trial
    with warnings.catch_warnings():
        # ask-and-tell: the trial's heartbeat is kept by _heartbeat, not by optimize
        warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
        _check_planned_trials(study, typed.budget.trials)
        while deadline is None or time.time() < deadline:
            stop.check()
            fail_stale_trials(study, stale_after(config))
            with lock.held():
                driver = PausingDriver(study, policy(), folder, carry=(SEED_ATTR,),
                                       running=True)
                if driver.policy.finished():
                    return
                job = _next_job(driver, live)  # the trial is RUNNING before the lock goes
            if job is None:  # others train what a rung waits for
                _wait(WAIT_S, stop)
                continue
            try:
                with _heartbeat(job.trial):
                    _run_job(driver, job, config, data, output, on_epoch, cache_dir, live,
                             limit, refresh=functools.partial(refresh, driver, job))
            except KeyboardInterrupt:
                study.tell(job.trial, state=TrialState.FAIL)
                raise
            except Exception:  # noqa: BLE001 - logged; the trial is FAIL, the sweep goes on
                logger.exception("trial %d failed", job.trial.number)
                study.tell(job.trial, state=TrialState.FAIL)
                live.clear()
                failures_in_a_row += 1
                if failures_in_a_row >= 3:
                    raise NCPSearchError(
                        f"3 trials in a row failed in worker {worker} (last: trial "
                        f"{job.trial.number}); stopping this worker. The errors are logged "
                        "above; finished trials are kept and --resume continues the "
                        "sweep.") from None
            else:
                failures_in_a_row = 0
            if after_trial is not None:
                after_trial(study)


def _next_job(driver: Any, live: dict[str, LiveTrial], me: str | None = None) -> Any:
    """Ask ``driver`` for this worker's next job, with the paused models in mind: a
    promoted configuration whose model this worker holds in ``live`` resumes first (no
    checkpoint to load, no model to build and trace again); one that another worker
    paused (and may hold) resumes here only when no new trial may start, so that its
    worker, once free, resumes it from memory. The entries of ``live`` the study has
    moved past (a configuration another worker resumed since) are let go first.

    Args:
        me: this worker, as :data:`WORKER_ATTR` records it (default: this process)."""
    me = me or this_process()
    for name in list(live):
        if len(driver.values.get(name, ())) != live[name].epochs:
            del live[name]
    elsewhere = {name for name in driver.policy.promoted() if name not in live
                 and driver.latest[name].user_attrs.get(WORKER_ATTR) not in (None, me)}
    return driver.next(prefer=live, defer=elsewhere)



@contextlib.contextmanager
def _heartbeat(trial: optuna.Trial) -> Iterator[None]:
    """Keep the storage's heartbeat of an asked trial while it trains, as
    ``study.optimize`` does for its own trials: a worker that dies on another machine
    is then found stale by the others after the grace period (on this machine its
    dead pid already says so). Nothing where the storage or Optuna has no heartbeat."""
    thread: Any = contextlib.nullcontext()
    try:
        from optuna.storages._heartbeat import get_heartbeat_thread

        thread = get_heartbeat_thread(trial._trial_id, trial.study._storage)
    except (ImportError, AttributeError):  # pragma: no cover - another Optuna
        pass
    with thread:
        yield


PAUSE_TRIALS_ATTR = "ncp_pause_trials"
"""Study user attribute: the ``budget.trials`` the pausing policy plans its rungs over."""


def _check_planned_trials(study: optuna.Study, trials: int) -> None:
    """The rungs of ``ncp_pause`` wait for all ``budget.trials`` trials: a resume with
    another number would judge the trials already paused by another plan.

    Raises:
        NCPSearchError: the study was started with another ``budget.trials``.
    """
    planned = study.user_attrs.get(PAUSE_TRIALS_ATTR)
    if planned is None:
        study.set_user_attr(PAUSE_TRIALS_ATTR, int(trials))
    elif int(planned) != int(trials):
        raise NCPSearchError(
            f"budget.trials must stay {planned} when an ncp_pause sweep resumes (its rungs "
            f"wait for all of them), but got {trials}; resume with --trials {planned}, or "
            "start a new sweep in another output folder.")


def _run_job(driver: Any, job: Any, config: Mapping[str, Any], data: SweepData,
             output: Path, on_epoch: Callable[[], Any] | None, cache_dir: str | None,
             live: dict[str, LiveTrial] | None = None, limit: int = 0,
             refresh: Callable[[], Any] | None = None) -> None:
    """Train one trial of the pausing driver from ``job.start`` epochs (from its
    models kept in ``live``, else from its configuration's checkpoint) until the
    policy pauses, stops or completes it; tell it. A trial promoted as it reaches a
    rung trains on (``refresh``: update the driver from the study first, see
    :meth:`PausingDriver.carry_on`). A trial that pauses is kept in ``live`` (within
    ``limit`` bytes)."""
    import shutil

    from ncp_search.core.pausing import CONTINUE, PAUSE
    from ncp_search.integrations.optuna.pruner import HISTORY_ATTR
    from ncp_search.integrations.ray.checkpoint import load_keras, save_keras

    trial = job.trial
    trial.set_user_attr(WORKER_ATTR, this_process())
    params = suggest(trial, config["search_space"])
    seed = trial.user_attrs.get(SEED_ATTR)  # a resume's or a retry's: its configuration's
    if not isinstance(seed, int):
        seed = trial_seed(int(config["seed"]), int(job.name))
        trial.set_user_attr(SEED_ATTR, seed)
    epoch_seconds: list[float] = []
    spent = {"checkpoint": 0.0}
    outcome: dict[str, Any] = {"order": None, "stopped": None, "saved": None}

    def restore(model: Any) -> int:
        began = time.perf_counter()
        done = load_keras(model, Path(output) / job.restore)  # recorded relative to it
        spent["checkpoint"] += time.perf_counter() - began
        if done != job.start:
            raise NCPSearchError(f"the checkpoint {job.restore} holds {done} epochs, but "
                                 f"configuration {job.name} recorded {job.start}.")
        return done

    def report(epoch: int, value: float, beta: float, terms: dict[str, float],
               info: EpochInfo) -> bool:
        _store_epoch(trial, epoch, value, beta, terms, info, epoch_seconds)
        if info.diverged:
            driver.values[job.name][epoch] = float(value)  # its epoch, not fed to the policy
            outcome["stopped"] = f"diverged after epoch {epoch + 1}: {info.diverged}"
            return True
        order = driver.report(job, value, {"beta_eff": beta, **terms}, report=False)
        outcome["order"] = order
        if order.action == PAUSE:
            if math.isfinite(order.prediction):
                history = dict(trial.user_attrs.get(HISTORY_ATTR, {}))
                history[str(epoch)] = driver.sign * order.prediction
                trial.set_user_attr(HISTORY_ATTR, history)
            if driver.carry_on(job, order, refresh):  # promoted as it arrived: trains on
                if on_epoch is not None:
                    on_epoch()
                return False
            began = time.perf_counter()
            path = job.checkpoint / f"epoch_{epoch + 1:04d}"
            save_keras(info.model, path, epoch + 1)
            spent["checkpoint"] += time.perf_counter() - began
            outcome["saved"] = path
        if order.action != CONTINUE:
            return True
        if on_epoch is not None:
            on_epoch()  # progress; an interrupt stops here, between epochs
        return False

    model_path = output / "models" / f"trial_{int(job.name):04d}.keras"  # its configuration
    live = {} if live is None else live
    kept = live.pop(job.name, None)
    if kept is not None and kept.epochs != job.start:
        kept = None  # not the state the study recorded: the checkpoint is
    if job.start:
        trial.set_user_attr(RESUMED_FROM_ATTR, "checkpoint" if kept is None else "memory")
    record = run_trial(config, params, data, report, trial_seed=seed, model_path=model_path,
                       cache_dir=cache_dir, restore=restore if job.start else None,
                       live=kept, keep_live=True)
    trial.set_user_attr("seconds", record["seconds"])
    trial.set_user_attr(CHECKPOINT_SECONDS_ATTR, spent["checkpoint"])
    if record["model_path"]:
        trial.set_user_attr(MODEL_ATTR, os.path.relpath(record["model_path"], output))
    saved = outcome["saved"]
    driver.finish(job, outcome["order"], stopped=outcome["stopped"],
                  checkpoint=None if saved is None else os.path.relpath(saved, output))
    # keep only the checkpoint the study records for a paused configuration
    for old in job.checkpoint.glob("epoch_*") if job.checkpoint.is_dir() else ():
        if saved is None or old != saved:
            shutil.rmtree(old, ignore_errors=True)
    if saved is not None:
        live[job.name] = record["live"]
    for name in list(live):  # the policy's dropped ones never resume
        if driver.policy.knows(name) and driver.policy.status(name) in ("dropped", "out"):
            del live[name]
    trim_live(live, limit)
