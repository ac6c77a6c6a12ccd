"""The Ray Tune backend of ``ncp-search sweep``: Tuner, scheduler, records, resume.

One Tune trial per configuration, sampled from the config's search space by a
seeded :class:`~ray.tune.search.BasicVariantGenerator`. The trainable fine-tunes
with :func:`ncp_search.app.sweep.trial.run_trial` and reports ``val_accuracy``,
``beta_eff`` and ``epoch`` (0-based, as ``run_trial`` counts) after every epoch
with ``ray.tune.report``; the scheduler (``NCPScheduler`` by default) stops the
poor ones. The last epoch is reported after the model is saved, so a trial the
scheduler stops at its last result still has its model in ``models/``.

The output folder holds the Ray experiment (``ray/<name>``, or under
``--storage``), the NCPScheduler's state (``ncp_scheduler.jsonl``, read back on
resume), the models of complete trials (``models/trial_<trial_id>.keras``,
written on the node that ran the trial: the output folder must be shared, or the
models stay on the workers, when the sweep runs on a multi-node cluster) and
``trials.jsonl``, the trial records (:mod:`ncp_search.app.sweep.results`), rewritten
atomically whenever a trial ends and at the end of the sweep.

Trial records (``number`` is the Tune trial index, ``seconds`` Tune's
``time_total_s``, ``epoch_seconds`` each epoch's wall time, ``predicted_final``
what an NCP scheduler predicted after each epoch, ``diverged`` why a diverged trial
was stopped, see :mod:`ncp_search.app.sweep.trial`: its last epoch reaches the
scheduler as NaN, so no scheduler pauses it, and the record keeps the value;
``rungs`` where a pausing scheduler judged it; ``paused``: a trial the pausing
scheduler held at a rung when Tune ended it, its checkpoint kept); states: COMPLETE (all
``budget.epochs``), PRUNED (stopped by the scheduler earlier, or diverged, or paused; ``stop``
holds an NCPScheduler's decision there, read from its journal: ``{"epoch"`` (the
1-based training iteration), ``"reason", "value"`` (the compared prediction),
``"threshold"}``), FAIL
(the trial raised, or it was still running when the sweep was interrupted or ran
out of ``budget.minutes``; its partial curve is kept).

Resume (``resume=True``) restores the Tune experiment with ``Tuner.restore``:
trials that were running (and failed ones) run again from the start; the
experiment keeps the ``budget.trials`` and search space it started with. A sweep
stopped by ``budget.minutes`` cannot start new trials on resume (Tune marks its
search finished). Finished trials are kept as they were: a COMPLETE (or PRUNED)
record never changes, nor loses its model link. Tune runs again a trial whose end
it had not saved in its own state before the interruption; such a trial replays
its recorded epochs to Tune and the scheduler (no training, its model untouched).

Heartbeat: each record holds its driver (``host:pid``) and the time of its last
result (``heartbeat``; ``trials.jsonl`` is rewritten at most every
:data:`HEARTBEAT_S` seconds while trials run); a RUNNING record whose driver is
dead or whose heartbeat is stale is read back as FAIL
(:func:`ncp_search.app.sweep.results.fail_if_stale`).

Checkpoints: where the scheduler may pause a trial (an NCPScheduler with a
``PausingPolicy``: at its rungs; Tune's ``hyperband``: every epoch but the last) the
epoch is reported with a checkpoint (the model with its optimizer state and the
epochs done: :mod:`ncp_search.integrations.ray.checkpoint`), and a trial Tune resumes
or restores goes on from its latest one; a paused trial's models also stay in its
actor's memory (``NCP_SEARCH_PAUSED_MODELS_MB``), and a resume on that actor trains on
from them (the record's ``resumed_from`` says which, per resume; the scheduler hands
a promoted trial over when the actor that paused it is free:
``NCPScheduler(resume_where_paused=True)``). Other schedulers never resume a trial, so
nothing is saved (a save costs about a tenth of an epoch of the quick CNN:
docs/cost/checkpoint_cost.txt) and a trial restored after an interruption starts
again from its first epoch.

Ctrl-C: Tune stops the experiment and saves its state; the records of what
finished are written and ``KeyboardInterrupt`` is raised. A second Ctrl-C skips
Tune's clean-up.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

try:
    import ray
    from ray import tune
    from ray.tune.schedulers import TrialScheduler
    from ray.tune.search import BasicVariantGenerator
except ImportError as error:  # pragma: no cover
    raise ImportError("the Ray backend of ncp-search sweep needs Ray Tune: "
                      "pip install 'ncp-search[ray]'") from error

from ncp_search.app.jsonio import atomic_write, strict_json
from ncp_search.app.sweep.config import ConfigError, as_config
from ncp_search.app.sweep.folder import (
    check_ray_experiment,
    check_tuner_pickle,
    pause_rungs,
    tuner_digest,
    write_ray_id,
)
from ncp_search.app.sweep.hosts import this_process
from ncp_search.app.sweep.progress import ProgressLine, TrialStatus
from ncp_search.app.sweep.results import RAY_TRIALS_FILE, ray_decisions
from ncp_search.app.sweep.seeds import reduce_seed, trial_seed
from ncp_search.errors import NCPSearchError
from ncp_search.integrations.ray.trainable import trial_resources

logger = logging.getLogger(__name__)
METRIC = "val_accuracy"
DIVERGED_VALUE = "diverged_val_accuracy"
"""Result key: a diverged epoch's metric (reported to the scheduler as NaN)."""
MODE = "max"
TIME_ATTR = "training_iteration"
STATE_FILE = "ncp_scheduler.jsonl"
MODELS = "models"
RAY_FOLDER = "ray"
HEARTBEAT_S = 10.0
FINISHED = ("COMPLETE", "PRUNED")
# Trainable runs share this driver-side state through a key, so that the callback
# Tune pickles into the experiment (tuner.pkl) finds the live session after restore.
_SESSIONS: dict[str, _Session] = {}


# -- configuration --------------------------------------------------------------------
def describe_scheduler(config: Mapping[str, Any]) -> str:
    """The scheduler and its settings in one line (for logs and reports)."""
    return as_config(config).choice.describe()


def make_scheduler(config: Mapping[str, Any],
                   state_path: str | os.PathLike[str] | None = None, *,
                   rungs: Mapping[str, Any] | None = None) -> TrialScheduler:
    """The Tune scheduler a validated config names (:mod:`ncp_search.integrations.
    registry`; metric and mode come from ``TuneConfig``); ``state_path`` is where an
    NCPScheduler keeps its state; ``rungs``: ``ncp_pause``'s recorded rung settings
    (:func:`~ncp_search.app.sweep.folder.pause_rungs`).

    Raises:
        ConfigError: if ``scheduler.grace_period`` exceeds ``budget.epochs``.
    """
    typed = as_config(config)
    choice, epochs = typed.choice, typed.budget.epochs
    grace = choice.settings.get("grace_period")
    if grace is not None and grace > epochs:
        raise ConfigError(f"scheduler.grace_period: {grace} exceeds budget.epochs={epochs}; "
                          "set grace_period <= budget.epochs.")
    scheduler: TrialScheduler = choice.make(epochs, state_path,
                                            n_trials=typed.budget.trials, rungs=rungs)
    return scheduler


def pause_epochs(scheduler: Any, epochs: int) -> tuple[int, ...]:
    """The epochs (1-based, Tune's ``training_iteration``) after which ``scheduler``
    may pause a trial of ``epochs`` epochs to resume it later, where the trial
    checkpoints: an NCPScheduler with a ``PausingPolicy``, at its rungs; Tune's
    ``HyperBandScheduler``, at any epoch; other schedulers never (empty)."""
    from ray.tune.schedulers import HyperBandScheduler

    from ncp_search.core.pausing import PausingPolicy

    policy = getattr(scheduler, "policy", None)
    if isinstance(policy, PausingPolicy):  # rungs in epochs counted from first_step
        rungs = (int(math.ceil(rung)) + int(policy.first_step) - 1 for rung in policy.milestones)
        return tuple(sorted({rung for rung in rungs if 1 <= rung < epochs}))
    if isinstance(scheduler, HyperBandScheduler):
        return tuple(range(1, epochs))
    return ()


def _domain(spec: Any) -> Any:
    if not isinstance(spec, Mapping):
        return spec  # a fixed value
    if spec["type"] == "categorical":
        return tune.choice(list(spec["choices"]))
    log = bool(spec.get("log"))
    if spec["type"] == "int":
        int_low, int_high = int(spec["low"]), int(spec["high"])
        if int_low == int_high:
            return int_low
        # Tune's integer domains exclude ``upper``; the config's ``high`` is inclusive.
        return (tune.lograndint(int_low, int_high + 1) if log
                else tune.randint(int_low, int_high + 1))
    low, high = float(spec["low"]), float(spec["high"])
    if low == high:
        return low
    return tune.loguniform(low, high) if log else tune.uniform(low, high)


def param_space(config: Mapping[str, Any]) -> dict[str, Any]:
    """Tune domains of the config's search space (fixed values as they are).

    ``int`` ranges include ``high``, like the Optuna backend's ``suggest_int``;
    sampling is seeded by :func:`make_search_alg`.
    """
    return {name: _domain(spec) for name, spec in as_config(config).search_space.items()}


def make_search_alg(config: Mapping[str, Any],
                    max_concurrent: int | None = None) -> BasicVariantGenerator:
    """Random search over :func:`param_space`, seeded with the config's ``seed``,
    running at most ``max_concurrent`` trials at once (None: as resources allow)."""
    return BasicVariantGenerator(random_state=reduce_seed(as_config(config).seed),
                                 max_concurrent=int(max_concurrent or 0))


def concurrency(config: Mapping[str, Any], workers: int | None) -> int | None:
    """Concurrent trials: ``workers`` when above 1, else the config's
    ``ray.max_concurrent_trials``, else ``workers`` (None: as resources allow)."""
    configured = as_config(config).ray.max_concurrent_trials
    if workers is not None and workers > 1:
        return int(workers)
    return int(configured) if configured else workers


def trial_number(trial_id: str) -> int:
    """The Tune trial index (``'3f2a1_00007'`` -> 7)."""
    tail = str(trial_id).rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else zlib.crc32(str(trial_id).encode()) % 1_000_000


def _absolute_paths(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with its local paths made absolute (Tune runs trials in their own
    working directories)."""
    out = dict(config)
    source = dict(config["source"])
    if source.get("file"):
        source["file"] = os.path.abspath(source["file"])
    out["source"] = source
    return out


# -- the trainable (runs in a Ray actor) ----------------------------------------------
def _train(params: dict[str, Any], *, data: Any, sweep: dict[str, Any], output: str,
           cache_dir: str | None, finished: Mapping[str, Any] | None = None,
           checkpoint: Iterable[int] = (), keep_bytes: int = 0) -> None:
    """Fine-tune one configuration; report each epoch to Tune, with a checkpoint after
    the epochs (1-based) in ``checkpoint`` (:func:`pause_epochs`), going on from the
    trial's latest checkpoint, or from its models in this actor's memory when it kept
    them (:data:`ncp_search.integrations.ray.kept.KEPT`, at most ``keep_bytes``; Tune
    reuses a trial's actor, so a trial resumed on the actor that paused it trains on
    without building, restoring or tracing again; a model Tune stopped for good stays
    until newer ones push it out). A trial that finished before a resume
    (in ``finished``) replays its recorded epochs instead."""
    from ncp_search.app.sweep.trial import EpochInfo, application_input_shape, run_trial
    from ncp_search.integrations.ray.checkpoint import (
        checkpoint_state,
        keras_checkpoint,
        restore_keras,
    )
    from ncp_search.integrations.ray.kept import KEPT, report_keeping

    _allow_slow_stops()
    trial_id = tune.get_context().get_trial_id() or "trial_0"
    replay = finished.get(trial_id) if finished else None
    restored = None if replay is not None else tune.get_checkpoint()
    # its models in this actor's memory if they hold the state Tune resumes from
    state = None if restored is None or not keep_bytes else checkpoint_state(restored)
    kept = KEPT.take(trial_id, state)
    if keep_bytes:
        _let_go_of_stopped(Path(output))
    if replay is not None:
        _replay(replay)
        return
    resumed = {} if restored is None else {"resumed_from": "checkpoint" if kept is None
                                          else "memory"}
    shape = application_input_shape(sweep)
    if shape is not None:
        data = _resized(data, shape)
    epochs = int(sweep["budget"]["epochs"])
    held: dict[str, Any] = {}
    checkpoint = frozenset(checkpoint)

    def on_epoch(epoch: int, value: float, beta: float, terms: dict[str, float],
                 info: EpochInfo) -> bool:
        metrics = {METRIC: float(value), "beta_eff": float(beta), "epoch": int(epoch),
                   "epoch_seconds": float(info.seconds),
                   **{k: float(v) for k, v in terms.items()}, **resumed}
        resumed.clear()  # said with the first epoch after a resume
        if info.diverged:  # the scheduler sees NaN (it stops the trial, never pauses it
            # at a rung without a checkpoint); the record keeps the value
            tune.report({**metrics, METRIC: math.nan, DIVERGED_VALUE: float(value),
                         "diverged": info.diverged})
            return True  # stop: recorded as PRUNED, with the reason
        if epoch + 1 >= epochs:
            held.update(metrics)  # reported once the model is saved
        elif epoch + 1 in checkpoint:
            live = info.live
            with keras_checkpoint(info.model, epoch + 1) as saved:  # kept if Tune pauses it
                report_keeping(metrics, saved, None if live is None else trial_id, live,
                               lambda: 0 if live is None else live.nbytes, keep_bytes)
        else:
            tune.report(metrics)
        return False

    model_path = Path(output) / MODELS / f"trial_{trial_id}.keras"
    record = run_trial(sweep, strict_json(dict(params)), data, on_epoch,
                       trial_seed=trial_seed(int(sweep["seed"]), trial_number(trial_id)),
                       model_path=model_path, cache_dir=cache_dir, restore=restore_keras,
                       live=kept)
    if held:
        if record["model_path"]:
            held["model_path"] = f"{MODELS}/{model_path.name}"
        tune.report(held)


def _let_go_of_stopped(output: Path) -> None:
    """Let go of the kept models of trials the scheduler has stopped (dropped at a
    rung: the driver journals each stop in the output folder); nothing where the
    journal cannot be read (e.g. an output folder the workers do not share)."""
    from ncp_search.integrations.ray.kept import KEPT

    held = KEPT.ids()
    if not held:
        return
    try:
        stops, _ = ray_decisions(output / STATE_FILE, MODE)
    except Exception:  # noqa: BLE001 - fail open: the byte limit still bounds them
        return
    for trial_id in held:
        if trial_id in stops:
            KEPT.discard(trial_id)


REUSE_TIMEOUT_ENV = "TUNE_FUNCTION_THREAD_TIMEOUT_S"
REUSE_TIMEOUT_S = 120


def _allow_slow_stops() -> None:
    """Let this actor's stopped trial take up to :data:`REUSE_TIMEOUT_S` to end before
    Tune gives the actor to the next trial (``reuse_actors=True``).

    Tune reuses a function trainable's actor by waking the stopped trial's thread
    (blocked in ``tune.report``) and waiting for it to end, by default 2 s
    (``TUNE_FUNCTION_THREAD_TIMEOUT_S``, read in the actor at each reuse); past that
    it fails the *next* trial with "Could not re-use actor". Unwinding Keras' fit
    takes far less when the actor has a CPU (measured: at most 0.04 s), but Ray runs
    its workers at nice 15, so on a busy machine the wait can pass 2 s. Set in the
    actor by the first trial it runs, unless the user set it."""
    os.environ.setdefault(REUSE_TIMEOUT_ENV, str(REUSE_TIMEOUT_S))


def _replay(record: Mapping[str, Any]) -> None:
    """Report a finished trial's recorded epochs again (Tune re-ran it after a
    restore): its record and model stay as they are."""
    values = record.get("val_accuracy") or []
    betas = record.get("beta_eff") or []
    for epoch, value in enumerate(values):
        beta = betas[epoch] if epoch < len(betas) else None
        metrics = {METRIC: math.nan if value is None else float(value),
                   "beta_eff": math.nan if beta is None else float(beta), "epoch": epoch,
                   "replayed": True}
        if epoch == len(values) - 1 and record.get("model_path"):
            metrics["model_path"] = record["model_path"]
        tune.report(metrics)


def _resized(data: Any, shape: tuple[int, ...]) -> Any:
    """The sweep data resized for a ``keras.applications`` source, in the trial's
    actor (TensorFlow in the driver could take the GPU memory the trials need)."""
    import dataclasses

    from ncp_search.app.sweep.trial import adapt_images

    task = dataclasses.replace(data.task, x_train=adapt_images(data.task.x_train, shape),
                               x_val=adapt_images(data.task.x_val, shape))
    # the probe batch is picked by index, so resizing it after picking is the same
    return dataclasses.replace(data, task=task, x_probe=adapt_images(data.x_probe, shape))


# -- driver-side records and progress -------------------------------------------------
def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


class _Session:
    """The records of one run of the sweep (driver side), fed by :class:`_SweepCallback`."""

    def __init__(self, config: Mapping[str, Any], output: Path,
                 progress: ProgressLine | None, scheduler: Any = None) -> None:
        self.scheduler = scheduler  # the prediction shown is the one it recorded
        self.epochs = int(config["budget"]["epochs"])
        self.path = output / RAY_TRIALS_FILE
        self.journal = output / STATE_FILE  # where an NCPScheduler journals its stops
        self.progress = progress
        self.records: dict[str, dict[str, Any]] = {}
        self.frozen: set[str] = set()  # finished before this run: never changed
        self.trials: list[Any] = []
        self.driver = this_process()
        self._written = 0.0

    # records
    def load(self) -> None:
        """Take the records of an earlier run back (resume)."""
        from ncp_search.app.sweep.results import read_ray_records

        for record in read_ray_records(self.path):
            key = record.get("trial_id") or f"#{record['number']}"
            self.records[key] = record
            if record.get("state") in FINISHED:
                self.frozen.add(key)

    def finished(self) -> dict[str, dict[str, Any]]:
        """What the trainable replays of the trials that finished before this run."""
        keep = ("val_accuracy", "beta_eff", "model_path")
        return {key: {k: self.records[key].get(k) for k in keep} for key in self.frozen}

    def _record(self, trial: Any) -> dict[str, Any]:
        record = self.records.get(trial.trial_id)
        if record is None:
            record = self.records[trial.trial_id] = {
                "number": trial_number(trial.trial_id), "trial_id": trial.trial_id,
                "state": "RUNNING", "params": strict_json(dict(trial.config)),
                "val_accuracy": [], "beta_eff": [], "predicted_final": [], "final": None,
                "epoch_seconds": [], "diverged": None, "model_path": None, "seconds": None,
                "stop": None,
            }
        return record

    def start(self, trial: Any) -> None:
        if trial.trial_id in self.frozen:
            return
        record = self._record(trial)
        if getattr(trial, "checkpoint", None) is not None:
            return  # resumed from its checkpoint: its epochs so far stand
        # A trial that starts again (resume, or a paused trial without checkpoint)
        # starts from scratch.
        record.update(state="RUNNING", val_accuracy=[], beta_eff=[], predicted_final=[],
                      epoch_seconds=[], final=None, model_path=None, seconds=None,
                      diverged=None, stop=None)
        record.pop("resumed_from", None)
        record.pop("resumed_at", None)
        record.pop("paused", None)

    def result(self, trial: Any, result: Mapping[str, Any]) -> None:
        if METRIC not in result or trial.trial_id in self.frozen:
            return
        record = self._record(trial)
        epoch = int(result.get("epoch", len(record["val_accuracy"])))
        for key in ("val_accuracy", "beta_eff", "predicted_final"):
            del record[key][epoch:]  # a restarted trial reports its epochs again
        record.setdefault("epoch_seconds", [])
        del record["epoch_seconds"][epoch:]
        record["epoch_seconds"].append(_number(result.get("epoch_seconds")))
        record["val_accuracy"].append(_number(result.get(DIVERGED_VALUE, result[METRIC])))
        record["beta_eff"].append(_number(result.get("beta_eff")))
        record["predicted_final"].append(self._predict(record))
        if "resumed_at" in record:  # a restarted trial reports its epochs again
            record["resumed_at"] = [i for i in record["resumed_at"] if i < epoch]
        if result.get("resumed_from"):  # "memory" or "checkpoint", one per resume
            record.setdefault("resumed_from", []).append(str(result["resumed_from"]))
            record.setdefault("resumed_at", []).append(epoch)  # its first epoch's index
        record["final"] = record["val_accuracy"][-1]
        record["seconds"] = _number(result.get("time_total_s"))
        if result.get("model_path"):
            record["model_path"] = str(result["model_path"])
        record["diverged"] = result.get("diverged") or None
        record.update(state="RUNNING", driver=self.driver, heartbeat=time.time())
        if time.time() - self._written >= HEARTBEAT_S:
            self.write()

    def _predict(self, record: Mapping[str, Any]) -> float | None:
        """The prediction the NCPScheduler recorded for this result (None before its
        grace period, or for other schedulers): read from the scheduler, never
        predicted again here (Tune calls the scheduler before this callback)."""
        latest = getattr(self.scheduler, "latest_prediction", None)
        return None if latest is None else _number(latest(record["trial_id"]))

    def end(self, trial: Any, failed: bool) -> None:
        if trial.trial_id in self.frozen:
            return
        record = self._record(trial)
        if failed:
            record["state"] = "FAIL"
        else:
            done = len(record["val_accuracy"])
            complete = done >= self.epochs and not record.get("diverged")
            record["state"] = "COMPLETE" if complete else "PRUNED"
        if record["state"] != "COMPLETE":
            record["model_path"] = None
        if record["state"] == "PRUNED" and self._held(trial.trial_id):
            record["paused"] = True  # paused for good: its checkpoint stays in the run
        # the scheduler's decision at the stop (reason, compared prediction, threshold),
        # journaled by NCPScheduler before Tune ends the trial; None for other schedulers;
        # under a pausing policy, the rungs it judged the trial at
        stops, rungs = ray_decisions(self.journal, MODE)
        record["stop"] = stops.get(trial.trial_id) if record["state"] == "PRUNED" else None
        if trial.trial_id in rungs:
            record["rungs"] = rungs[trial.trial_id]
        self.write()

    def reconcile(self, trials: Iterable[Any]) -> None:
        """Records of finished trials known to Tune but not here (restored trials
        whose records were lost): read from the trial's ``result.json``."""
        for trial in trials:
            if trial.trial_id in self.frozen or trial.status not in ("TERMINATED", "ERROR"):
                continue
            record = self.records.get(trial.trial_id)
            if record is not None and record["state"] not in ("RUNNING", "WAITING"):
                continue  # its end is recorded
            rows = _result_rows(trial)
            if not rows and trial.status != "ERROR":
                continue  # never ran (e.g. stopped by the time budget while pending)
            self.start(trial)  # from scratch: the rows hold every epoch
            for row in rows:
                self.result(trial, row)
            self.end(trial, failed=trial.status == "ERROR")

    # output
    def statuses(self) -> list[TrialStatus]:
        """The progress view; under ``ncp_pause`` a trial its policy holds at a rung
        (paused, or paused for good until Tune ends it) shows as paused, as on Optuna."""
        out = []
        for r in self.records.values():
            held = r["state"] == "RUNNING" and self._held(r.get("trial_id"))
            out.append(TrialStatus(r["number"], "PRUNED" if held else r["state"],
                                   len(r["val_accuracy"]),
                                   r["final"] if r["state"] == "COMPLETE" else None,
                                   r.get("seconds"), tuple(r.get("epoch_seconds") or ()),
                                   paused=held or bool(r.get("paused")),
                                   last=(r["val_accuracy"] or [None])[-1],
                                   resumed_at=tuple(r.get("resumed_at") or ())))
        return out

    def _held(self, trial_id: str | None) -> bool:
        """Whether a pausing scheduler holds ``trial_id`` at a rung."""
        from ncp_search.core.pausing import PausingPolicy

        policy = getattr(self.scheduler, "policy", None)
        return (isinstance(policy, PausingPolicy) and trial_id is not None
                and policy.knows(trial_id)
                and policy.status(trial_id) in ("paused", "dropped"))

    def update_progress(self) -> None:
        if self.progress is not None:
            self.progress.update(self.statuses())

    def write(self) -> None:
        """Rewrite ``trials.jsonl`` atomically (strict JSON, sorted by trial number)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path) as handle:
            for record in sorted(self.records.values(), key=lambda r: r["number"]):
                handle.write(json.dumps(strict_json(record), allow_nan=False) + "\n")
        self._written = time.time()

    def finish(self) -> None:
        """End of the run: trials still running were cut (interrupt, time budget)."""
        self.reconcile(self.trials)
        for key, record in self.records.items():
            if record["state"] in ("RUNNING", "WAITING") and key not in self.frozen:
                record["state"] = "FAIL"
                record["model_path"] = None
        self.write()
        self.update_progress()


def _result_rows(trial: Any) -> list[dict[str, Any]]:
    for folder in (getattr(trial, "local_path", None), getattr(trial, "path", None)):
        if not folder:
            continue
        path = Path(folder) / "result.json"
        if not path.exists():
            continue
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows
    return []


class _SweepCallback(tune.Callback):
    """Feeds Tune's trial events to the live :class:`_Session` (found by key: Tune
    pickles this callback into the experiment, the session stays in the driver)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __getstate__(self) -> dict[str, Any]:
        return {"key": self.key}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.key = state["key"]

    def _session(self, trials: list[Any]) -> _Session | None:
        session = _SESSIONS.get(self.key)
        if session is None and len(_SESSIONS) == 1:  # restored from a moved output folder
            session = next(iter(_SESSIONS.values()))
        if session is not None:
            session.trials = trials
        return session

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        session = self._session(trials)
        if session is not None:
            session.start(trial)
            session.update_progress()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        session = self._session(trials)
        if session is not None:
            session.result(trial, result)
            session.update_progress()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any,
                          **info: Any) -> None:
        session = self._session(trials)
        if session is not None and trial.trial_id in session.records:
            session.end(trial, failed=False)
            session.update_progress()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        session = self._session(trials)
        if session is not None:
            session.end(trial, failed=True)
            session.update_progress()


# -- the run ----------------------------------------------------------------------------
def _tune_traps_sigint() -> bool:
    """Whether ``Tuner.fit`` installs its SIGINT handler (see ray.tune.tune)."""
    return (threading.current_thread() is threading.main_thread()
            and not int(os.getenv("TUNE_DISABLE_SIGINT_HANDLER", "0")))


def _storage_path(output: Path, storage_override: str | None) -> str:
    storage = storage_override or str(output / RAY_FOLDER)
    return storage if "://" in storage else os.path.abspath(storage)


WORKER_NICENESS_ENV = "RAY_worker_niceness"
"""Ray starts its worker processes at nice 15 unless this environment variable says
otherwise. Beside two busy processes at normal priority a trial's actor then got 2-4%
of a core (seen on 2 cores: the sweep made no progress in 14 minutes), where the Optuna
backend trains at normal priority. A local Ray sweep starts its workers at nice 0
unless the variable is set."""


def _init_ray(address: str | None, cpus: int) -> bool:
    """Start (or connect to) Ray unless it is up; True if this call started it."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    else:
        os.environ.setdefault(WORKER_NICENESS_ENV, "0")  # read by the raylet it starts
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    return True


def run_ray_sweep(
    config: Mapping[str, Any],
    output: str | os.PathLike[str],
    *,
    workers: int | None = 1,
    resume: bool = False,
    address: str | None = None,
    progress: ProgressLine | None = None,
    cache_dir: str | None = None,
    storage_override: str | None = None,
    sweep_meta: Mapping[str, Any] | None = None,
    on_created: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the sweep on Ray Tune; return the trial records.

    Args:
        config: a validated sweep config.
        output: the sweep's output folder.
        workers: concurrent trials (see :func:`concurrency`).
        resume: restore the experiment in the storage folder and finish it.
        address: a Ray cluster address (None: a local Ray instance with CPUs for the
            concurrent trials, at least 2, unless Ray is already initialised).
        progress: the progress line to update.
        cache_dir: model-zoo cache folder.
        storage_override: Tune's ``storage_path`` (default ``<output>/ray``).
        sweep_meta: the sweep's ``sweep.json``: its ``id`` is checked against (and
            recorded in) the experiment folder, its ``tuner_sha256`` against the
            experiment's ``tuner.pkl`` before a restore.
        on_created: called with the SHA-256 of ``tuner.pkl`` once Tune wrote it (a
            new experiment), to be recorded in ``sweep.json``.

    Raises:
        NCPSearchError: with ``resume=True`` when there is nothing to restore.
        IdentityError: the experiment belongs to another sweep.
        ConfigError: for scheduler settings Tune cannot use.
        KeyboardInterrupt: after Ctrl-C, once the state and records are saved.
    """
    from ncp_search.app.sweep.trial import live_bytes, load_data

    output = Path(output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    storage = _storage_path(output, storage_override)
    experiment = f"{storage.rstrip('/')}/{config['name']}"
    if resume and not tune.Tuner.can_restore(experiment):
        raise NCPSearchError(f"nothing to resume: no Ray Tune experiment at {experiment}; run "
                             "the sweep without --resume (or pass the --storage it used).")
    local = "://" not in experiment
    if resume and local and sweep_meta is not None:
        check_ray_experiment(experiment, sweep_meta, output)
        check_tuner_pickle(experiment, sweep_meta)
    if not resume:
        if tune.Tuner.can_restore(experiment):
            raise NCPSearchError(f"a Ray Tune experiment already exists at {experiment}; pass "
                                 "--resume to continue it, or use another output folder, "
                                 "--storage or sweep name.")
        (output / STATE_FILE).unlink(missing_ok=True)  # a stale NCPScheduler state
    limit = concurrency(config, workers)
    scheduler = make_scheduler(config, output / STATE_FILE, rungs=pause_rungs(output))
    checkpoints = pause_epochs(scheduler, int(config["budget"]["epochs"]))
    keep_bytes = live_bytes() if checkpoints else 0  # a bad setting stops here
    if keep_bytes and hasattr(scheduler, "resume_where_paused"):
        scheduler.resume_where_paused = True  # the trainable keeps paused models (kept.KEPT)
    ray_settings = config["ray"]
    cpus = max(2, math.ceil((limit or 1) * float(ray_settings["cpus_per_trial"])))
    started = _init_ray(address, cpus)
    key = str(output)
    session = _Session(config, output, progress, scheduler)
    if resume:
        session.load()
    fitting = False
    try:
        sweep = _absolute_paths(config)
        data = load_data(sweep)  # once, shipped to the trials through the object store
        trainable = tune.with_resources(
            tune.with_parameters(_train, data=data, sweep=sweep, output=str(output),
                                 cache_dir=None if cache_dir is None
                                 else os.path.abspath(cache_dir),
                                 finished=session.finished(),
                                 checkpoint=checkpoints,
                                 keep_bytes=keep_bytes),
            trial_resources(float(ray_settings["cpus_per_trial"]),
                            ray_settings["gpus_per_trial"]))
        if resume:
            tuner = tune.Tuner.restore(experiment, trainable=trainable,
                                       resume_unfinished=True, resume_errored=True)
            _use_scheduler(tuner, scheduler)
        else:
            minutes = config["budget"]["minutes"]
            tuner = tune.Tuner(
                trainable, param_space=param_space(config),
                tune_config=tune.TuneConfig(
                    metric=METRIC, mode=MODE, num_samples=int(config["budget"]["trials"]),
                    scheduler=scheduler,
                    # the searcher's limit counts paused trials: with fewer than a rung
                    # waits for, none would come to close it (a hang); the CPUs of the
                    # local Ray bound what runs at once instead
                    search_alg=make_search_alg(config, None if checkpoints else limit),
                    time_budget_s=None if minutes is None else 60.0 * float(minutes),
                    # a trial runs in the actor of a finished one: no new process, no
                    # TensorFlow import per trial (see _allow_slow_stops)
                    reuse_actors=True),
                run_config=tune.RunConfig(name=config["name"], storage_path=storage,
                                          verbose=0, callbacks=[_SweepCallback(key)]),
            )
        if local and sweep_meta is not None:
            write_ray_id(experiment, sweep_meta)
        digest = tuner_digest(experiment) if local and not resume else None
        if digest is not None and on_created is not None:
            on_created(digest)
        _SESSIONS[key] = session
        session.update_progress()
        fitting = True
        interrupted = _fit(tuner)
    finally:
        _SESSIONS.pop(key, None)
        try:
            if fitting:  # the records of what finished, also after an error or Ctrl-C
                session.finish()
        finally:
            if started:
                ray.shutdown()
    if interrupted:
        raise KeyboardInterrupt
    return [session.records[k] for k in sorted(session.records,
                                               key=lambda k: session.records[k]["number"])]


def _use_scheduler(tuner: tune.Tuner, scheduler: TrialScheduler) -> None:
    """Run a restored experiment with ``scheduler`` (made for the output folder where
    it is now) instead of the one Tune unpickled from ``tuner.pkl``, whose journal
    path is where the folder was when the sweep started. An NCPScheduler keeps its
    state in its journal, not in the pickle, so nothing is lost."""
    internal = getattr(tuner, "_local_tuner", None)
    tune_config = getattr(internal, "_tune_config", None)
    if tune_config is None or not hasattr(tune_config, "scheduler"):
        logger.warning("could not replace the restored Tune scheduler (Ray %s); the "
                       "scheduler keeps the state path it was created with",
                       ray.__version__)
        return
    tune_config.scheduler = scheduler


def _fit(tuner: tune.Tuner) -> bool:
    """``tuner.fit()``; True if Tune stopped it on SIGINT (or SIGUSR1).

    Tune's handler restores the previous SIGINT handler when it fires and stays
    installed otherwise; both handlers are put back afterwards.
    """
    traps = _tune_traps_sigint()
    main = threading.current_thread() is threading.main_thread()
    saved = {}
    if main:
        for name in ("SIGINT", "SIGUSR1"):
            if hasattr(signal, name):
                saved[name] = signal.getsignal(getattr(signal, name))
    captured = io.StringIO()
    try:
        # Tune prints an experiment table to stdout even with verbose=0; keep stdout
        # for the caller (the CLI prints the summary there).
        with contextlib.redirect_stdout(captured):
            tuner.fit()
        return traps and signal.getsignal(signal.SIGINT) is saved.get("SIGINT")
    finally:
        if captured.getvalue().strip():
            logger.debug("Ray Tune: %s", captured.getvalue().strip())
        for name, handler in saved.items():
            if handler is not None:
                signal.signal(getattr(signal, name), handler)
