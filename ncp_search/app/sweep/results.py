"""Read a sweep's output folder back as plain trial records, and summarise them.

A trial record::

    {"number": 3, "state": "COMPLETE" | "PRUNED" | "FAIL" | "RUNNING" | "WAITING",
     "params": {...}, "val_accuracy": [per epoch], "beta_eff": [per epoch],
     "predicted_final": [per epoch, None where none], "final": float | None,
     "model_path": "models/trial_0003.keras" | None, "seconds": float | None,
     "epoch_seconds": [per epoch], "diverged": reason | None,
     "stop": {"epoch": 1-based, "reason", "value", "threshold"} | None}

``seconds`` is the trial's whole wall time (model loading and building included),
``epoch_seconds`` the wall time of each epoch (``beta_eff`` measurement included);
``diverged`` says why a PRUNED trial counts as diverged
(:func:`ncp_search.app.sweep.trial.divergence`); ``stop`` is the pruner's or
scheduler's decision at a PRUNED trial's stop (Optuna: the ``ncp_decision`` user
attribute; Ray: NCPScheduler's journal, :func:`ray_stops`). Under ``ncp_pause`` on
Optuna a record is a configuration, possibly a chain of trials, and also holds
``trials`` (their numbers), ``pauses`` and ``checkpoint_seconds``
(:func:`optuna_records`). An Optuna record that runs again a trial that failed (killed
or interrupted) holds ``retries``: that trial's number (over a chain, each one's).

Optuna sweeps are read from their storage (the URL in ``sweep.json``, or the one
given), Ray sweeps from ``trials.jsonl`` written by the driver.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ncp_search.app.sweep.folder import META_FILE, read_meta
from ncp_search.app.sweep.hosts import pid_alive
from ncp_search.app.sweep.progress import (
    NOT_ESTIMATED,
    TRIAL_TIME_MEANING,
    duration,
    failed_run_again,
    resume_starts,
    stopped_text,
    time_accounting,
    trial_seconds,
    trial_time_text,
    trial_time_used_text,
)
from ncp_search.errors import NCPSearchError

RAY_TRIALS_FILE = "trials.jsonl"
__all__ = ["META_FILE", "RAY_JOURNAL_FILE", "RAY_TRIALS_FILE", "load_trials", "ray_decisions",
           "ray_stops", "read_meta", "summarize_sweep"]


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _stored_number(value: Any) -> float | None:
    """A number a study stored (a user attribute), None when it is not a finite one."""
    return _number(value) if isinstance(value, (int, float)) else None


def optuna_records(study: Any) -> list[dict[str, Any]]:
    """Trial records of an Optuna study written by the sweep (or any NCPPruner study).

    Under ``ncp_pause`` a configuration that paused and resumed is a chain of trials
    (``ncp_resumes``): it is one record (``number``: its first trial; ``trials``: the
    chain's trial numbers; ``pauses``: how many of them paused; ``rungs``: each rung's
    epochs done and predicted final (paused there, or promoted as it arrived and
    trained on in the same trial); its curve, epoch times,
    seconds and ``checkpoint_seconds`` summed over the chain; its state, model and
    stop those of its last trial; ``paused``: its last trial paused, so it keeps a
    checkpoint and may resume), so it and its epochs count once. An interrupted
    trial of a chain (FAIL) stays a record of its own."""
    from ncp_search.integrations.optuna.pausing import configurations

    return [_joined([_optuna_record(trial) for trial in group])
            for group in configurations(study.get_trials(deepcopy=False))]


def _optuna_record(trial: Any) -> dict[str, Any]:
    from ncp_search.app.sweep.optuna_backend import (
        CHECKPOINT_SECONDS_ATTR,
        DIVERGED_ATTR,
        EPOCH_SECONDS_ATTR,
        MODEL_ATTR,
        RETRY_ATTR,
    )
    from ncp_search.integrations.optuna.pausing import PAUSED_ATTR, PREDICTED_ATTR
    from ncp_search.integrations.optuna.pruner import BETA_ATTR, HISTORY_ATTR

    steps = sorted(trial.intermediate_values)
    betas = trial.user_attrs.get(BETA_ATTR, {})
    predicted = trial.user_attrs.get(HISTORY_ATTR, {})
    values = [_number(trial.intermediate_values[s]) for s in steps]
    seconds = trial_seconds(trial)  # the progress line's source too
    record = {
        "number": trial.number, "state": trial.state.name, "params": dict(trial.params),
        "val_accuracy": values,
        "beta_eff": [_number(betas.get(str(s))) for s in steps] if betas else [],
        "predicted_final": ([_number(predicted.get(str(s))) for s in steps]
                            if predicted else []),
        "final": values[-1] if values else None,
        "model_path": trial.user_attrs.get(MODEL_ATTR), "seconds": seconds,
        "epoch_seconds": [_number(v) for v in trial.user_attrs.get(EPOCH_SECONDS_ATTR, [])],
        "diverged": trial.user_attrs.get(DIVERGED_ATTR),
        "stop": trial.user_attrs.get("ncp_decision"),
    }
    retry_of = trial.user_attrs.get(RETRY_ATTR)
    if isinstance(retry_of, int):  # it runs again a trial that failed (killed, interrupted)
        record["retries"] = [retry_of]
    if CHECKPOINT_SECONDS_ATTR in trial.user_attrs:
        record["checkpoint_seconds"] = _number(trial.user_attrs[CHECKPOINT_SECONDS_ATTR])
        record["paused"] = PAUSED_ATTR in trial.user_attrs
        # the rungs it passed in this trial (promoted as it arrived: a prediction
        # recorded there) and the one it paused at; steps continue along a chain
        rungs = {int(k) + 1: _stored_number(v) for k, v in predicted.items()
                 if isinstance(k, str) and k.isdigit()}
        if record["paused"] and steps:
            rungs[int(steps[-1]) + 1] = _stored_number(trial.user_attrs.get(PREDICTED_ATTR))
        if rungs:
            record["rungs"] = [{"epoch": e, "prediction": rungs[e]} for e in sorted(rungs)]
    return record


def _joined(chain: list[dict[str, Any]]) -> dict[str, Any]:
    """One record of a configuration's chain of trial records (see optuna_records)."""
    if len(chain) == 1 and "paused" not in chain[0]:
        return chain[0]
    first, last = chain[0], chain[-1]
    seconds = [r["seconds"] for r in chain]
    out = {**last, "number": first["number"], "params": first["params"],
           "trials": [r["number"] for r in chain],
           "pauses": sum(bool(r.get("paused")) for r in chain),
           "rungs": [rung for r in chain for rung in r.get("rungs", [])],
           "seconds": None if None in seconds else sum(seconds),
           "checkpoint_seconds": sum(r.get("checkpoint_seconds") or 0.0 for r in chain),
           "retries": [n for r in chain for n in r.get("retries", ())]}
    for key in ("val_accuracy", "beta_eff", "predicted_final", "epoch_seconds"):
        if key in ("beta_eff", "predicted_final") and not any(r[key] for r in chain):
            out[key] = []
            continue
        out[key] = [v for r in chain for v in (r[key] or [None] * len(r["val_accuracy"]))]
    out["resumed_at"] = list(resume_starts(len(r["val_accuracy"]) for r in chain))
    out["paused"] = bool(last.get("paused"))  # its last trial paused: it may resume
    out["final"] = out["val_accuracy"][-1] if out["val_accuracy"] else None
    return out


RAY_JOURNAL_FILE = "ncp_scheduler.jsonl"


def ray_stops(path: str | os.PathLike[str], mode: str = "max") -> dict[str, dict[str, Any]]:
    """The stop decision of each trial an NCPScheduler stopped, read from its journal
    (``ncp_scheduler.jsonl``), keyed by Tune trial id: ``{"epoch", "reason", "value",
    "threshold"}`` as the report draws it (``epoch`` the 1-based training iteration;
    ``value``, the compared prediction, and ``threshold`` in the metric's own units,
    the journal holding them as "higher is better"). A trial stopped more than once
    (run again after a restore) keeps its last stop; {} without a journal."""
    return ray_decisions(path, mode)[0]


def ray_decisions(path: str | os.PathLike[str], mode: str = "max") -> tuple[
        dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """``(stops, rungs)`` from an NCPScheduler's journal, keyed by Tune trial id: the
    stops of :func:`ray_stops`, and under a pausing policy each trial's rungs
    (``{"epoch", "prediction"}``, in the metric's units, in order; a rung decided again
    after a restore counted once)."""
    import logging

    from ncp_search.integrations.ray.journal import Journal

    log = logging.getLogger(__name__)
    events = Journal(str(path), lambda _key, message: log.warning("%s", message)).read()
    sign = -1.0 if mode == "min" else 1.0
    stops: dict[str, dict[str, Any]] = {}
    rungs: dict[str, dict[int, dict[str, Any]]] = {}
    for event in events or []:
        if event["e"] != "decision":
            continue
        value, threshold = event.get("p"), event.get("th")
        if event.get("pause"):
            epoch = int(event["t"])
            rungs.setdefault(event["id"], {})[epoch] = {
                "epoch": epoch, "prediction": None if value is None else sign * value}
        if not event["stop"]:
            continue
        stops[event["id"]] = {
            "epoch": int(event["t"]), "reason": event.get("why"),
            "value": None if value is None else sign * value,
            "threshold": None if threshold is None else sign * threshold}
    return stops, {key: [marks[e] for e in sorted(marks)] for key, marks in rungs.items()}


HEARTBEAT_GRACE_S = 120.0
"""A RUNNING Ray trial record whose driver is gone, or whose heartbeat is older than
this, is shown as FAIL."""


def fail_if_stale(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A Ray trial record, marked FAIL (``stale: True``, no model) if it says RUNNING
    but the driver that ran it is dead (same host) or its heartbeat (the time of
    its last result) is older than :data:`HEARTBEAT_GRACE_S`."""
    import socket
    import time

    if record.get("state") not in ("RUNNING", "WAITING"):
        return record
    host, _, pid = str(record.get("driver", "")).rpartition(":")
    beat = record.get("heartbeat")
    dead = host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))
    old = beat is None or (now or time.time()) - float(beat) > HEARTBEAT_GRACE_S
    if dead or old:
        record = {**record, "state": "FAIL", "stale": True, "model_path": None}
    return record


RAY_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")


def read_ray_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The trial records of a Ray sweep's ``trials.jsonl`` (none if it does not
    exist), each checked (an object with an integer ``number``, a known ``state``,
    ``params`` an object, the per-epoch series lists).

    Raises:
        NCPSearchError: naming the first damaged line.
    """
    from ncp_search.app.jsonio import read_jsonl

    try:
        rows = read_jsonl(path)
    except (ValueError, RecursionError) as error:
        raise NCPSearchError(f"{path} is damaged ({str(error)[:200]}); the sweep rewrites it "
                             "atomically, so something else changed it: restore it from a "
                             "copy.") from None
    series = ("val_accuracy", "beta_eff", "predicted_final", "epoch_seconds")
    for number, row in enumerate(rows, start=1):
        ok = (isinstance(row, dict) and type(row.get("number")) is int and row["number"] >= 0
              and row.get("state") in RAY_STATES and isinstance(row.get("params", {}), dict)
              and all(isinstance(row.get(key) or [], list) for key in series)
              and isinstance(row.get("trial_id") or "", str))
        if not ok:
            raise NCPSearchError(
                f"{path}: record {number} is damaged (expected an object with an integer "
                f"number, a state in {list(RAY_STATES)}, params an object and lists per "
                f"epoch, but got {json.dumps(row)[:120]}); the sweep rewrites it atomically, "
                "so something else changed it: restore it from a copy.")
    return rows


def load_trials(output: str | os.PathLike[str],
                storage: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(meta, trials)`` of a sweep's output folder.

    Raises:
        NCPSearchError: if the folder holds no sweep, or its storage cannot be read.
    """
    folder = Path(output)
    meta_path = folder / META_FILE
    if not meta_path.exists():
        raise NCPSearchError(f"{folder} holds no sweep (no sweep.json); run `ncp-search sweep "
                             "CONFIG` first, or point at the config's output folder.")
    meta = read_meta(meta_path)
    if meta["backend"] == "ray":
        records = [fail_if_stale(r) for r in read_ray_records(folder / RAY_TRIALS_FILE)]
        if any(r["state"] == "PRUNED" and "stop" not in r for r in records):
            # records written before they kept the decision: the journal has it
            stops = ray_stops(folder / RAY_JOURNAL_FILE)
            records = [{**r, "stop": stops.get(str(r.get("trial_id")))}
                       if r["state"] == "PRUNED" and "stop" not in r else r for r in records]
        return meta, records
    import optuna

    from ncp_search.app.sweep.folder import check_study, resolve_storage
    from ncp_search.app.sweep.optuna_backend import open_storage
    from ncp_search.app.sweep.secrets import MASK, STORAGE_ENV, mask_url

    if storage is None and meta["storage"] is None:
        raise NCPSearchError(f"{meta_path} names no storage; pass --storage URL.")
    url = storage or resolve_storage(meta["storage"], folder)
    if MASK in url:
        url = os.environ.get(STORAGE_ENV) or ""
        if not url:
            raise NCPSearchError(f"{meta_path} masks the storage password; set the "
                                 f"environment variable {STORAGE_ENV} to the storage URL (or "
                                 "pass --storage URL).")
    database = url.partition(":///")[2] if url.startswith("sqlite") else ""
    if database and database != ":memory:" and not Path(database).is_file():
        raise NCPSearchError(f"{folder}'s study {mask_url(url)} does not exist; pass "
                             "--storage URL of the sweep's study.")
    try:
        study = optuna.load_study(study_name=meta["study_name"], storage=open_storage(url))
    except KeyError:
        raise NCPSearchError(f"no study {meta['study_name']!r} in {mask_url(url)}.") from None
    check_study(study, meta, folder)
    return meta, optuna_records(study)


CHANCE_MARGIN = 0.05
"""A best final within this of chance accuracy (1 / classes) is "not better than
chance"."""


def chance_accuracy(meta: dict[str, Any]) -> float | None:
    """The accuracy of guessing uniformly over the target's classes (None if the
    sweep's meta does not say how many there are)."""
    classes = meta.get("num_classes")
    if classes is None:
        target = (meta.get("config") or {}).get("data", {}).get("target")
        if not target:
            return None
        from ncp_search.app.data import _parse_spec

        listed = _parse_spec(str(target))[1]
        classes = len(set(listed)) if listed else 10
    return 1.0 / max(int(classes), 2)


def _pauses(meta: dict[str, Any]) -> bool:
    """Whether the sweep's pruner or scheduler pauses, as the registry says of its name
    (the name the progress line's rule reads too, through the validated config)."""
    from ncp_search.integrations import registry

    backend = str(meta.get("backend") or "")
    name = str(meta.get("pruner") or "").split(" ")[0]  # "<name> (<settings>)"
    return registry.ncp_rule(backend, name) == "pause"


def summarize_sweep(meta: dict[str, Any], trials: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts, epochs used against no pruning, the best complete trial, and warnings
    (the best not better than chance; diverged trials; the config's warnings)."""
    epochs = int(meta["epochs"])
    states = [t["state"] for t in trials]
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    used = sum(len(t["val_accuracy"]) for t in finished)
    full = epochs * len(finished)
    complete = [t for t in trials if t["state"] == "COMPLETE" and t["final"] is not None]
    best = max(complete, key=lambda t: t["final"], default=None)
    times = time_accounting(((len(t["val_accuracy"]), t.get("seconds"),
                              t.get("epoch_seconds") or [], t.get("resumed_at") or ())
                             for t in finished), epochs)
    diverged = [t["number"] for t in trials if t.get("diverged")]
    warnings = list(meta.get("warnings") or [])
    chance = chance_accuracy(meta)
    best_vs_chance = None
    if best is not None and chance is not None:
        best_vs_chance = best["final"] - chance
        if best_vs_chance <= CHANCE_MARGIN:
            warnings.append(
                f"the best trial ({best['number']}, val_accuracy {best['final']:.4f}) is not "
                f"better than chance ({chance:.4f} for {round(1 / chance)} classes): no "
                "configuration learned the task; check the learning-rate range and the data.")
    if diverged:
        warnings.append(f"{len(diverged)} trial(s) diverged and were pruned: {diverged}.")
    return {
        "name": meta["name"], "backend": meta["backend"], "pruner": meta.get("pruner"),
        "trials": len(trials),
        **{state.lower(): states.count(state) for state in ("COMPLETE", "PRUNED", "FAIL",
                                                            "RUNNING")},
        "diverged": len(diverged),
        # failed trials a later trial ran again (same configuration and seed)
        "failed_run_again": failed_run_again(trials),
        "paused": sum(t["state"] == "PRUNED" and bool(t.get("paused")) for t in trials),
        "pausing": _pauses(meta),
        "epochs_used": used, "epochs_without_pruning": full,
        "epochs_saved_fraction": (full - used) / full if full else 0.0,
        **times,
        "chance_accuracy": chance,
        "best": None if best is None else {
            "number": best["number"], "final": best["final"], "params": best["params"],
            "model_path": best["model_path"],
            # its trials' numbers: under ncp_pause a chain whose last holds the final value
            # (the study's best_trial), else the one trial
            "trials": list(best.get("trials") or [best["number"]]),
            "better_than_chance": None if best_vs_chance is None
            else best_vs_chance > CHANCE_MARGIN},
        "warnings": warnings,
    }


def _run_again_text(summary: dict[str, Any]) -> str:
    again = summary.get("failed_run_again") or 0
    if not again:
        return ""
    every = "" if again == summary["fail"] else f"{again} of them "
    return f" ({every}interrupted and run again)"


def format_summary(summary: dict[str, Any], output: str | os.PathLike[str]) -> str:
    """The end-of-sweep lines the CLI prints."""
    diverged = f" ({summary['diverged']} diverged)" if summary.get("diverged") else ""
    lines = [
        f"{summary['name']} [{summary['backend']}, {summary['pruner']}]: {summary['trials']} "
        f"trials: {summary['complete']} complete, "
        f"{stopped_text(summary, kept=' (checkpoints kept)', diverged=diverged)}, "
        f"{summary['fail']} failed{_run_again_text(summary)}",
        f"epochs: {summary['epochs_used']} used of {summary['epochs_without_pruning']} without "
        f"pruning ({100 * summary['epochs_saved_fraction']:.0f}% saved)",
    ]
    saved_time = trial_time_text(summary)
    if saved_time is not None:
        fixed = summary.get("fixed_seconds_per_trial")
        fixed_text = ("" if fixed is None else f"; {fixed:.1f} s per trial outside steady "
                      "epochs (model build, first-epoch compilation)")
        lines.append(f"time: {trial_time_used_text(summary)}, {saved_time} (saved: estimated "
                     f"from the trials' epoch times{fixed_text}; {TRIAL_TIME_MEANING})")
    elif summary.get("seconds_used") is not None:
        lines.append(f"time: {trial_time_used_text(summary)} (time saved not estimated: "
                     f"{NOT_ESTIMATED}; {TRIAL_TIME_MEANING})")
    if summary.get("wall_seconds") is not None:
        lines.append(f"wall clock of this run: {duration(summary['wall_seconds'])}")
    best = summary["best"]
    if best is None:
        lines.append("no complete trial yet")
    else:
        model = (f"model {Path(output) / best['model_path']}" if best["model_path"]
                 else "model not saved")
        lines.append(f"best: trial {best['number']} val_accuracy {best['final']:.4f} "
                     f"{json.dumps(best['params'])}; {model}")
    lines += [f"warning: {warning}" for warning in summary.get("warnings") or []]
    return "\n".join(lines)
