"""Replay recorded runs through real Ray Tune runs to compare trial schedulers.

The Ray counterpart of :mod:`research.optuna_replay`. Each seed fixes one order of
the table's runs (the same permutation as the Optuna replay); a Tune run gets one
trial per recorded run, created in that order (``tune.grid_search`` over the run
indices), and each trial reports its run's validation accuracy and ``beta_eff``
epoch by epoch through ``ray.tune.report``. Nothing is trained.

Concurrency: each trial asks for ``num_cpus / concurrency`` CPUs, so at most
``concurrency`` trials run at once; the others wait, at most two of them as PENDING
trials (see ``_TUNE_ENV``), and start in order of creation (trials started at about
the same time may swap: at most 4 places in the benchmark) or, for
HyperBandScheduler, by bracket. Later trials thus meet a scheduler that has seen
the earlier ones, as in a real sweep. Replayed epochs take milliseconds while a new
trial takes some to start, so fewer than ``concurrency`` trials are usually in
progress: each result reports ``mean_active``, the mean number of trials in progress
(paused ones included) at each result; the first ``concurrency`` trials wait for
each other at their start (a file barrier) so that the first wave does run together.
``limit="trials"`` uses ``max_concurrent_trials`` instead, which creates trials only
as slots free up; HyperBandScheduler then puts every trial into its first bracket (a
bracket counts as filled by its live trials, and its first bracket, of 4 trials for
20 epochs, never stops any), so it behaves as FIFO: that is why it is not the default.

Measured per scheduler and seed, by a Tune callback in the driver:

- ``epochs``: results reported over all trials (one result = one epoch);
- the anytime curve: after each trial ends (completed or stopped), the epochs
  consumed so far and the regret of the best *completed* trial, in accuracy points
  below the best final in the table (infinite before any trial has completed);
- ``final_regret``: that regret at the end;
- epochs until the regret first falls to ``tolerance`` points.

"Completed" means the trial reported all ``n_steps`` epochs (a STOP on the last
epoch does not undo it); its value is the run's recorded final accuracy. These are
the definitions of the Optuna replay.

Seeds and determinism: the seed fixes the order in which trials are created, not
the schedule. With ``concurrency > 1`` the interleaving of results from trials that
run at the same time depends on thread and process timing, and so do the decisions
of schedulers that compare trials: two runs of the same seed can differ by some
epochs or stopped trials (FIFO's totals cannot). With ``concurrency=1`` trials run
one after another and a replay is repeatable. HyperBandScheduler,
MedianStoppingRule and ``ncp_pause`` pause trials (the median rule yields to pending
trials while it lacks samples); for those the trainable reports a small checkpoint
(the epoch index) with every result and a paused trial resumes from it at its next
epoch, so no epoch is replayed twice (``restarts`` counts any that were; ``pauses``
counts the scheduler's PAUSE answers, ``resumes`` the restarts of paused trials).
``ncp_pause`` is NCPScheduler with the registry's PausingPolicy (one bracket of all
the table's trials); ``benchmarks/pausing_tune_check.py`` puts its Tune runs beside
the pausing simulator (:mod:`research.pausing_bench`) on the same trials and orders.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

try:
    from ray import tune
    from ray.tune.schedulers import (
        AsyncHyperBandScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        TrialScheduler,
    )
except ImportError as error:  # pragma: no cover
    raise ImportError(
        "research.ray_replay needs Ray Tune: pip install 'ncp-search[ray]'"
    ) from error

from ncp_search.integrations import registry
from ncp_search.integrations.ray.scheduler import NCPScheduler
from research.replay_common import epochs_to_reach, parse_spec, plot_anytime_regret, step_value

# Driver-side settings for the replays: two PENDING trials at a time (by default Tune
# creates up to 200 trials at once and requests an actor for each, and trials then start
# in whatever order their actors come up: up to 42 places away from the seeded order on
# digits_mlp; with 2, at most 4 places in the benchmark; with 1, the order is exact but
# a slot often waits for a new actor and fewer trials run at once); no per-trial
# CSV/JSON/TensorBoard loggers; the experiment state saved rarely (nothing is resumed).
_TUNE_ENV = {"TUNE_MAX_PENDING_TRIALS_PG": "2", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
             "TUNE_GLOBAL_CHECKPOINT_S": "3600"}

BUILT_IN = ("fifo", "async_hyperband", "hyperband", "median_stopping")
DEFAULT_SCHEDULERS = (*BUILT_IN, "ncp_percentile:best", "ncp:best", "ncp_percentile:ncp_raw",
                      "ncp:ncp_raw")
# schedulers that pause trials: the trainable reports checkpoints
PAUSING = ("hyperband", "median_stopping", "ncp_pause")
METRIC = "val_accuracy"


class _TrialPathOnAdd:
    """Scheduler mixin: give each trial its folder when it is added (a Ray 2.60 race).

    With few PENDING trials (``_TUNE_ENV``) and ``reuse_actors``, Tune can hand a
    cached actor to a pending trial that it has not yet prepared (``Trial.
    init_local_path``, normally called when an actor is requested for the trial);
    the actor's ``reset`` then fails with "Cannot access `trial_working_directory`
    without setting `trial_dir_name`" and the run aborts. Tune prepares every trial
    at once with its default of 200 pending trials; this does the same per trial,
    when it is created. Scheduling decisions are not touched.
    """

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        trial.init_local_path()
        super().on_trial_add(tune_controller, trial)  # type: ignore[misc]


class _CountPauses:
    """Scheduler mixin: count the PAUSE answers (``n_paused``); decisions untouched."""

    n_paused = 0

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        decision: str = super().on_trial_result(  # type: ignore[misc]
            tune_controller, trial, result)
        if decision == TrialScheduler.PAUSE:
            self.n_paused += 1
        return decision


class _FIFO(_TrialPathOnAdd, FIFOScheduler):
    pass


class _ASHA(_TrialPathOnAdd, AsyncHyperBandScheduler):
    pass


class _Median(_CountPauses, _TrialPathOnAdd, MedianStoppingRule):
    pass


class _NCP(_CountPauses, _TrialPathOnAdd, NCPScheduler):
    pass


class HyperBandFixed(_CountPauses, _TrialPathOnAdd, HyperBandScheduler):
    """HyperBandScheduler with a fix for a hang seen in this replay (Ray 2.60).

    When a bracket finishes, ``_Bracket.cleanup_full`` stops the bracket's PAUSED
    trials, but not a trial whose PAUSE decision is still being carried out (its
    checkpoint being saved; status still RUNNING). That trial then becomes PAUSED
    in a finished bracket, which nothing resumes or stops, and ``Tuner.fit`` waits
    forever (seen on fashion_select, seed 2, 4 concurrent trials). Here every call
    of ``choose_trial_to_run`` first stops PAUSED trials of finished brackets, as
    ``cleanup_full`` would have; no other decision changes.
    """

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        for band in self._hyperbands:
            for bracket in band:
                if bracket is None or not bracket.finished():
                    continue
                for trial in bracket.current_trials():
                    if trial.status == "PAUSED":
                        self.n_fixed = getattr(self, "n_fixed", 0) + 1
                        tune_controller.stop_trial(trial)
        return super().choose_trial_to_run(tune_controller)


_OPTIONS = ("rf", "grace", "alpha")  # ",key=value" options of a scheduler name
# Settings of the NCPScheduler variants beyond its defaults (the tests lower the
# start-up guard to replay 4-trial tables by hand).
NCP_SETTINGS: dict[str, Any] = {}


def make_scheduler(name: str, n_steps: int, n_trials: int | None = None) -> TrialScheduler:
    """A scheduler by name; the settings follow the Optuna replay's pruners.

    ``fifo`` (no stopping), ``async_hyperband`` (ASHA: grace period 1, reduction
    factor 4, as Optuna's SuccessiveHalvingPruner with its automatic minimum
    resource), ``hyperband`` (HyperBandScheduler, reduction factor 3, as Optuna's
    HyperbandPruner; with the fix of :class:`HyperBandFixed`), ``median_stopping``
    (MedianStoppingRule: grace period 2 epochs, at least 5 other trials, as Optuna's
    MedianPruner with 5 start-up trials and 2 warm-up steps), ``ncp:<predictor>``
    (NCPScheduler, ASHA on the predictions; ``ncp_asha`` is the same) and
    ``ncp_percentile:<predictor>`` (NCPScheduler, percentile rule), both with the
    scheduler's 0.1 defaults (grace period 2, 50th percentile, reduction factor 3,
    diverged trials run on); the names are :mod:`ncp_search.integrations.registry`'s.
    Options after the name
    change a setting:
    ``,rf=3`` (reduction factor), ``,grace=1`` (grace period) and, for NCP,
    ``,alpha=0.3`` (``incumbent_alpha``), e.g. ``async_hyperband,rf=3`` or
    ``ncp:best,grace=1,rf=3,alpha=0.3``. Each is the Tune class with
    :class:`_TrialPathOnAdd` mixed in (a work-around that changes no decision).

    A registry name without a predictor (``ncp``, ``ncp_percentile``) and ``ncp_pause``
    (``ncp_pause:<predictor>`` too) are built as the registry builds them for a sweep,
    with its defaults (``ncp``: ASHA, grace period 1, reduction factor 3, predictor
    ``best``, diverged trials stopped; ``ncp_pause``: NCPScheduler with a
    PausingPolicy of reduction factor 3, ``min_resource`` 1, ``keep_min``
    ``auto_keep_min(n_trials)``, one bracket of ``n_trials``), options ``,grace=G``
    and ``,rf=R`` where the registry name takes them. ``ncp_pause`` needs ``n_trials``
    (the number of trials of the run).
    """
    common = {"metric": METRIC, "mode": "max", "time_attr": "training_iteration"}
    spec = parse_spec(name)
    options = spec.options
    unknown = set(options) - set(_OPTIONS)
    if spec.shuffled or unknown:
        raise ValueError(f"scheduler {name!r}: the Ray replay takes the options "
                         f"{list(_OPTIONS)} (',key=value'), no '+shuffled'.")
    rf = options.get("rf")
    rule = registry.ncp_rule(registry.RAY, spec.head)
    if rule == "pause" or (rule is not None and not spec.predictor):
        return _registry_ncp(name, n_steps, n_trials)
    if rule is not None and spec.predictor:
        # 0.1's defaults, which the committed replay tables were made with
        settings = {"grace_period": 2, "prune_diverged": False, **NCP_SETTINGS}
        if rule == "asha":
            settings.pop("n_startup_trials", None)  # the percentile rule's only
        if rf is not None:
            settings["reduction_factor"] = rf
        if "grace" in options:
            settings["grace_period"] = int(options["grace"])
        if "alpha" in options:
            settings["incumbent_alpha"] = options["alpha"]
        return _NCP(max_t=n_steps, predictor=spec.predictor, rule=rule, **common, **settings)
    grace = int(options.get("grace", 1))
    factories: dict[str, Callable[[], TrialScheduler]] = {
        "fifo": lambda: _FIFO(),
        "async_hyperband": lambda: _ASHA(
            max_t=n_steps, grace_period=grace, reduction_factor=rf or 4, **common),
        "hyperband": lambda: HyperBandFixed(max_t=n_steps, reduction_factor=rf or 3, **common),
        "median_stopping": lambda: _Median(grace_period=2, min_samples_required=5, **common),
    }
    if spec.head not in factories or spec.predictor:
        raise ValueError(
            f"unknown scheduler {name!r}; available: {list(factories)}, 'ncp:<predictor>' "
            "(ASHA) and 'ncp_percentile:<predictor>', each with options ',rf=R', ',grace=G' "
            "and (NCP) ',alpha=A'."
        )
    return factories[spec.head]()


def _registry_ncp(name: str, n_steps: int, n_trials: int | None) -> TrialScheduler:
    """An NCP name as :mod:`ncp_search.integrations.registry` builds it (its defaults),
    its policy run by :class:`_NCP` (the same NCPScheduler with the mixins)."""
    spec = parse_spec(name)
    entry = registry.SCHEDULERS[spec.head]
    given = {"predictor": spec.predictor or None,
             "grace_period": int(spec.options["grace"]) if "grace" in spec.options else None,
             "reduction_factor": spec.options.get("rf")}
    refused = [k for k, v in given.items() if v is not None and k not in entry.settings]
    if refused or "alpha" in spec.options:
        raise ValueError(f"scheduler {name!r}: the registry's {spec.head!r} takes the settings "
                         f"{list(entry.settings)}, not {refused or ['incumbent_alpha']}.")
    if entry.rule == "pause" and n_trials is None:
        raise ValueError(f"scheduler {name!r} plans over the whole run: pass n_trials (the "
                         "number of trials), but got n_trials=None.")
    made = entry.make({k: v for k, v in given.items() if v is not None}, n_steps,
                      n_trials=n_trials, metric=METRIC, mode="max")
    return _NCP(metric=METRIC, mode="max", time_attr="training_iteration", max_t=n_steps,
                grace_period=int(made.settings()["grace_period"]), policy=made.policy)


def slim(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a trial needs of each recorded run: accuracy, beta_eff and the recorded
    training seconds (NaN where not recorded) per epoch."""
    n_steps = min(len(r["curve"]) - 1 for r in runs)
    return [
        {
            "val_accuracy": [step_value(r["curve"][s], "val_accuracy")
                             for s in range(1, n_steps + 1)],
            "beta_eff": [step_value(r["curve"][s], "beta_eff") for s in range(1, n_steps + 1)],
            "epoch_seconds": [step_value(r["curve"][s], "epoch_seconds")
                              for s in range(1, n_steps + 1)],
            "final": float(r["final_val_accuracy"]),
        }
        for r in runs
    ]


def _wait_for_first_wave(folder: str, run_index: int, wave: int, timeout: float = 60.0) -> None:
    """Start barrier: a trial's first epoch waits until ``wave`` trials have started.

    Replayed epochs take milliseconds and a trial's actor takes seconds to start, so
    without it the first trial would finish before the others of the first wave had
    reported anything; later trials reuse warm actors and pass at once.
    """
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, str(run_index)), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < wave and time.monotonic() < deadline:
        time.sleep(0.01)


def replay_trainable(config: dict[str, Any], runs: Sequence[dict[str, Any]]) -> None:
    """Function trainable: report run ``config["run_index"]`` epoch by epoch.

    Reports ``val_accuracy``, ``beta_eff`` and ``epoch`` through ``ray.tune.report``;
    with ``config["checkpoint"]`` also a checkpoint per epoch (a paused trial resumes
    after its last epoch); with ``config["barrier"]`` (a folder) it waits at its start
    for the first ``config["wave"]`` trials to start.
    """
    run = runs[config["run_index"]]
    n_steps = len(run["val_accuracy"])
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # resumed after a pause
        with checkpoint.as_directory() as folder:
            with open(os.path.join(folder, "epoch.json"), encoding="utf-8") as handle:
                start = int(json.load(handle)["epoch"])
    elif config.get("barrier"):
        _wait_for_first_wave(config["barrier"], config["run_index"], config["wave"])
    for epoch in range(start + 1, n_steps + 1):
        metrics = {METRIC: run["val_accuracy"][epoch - 1],
                   "beta_eff": run["beta_eff"][epoch - 1], "epoch": epoch}
        if not config.get("checkpoint"):
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "epoch.json"), "w", encoding="utf-8") as handle:
                json.dump({"epoch": epoch}, handle)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


class _Ledger(tune.Callback):
    """Counts epochs and follows the best completed trial, in the driver."""

    def __init__(self, runs: Sequence[dict[str, Any]]) -> None:
        self.finals = [r["final"] for r in runs]
        self.epoch_seconds = [r.get("epoch_seconds") for r in runs]
        self.trained_seconds = 0.0  # recorded seconds of the epochs replayed
        self.n_steps = len(runs[0]["val_accuracy"])
        self.best_possible = max(self.finals)
        self.epochs = 0
        self.best = -math.inf
        self.curve: list[tuple[int, float]] = []
        self.started: list[int] = []
        self.last_epoch: dict[str, int] = {}
        self.ended: set[str] = set()
        self.seen: set[str] = set()
        self.active: set[str] = set()  # trials that reported and have not ended
        self.active_sum = 0
        self.n_stopped = 0
        self.stopped_runs: list[int] = []  # run indices of the trials stopped early
        self.n_starts = 0
        self.restarts = 0
        self.errors = 0
        # (run index, epoch) of each result; (run index, -1) at each (re)start
        self.trace: list[tuple[int, int]] = []

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.n_starts += 1  # a trial resumed after a pause starts again
        self.trace.append((int(trial.config["run_index"]), -1))
        if trial.trial_id not in self.seen:
            self.seen.add(trial.trial_id)
            self.started.append(int(trial.config["run_index"]))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        self.epochs += 1
        self.active.add(trial.trial_id)
        self.active_sum += len(self.active)
        epoch = int(result["epoch"])
        self.trace.append((int(trial.config["run_index"]), epoch))
        recorded = self.epoch_seconds[int(trial.config["run_index"])]
        if recorded and 1 <= epoch <= len(recorded) and math.isfinite(recorded[epoch - 1]):
            self.trained_seconds += recorded[epoch - 1]
        if epoch != self.last_epoch.get(trial.trial_id, 0) + 1:
            self.restarts += 1  # a trial that resumed without its checkpoint
        self.last_epoch[trial.trial_id] = epoch

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self.ended:
            return
        self.ended.add(trial.trial_id)
        self.active.discard(trial.trial_id)
        if self.last_epoch.get(trial.trial_id, 0) >= self.n_steps:
            self.best = max(self.best, self.finals[int(trial.config["run_index"])])
        else:
            self.n_stopped += 1
            self.stopped_runs.append(int(trial.config["run_index"]))
        self.curve.append((self.epochs, 100.0 * (self.best_possible - self.best)))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.errors += 1


@contextlib.contextmanager
def _tune_env() -> Any:
    saved = {key: os.environ.get(key) for key in _TUNE_ENV}
    os.environ.update({k: v for k, v in _TUNE_ENV.items() if saved[k] is None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


def replay(
    runs: Sequence[dict[str, Any]],
    scheduler_name: str,
    seed: int,
    concurrency: int = 4,
    num_cpus: float = 2.0,
    limit: str = "cpus",
    storage: str | None = None,
    order: Sequence[int] | None = None,
    trace: bool = False,
) -> dict[str, Any]:
    """One Tune run over all runs in a seeded order; returns its anytime curve.

    ``runs`` are recorded runs (``final_val_accuracy`` and ``curve``). Ray must be
    initialised with ``num_cpus`` CPUs (one ``ray.init`` serves many replays); each
    trial asks for ``num_cpus / concurrency`` of them. ``limit="trials"`` limits
    concurrency by ``max_concurrent_trials`` instead (see the module's docstring).
    The Tune run writes into a temporary folder under ``storage``, removed after.
    ``order``: the run indices in the order their trials are created (default: the
    seed's permutation, ``default_rng(seed).permutation(len(runs))``, the budget and
    pausing benchmarks' order); ``trace``: also return ``(run index, epoch)`` of every
    result in the order the driver received them, and ``(run index, -1)`` at every
    start of a trial (a resumed trial starts again).
    """
    import ray

    if not ray.is_initialized():
        raise RuntimeError("ray_replay.replay needs ray.init() first.")
    if limit not in ("cpus", "trials"):
        raise ValueError(f"limit must be 'cpus' or 'trials', but got limit={limit!r}.")
    data = slim(runs)
    n_steps = len(data[0]["val_accuracy"])
    if order is None:
        order = np.random.default_rng(seed).permutation(len(runs)).tolist()
    order = [int(i) for i in order]
    if sorted(order) != list(range(len(runs))):
        raise ValueError(f"order must hold each run index 0..{len(runs) - 1} once, but got "
                         f"{len(order)} indices ({len(set(order))} distinct).")
    ledger = _Ledger(data)
    cpus = num_cpus / concurrency
    scheduler = make_scheduler(scheduler_name, n_steps, n_trials=len(runs))
    folder = tempfile.mkdtemp(prefix="ray_replay_", dir=storage)
    started = time.perf_counter()
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(replay_trainable, runs=data),
                                {"cpu": cpus}),
            param_space={"run_index": tune.grid_search(order),
                         "checkpoint": parse_spec(scheduler_name).head in PAUSING,
                         "barrier": os.path.join(folder, "barrier"),
                         "wave": min(concurrency, len(runs))},
            tune_config=tune.TuneConfig(
                scheduler=scheduler, reuse_actors=True,
                max_concurrent_trials=concurrency if limit == "trials" else None),
            run_config=tune.RunConfig(
                name="replay", storage_path=folder, verbose=0, callbacks=[ledger],
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1)),
        )
        # Tune prints its banner even at verbose=0
        with _tune_env(), contextlib.redirect_stdout(io.StringIO()):
            results = tuner.fit()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if results.errors or ledger.errors:
        raise RuntimeError(f"{scheduler_name}, seed {seed}: {len(results.errors)} trials failed: "
                           f"{results.errors[:1]}")
    if len(ledger.ended) != len(runs):
        raise RuntimeError(f"{scheduler_name}, seed {seed}: {len(ledger.ended)} of {len(runs)} "
                           "trials ended.")
    return {
        "scheduler": scheduler_name,
        "seed": seed,
        "epochs": ledger.epochs,
        # Tune's own count: the last training_iteration of each trial
        "epochs_tune": int(sum(r.metrics.get("training_iteration", 0) for r in results)),
        "final_regret": 100.0 * (ledger.best_possible - ledger.best),
        "curve": ledger.curve,
        # the recorded training seconds of the epochs replayed (0 without recorded times)
        "trained_seconds": ledger.trained_seconds,
        "stopped_runs": ledger.stopped_runs,
        "n_stopped": ledger.n_stopped,
        "n_trials": len(results),
        "resumes": ledger.n_starts - len(ledger.started),
        "pauses": int(getattr(scheduler, "n_paused", 0)),  # PAUSE answers
        # trials in progress (reported, not ended) at each result, paused ones included
        "mean_active": ledger.active_sum / max(ledger.epochs, 1),
        "restarts": ledger.restarts,
        "hyperband_fixes": getattr(scheduler, "n_fixed", 0),  # see HyperBandFixed
        "order": order,
        "started": ledger.started,
        "seconds": time.perf_counter() - started,
        **({"trace": ledger.trace} if trace else {}),
    }


def summarize(results: Sequence[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Per scheduler (in order of first appearance): means over its seeds.

    ``epochs_vs_fifo`` divides by FIFO's mean epochs; ``epochs_to_tolerance`` is the
    mean over the seeds that got within ``tolerance`` points (``reached`` of them).
    """
    names = list(dict.fromkeys(r["scheduler"] for r in results))
    fifo = [r["epochs"] for r in results if r["scheduler"] == "fifo"]
    fifo_epochs = float(np.mean(fifo)) if fifo else math.nan
    summary = {}
    for name in names:
        mine = [r for r in results if r["scheduler"] == name]
        reach = [epochs_to_reach(r["curve"], tolerance) for r in mine]
        finite = [x for x in reach if math.isfinite(x)]
        epochs = float(np.mean([r["epochs"] for r in mine]))
        summary[name] = {
            "epochs": epochs,
            "epochs_vs_fifo": epochs / fifo_epochs,
            "final_regret": float(np.mean([r["final_regret"] for r in mine])),
            "max_final_regret": float(np.max([r["final_regret"] for r in mine])),
            "reached": len(finite),
            "seeds": len(mine),
            "epochs_to_tolerance": float(np.mean(finite)) if finite else math.inf,
            "n_stopped": float(np.mean([r["n_stopped"] for r in mine])),
            "resumes": float(np.mean([r["resumes"] for r in mine])),
            "pauses": float(np.mean([r.get("pauses", 0) for r in mine])),
            "mean_active": float(np.mean([r.get("mean_active", math.nan) for r in mine])),
            "restarts": int(sum(r["restarts"] for r in mine)),
            "seconds": float(np.mean([r["seconds"] for r in mine])),
        }
    return summary


def best_built_in(summary: dict[str, Any]) -> str | None:
    """The built-in stopping scheduler with the fewest epochs among those with the
    lowest mean final regret (FIFO excluded); None without one."""
    rows = {k: v for k, v in summary.items() if k in BUILT_IN and k != "fifo"}
    if not rows:
        return None
    least = min(v["final_regret"] for v in rows.values())
    tied = {k: v for k, v in rows.items() if v["final_regret"] <= least + 1e-9}
    return min(tied, key=lambda k: tied[k]["epochs"])


def targets(summary: dict[str, Any], share_of_fifo: float = 0.25,
            vs_best: float = 0.7) -> dict[str, dict[str, Any]]:
    """Issue targets per NCP scheduler: at most ``share_of_fifo`` of FIFO's epochs,
    and at most ``vs_best`` times the epochs of the best built-in with a mean final
    regret no lower than the NCP scheduler's."""
    best = best_built_in(summary)
    out = {}
    for name, row in summary.items():
        if not name.startswith("ncp"):
            continue
        ratio = row["epochs"] / summary[best]["epochs"] if best else math.nan
        regret_ok = bool(best) and row["final_regret"] <= summary[best]["final_regret"] + 1e-9
        out[name] = {
            "epochs_vs_fifo": row["epochs_vs_fifo"],
            "fifo_target_met": bool(row["epochs_vs_fifo"] <= share_of_fifo),
            "best_built_in": best,
            "epochs_vs_best": ratio,
            "regret_not_worse": regret_ok,
            "best_target_met": bool(regret_ok and ratio <= vs_best),
        }
    return out


def compare(
    runs: Sequence[dict[str, Any]],
    schedulers: Sequence[str] = DEFAULT_SCHEDULERS,
    seeds: Sequence[int] = range(10),
    tolerance: float = 0.5,
    concurrency: int = 4,
    num_cpus: float = 2.0,
    limit: str = "cpus",
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """All schedulers over all seeds (seed by seed, every scheduler on each), with a
    summary per scheduler. Ray must be initialised with ``num_cpus`` CPUs."""
    for name in schedulers:  # fail before any Tune run on a bad name
        make_scheduler(name, 2, n_trials=len(runs))
    results = []
    for seed in seeds:
        started = time.perf_counter()
        for name in schedulers:
            results.append(replay(runs, name, seed, concurrency=concurrency,
                                  num_cpus=num_cpus, limit=limit))
        if progress:
            progress(f"seed {seed}: {len(schedulers)} schedulers in "
                     f"{time.perf_counter() - started:.0f} s")
    summary = summarize(results, tolerance)
    return {"tolerance": tolerance, "concurrency": concurrency, "limit": limit,
            "summary": summary, "targets": targets(summary), "runs": results}


def format_summary(report: dict[str, Any]) -> str:
    """The summary as a table, with epochs and epochs-to-tolerance against FIFO and
    against the best built-in (lowest mean final regret, then fewest epochs)."""
    summary = report["summary"]
    fifo = summary.get("fifo", {}).get("epochs_to_tolerance", math.nan)
    best = best_built_in(summary)
    base = summary[best]["epochs"] if best else math.nan
    tol = f"epochs to {report['tolerance']} pt"
    lines = [
        f"{'scheduler':<18} {'epochs':>7} {'vs fifo':>8} {'vs best':>8} {'stopped':>8} "
        f"{'final regret':>13} {'(max)':>6} {'reached':>8} {tol:>16} {'vs fifo':>8} "
        f"{'active':>6} {'s/run':>6}"
    ]
    for name, row in summary.items():
        lines.append(
            f"{name:<18} {row['epochs']:>7.0f} {row['epochs_vs_fifo']:>8.2f} "
            f"{row['epochs'] / base:>8.2f} {row['n_stopped']:>8.1f} "
            f"{row['final_regret']:>13.2f} {row['max_final_regret']:>6.2f} "
            f"{row['reached']:>4}/{row['seeds']:<3} {row['epochs_to_tolerance']:>16.0f} "
            f"{row['epochs_to_tolerance'] / fifo:>8.2f} {row['mean_active']:>6.1f} "
            f"{row['seconds']:>6.1f}"
        )
    lines.append("active: trials in progress (reported, not ended; paused ones included) at "
                 "each result, mean")
    lines.append(f"best built-in (lowest mean final regret, then fewest epochs): {best}")
    for name, row in targets(summary).items():
        lines.append(
            f"target {name}: {row['epochs_vs_fifo']:.2f} of FIFO's epochs (<= 0.25: "
            f"{'met' if row['fifo_target_met'] else 'not met'}); {row['epochs_vs_best']:.2f}x "
            f"{row['best_built_in']}, regret {'not worse' if row['regret_not_worse'] else 'worse'}"
            f" (<= 0.7x at no worse regret: {'met' if row['best_target_met'] else 'not met'})"
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str, title: str = "") -> None:
    """Mean anytime regret against epochs consumed, one line per scheduler."""
    plot_anytime_regret(report, path, group_key="scheduler", title=title, colormap="tab10")
