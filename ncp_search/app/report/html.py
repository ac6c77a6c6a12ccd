"""Self-contained HTML report of a sweep (``ncp-search report OUTPUT_DIR``).

:func:`write_report` writes ``report.html`` (figures embedded as base64 PNG, inline
CSS, no script, no external resource) and the same figures as PNG files in
``report/``. Matplotlib and SciPy are imported only when a report is written.

What it shows: what decided (pruner or scheduler, rule, predictor, whether that
predictor reads ``beta_eff``, how many trials each reason stopped), the best
configuration, epochs and seconds saved, per-trial learning curves with the points
where trials were stopped (and the rule's threshold there, where the trial record
has it: ``record["stop"] = {"epoch": 1-based, "reason": ..., "value": compared
prediction, "threshold": ...}`` in the metric's own units), predicted vs actual
final values over complete trials only (with their number and the survivorship
caveat; Kendall tau from :data:`MIN_TAU_TRIALS` trials on), ``beta_eff``
trajectories labelled by whether they decided, the optimisation history and a
table of all trials whose "final" column is empty for trials that never finished.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import ncp_search.app.report.plots as report_plots
from ncp_search.app.report.decider import (
    STOP_REASONS,
    Decider,
    beta_eff_heading,
    describe,
    predictor_sentence,
    rule_sentence,
)

FIGURES = ("learning_curves", "trial_curves", "predicted_vs_actual", "beta_eff", "history",
           "epochs_saved")
MIN_TAU_TRIALS = 10  # below this Kendall tau is not shown (see _tau_note)
MAX_PANELS = 30  # per-trial panels drawn
_CSS = """
body{font-family:sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;
text-align:left;vertical-align:top;font-size:.92em}th{background:#f2f2f2}
img{max-width:100%;height:auto}.note{color:#555;font-style:italic}code{background:#f4f4f4}
"""


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def _array(values: Any) -> np.ndarray:
    return np.array([_float(v) for v in (values or [])], dtype=float)


def _last(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if len(finite) else math.nan


def _stop(trial: dict[str, Any], state: str, val: np.ndarray,
          pred: np.ndarray) -> dict[str, Any] | None:
    """Where a PRUNED trial stopped: its last epoch and value there, and the decision
    (compared value, threshold, reason) where its record holds one."""
    if state != "PRUNED" or not len(val):
        return None
    raw = trial.get("stop")
    stored: dict[str, Any] = raw if isinstance(raw, dict) else {}
    epoch = stored.get("epoch")
    epoch = int(epoch) if isinstance(epoch, (int, float)) and 1 <= epoch <= len(val) else len(val)
    value = _float(stored.get("value"))
    if math.isnan(value) and len(pred) >= epoch:
        value = _float(pred[epoch - 1])
    reason = stored.get("reason")
    if trial.get("diverged"):  # stopped by the sweep's divergence check, not the rule
        reason = "diverged"
    elif reason is None and trial.get("paused"):  # a pausing rule's: not promoted at its rung
        reason = "dropped"
        rungs = [r for r in trial.get("rungs") or () if isinstance(r, dict)]
        if math.isnan(value) and rungs:
            value = _float(rungs[-1].get("prediction"))
    return {"epoch": epoch, "at": _float(val[epoch - 1]), "value": value,
            "threshold": _float(stored.get("threshold")),
            "reason": str(reason) if reason else None}


def _rung_outcomes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The rungs a pausing policy judged a trial at (the record's ``rungs``: epochs done
    and predicted final), each with ``promoted``: whether the trial trained on past it
    (resumed from its checkpoint, or went on at once where its arrival closed the
    rung). A rung it did not pass was its last: paused for good, or waiting when the
    sweep was stopped."""
    epochs = len(record.get("val_accuracy") or [])
    return [{**rung, "promoted": epochs > rung["epoch"]} for rung in record.get("rungs") or []
            if isinstance(rung, dict) and isinstance(rung.get("epoch"), int)]


def _normalise(trial: dict[str, Any], index: int) -> dict[str, Any]:
    val = _array(trial.get("val_accuracy"))
    pred = _array(trial.get("predicted_final"))
    state = str(trial.get("state") or "UNKNOWN").upper()
    last = _last(val)
    final = math.nan
    if state == "COMPLETE":  # only a trial that ran to the end has a final value
        final = _float(trial.get("final"))
        if math.isnan(final):
            final = last
    number = trial.get("number")
    return {
        "number": int(number) if isinstance(number, (int, float)) else index,
        "state": state,
        "params": dict(trial.get("params") or {}),
        "val": val,
        "beta": _array(trial.get("beta_eff")),
        "pred": pred,
        "final": final,
        "last": last,
        "stop": _stop(trial, state, val, pred),
        "model_path": trial.get("model_path"),
        "seconds": _float(trial.get("seconds")),
        "epoch_seconds": [_float(v) for v in (trial.get("epoch_seconds") or [])],
        "diverged": str(trial["diverged"]) if trial.get("diverged") else None,
        "rungs": _rung_outcomes(trial),
        "paused": state == "PRUNED" and bool(trial.get("paused")),  # ncp_pause
        "resumed_at": [int(i) for i in (trial.get("resumed_at") or [])
                       if isinstance(i, (int, float))],
        "retries": [int(i) for i in (trial.get("retries") or [])
                    if isinstance(i, (int, float))],
    }


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "&ndash;" if not math.isfinite(value) else f"{value:.{digits}g}"
    if value is None:
        return "&ndash;"
    return html.escape(str(value))


def _table(rows: Sequence[Sequence[str]], header: Sequence[str] = ()) -> str:
    """Rows of already-escaped cells as an HTML table."""
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2:
        return math.nan
    from scipy.stats import kendalltau

    value = kendalltau(x, y).statistic
    return float(value) if np.isfinite(value) else math.nan


def _prediction_points(trials: list[dict], epochs: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{k: (prediction after epoch k, actual final)}`` over COMPLETE trials, for k at
    a quarter, half and three quarters of the epochs (last finite prediction <= k)."""
    ks = sorted({max(1, epochs * q // 4) for q in (1, 2, 3)})
    points = {}
    for k in ks:
        pairs = [(_last(t["pred"][:k]), t["final"]) for t in trials if t["state"] == "COMPLETE"]
        pairs = [p for p in pairs if math.isfinite(p[0]) and math.isfinite(p[1])]
        points[k] = (np.array([p for p, _ in pairs]), np.array([a for _, a in pairs]))
    return points


def _best(trials: list[dict], maximize: bool) -> tuple[dict | None, list[tuple[int, float]]]:
    """Best COMPLETE trial (lowest number on ties) and the best-so-far steps."""
    best, steps = None, []
    for t in trials:
        if t["state"] != "COMPLETE" or not math.isfinite(t["final"]):
            continue
        if best is None or (t["final"] > best["final"] if maximize else t["final"] < best["final"]):
            best = t
        steps.append((t["number"], best["final"]))
    return best, steps


def _budget(trials: list[dict], epochs: int) -> list[int]:
    """Epochs each trial would use without pruning: ``epochs`` for PRUNED trials, what
    it trained for the others (a failed or running trial is not shortened by pruning)."""
    return [max(len(t["val"]), epochs) if t["state"] == "PRUNED" else len(t["val"])
            for t in trials]


def _figure(name: str, png: bytes | None, figure_dir: Path, alt: str) -> str:
    if png is None:
        return ""
    (figure_dir / f"{name}.png").write_bytes(png)
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}"></p>'


def _best_section(best: dict | None, out_dir: Path, metric: str) -> str:
    if best is None:
        return '<p class="note">No complete trial: there is no best configuration.</p>'
    rows = [[html.escape(str(k)), _fmt(v)] for k, v in best["params"].items()]
    path = best["model_path"]
    where = "<em>not saved</em>" if not path else f"<code>{html.escape(str(path))}</code>"
    if path and not (out_dir / str(path)).exists():
        where += ' <span class="note">(file not found)</span>'
    return (f"<p>Trial {best['number']}: final {html.escape(metric)} "
            f"<strong>{_fmt(best['final'])}</strong>, {_fmt(best['seconds'], 3)} s.</p>"
            + _table(rows or [["<em>no parameters</em>", ""]], ["parameter", "value"])
            + f"<p>Model (relative to the output directory): {where}</p>")


def _final_text(trial: dict[str, Any]) -> str:
    """The "final" cell: the final value of a COMPLETE trial; for the others, a dash
    and where they stopped (their last value is not a final)."""
    if trial["state"] == "COMPLETE":
        return _fmt(trial["final"])
    n = len(trial["val"])
    word = {"PRUNED": "pruned", "FAIL": "failed"}.get(trial["state"], trial["state"].lower())
    if trial.get("paused"):
        word = "paused"
    if trial["state"] == "PRUNED" and trial.get("diverged"):
        word = "diverged, pruned"
    if not n:
        return f"&ndash; ({html.escape(word)} before its first epoch)"
    if trial["state"] in ("PRUNED", "FAIL"):
        return f"&ndash; ({html.escape(word)} at epoch {n}: {_fmt(trial['last'])})"
    return f"&ndash; ({html.escape(word)}, epoch {n}: {_fmt(trial['last'])})"


def _decision_text(trial: dict[str, Any]) -> str:
    """The decision at a PRUNED trial's stop, as far as the record tells."""
    stop = trial["stop"]
    if stop is None:
        return ""
    if trial.get("diverged"):
        return f"diverged: {html.escape(trial['diverged'], quote=False)} (not the rule)"
    value, threshold = stop["value"], stop["threshold"]
    if stop["reason"] == "dropped" and not math.isfinite(threshold):
        at = f"prediction {_fmt(value)}; " if math.isfinite(value) else ""
        return (f"{at}not promoted at its rung (paused for good, or waiting at an open "
                "rung; checkpoint kept)")
    if math.isfinite(threshold):
        compared = f"prediction {_fmt(value)}" if math.isfinite(value) else "value"
        text = f"{compared} &lt; threshold {_fmt(threshold)}"
    elif math.isfinite(value):
        text = f"prediction {_fmt(value)}; threshold not recorded"
    else:
        text = "threshold not recorded"
    if stop["reason"] and stop["reason"] != "below":
        text += f" ({html.escape(stop['reason'])})"
    return text


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _rungs_text(trial: dict[str, Any]) -> str:
    """A pausing policy's rungs for one trial: ``epoch: prediction, promoted``..."""
    return "; ".join(
        f"{rung['epoch']}: {_fmt(_float(rung.get('prediction')))}, "
        f"{'promoted' if rung['promoted'] else 'not promoted'}" for rung in trial["rungs"])


def _trials_table(trials: list[dict]) -> str:
    paused = any(t["rungs"] for t in trials)
    rows = [[str(t["number"]), html.escape(t["state"]), str(len(t["val"])), _final_text(t),
             _fmt(_last(t["pred"])), _decision_text(t),
             *([_rungs_text(t)] if paused else []), _fmt(t["seconds"], 3),
             html.escape(", ".join(f"{k}={_param(v)}" for k, v in t["params"].items()))]
            for t in trials]
    header = ["trial", "state", "epochs", "final", "last prediction", "decision at the stop",
              *(["rungs (epoch: predicted final, then)"] if paused else []), "seconds",
              "params"]
    return _table(rows, header)


def _rungs_sentence(trials: list[dict]) -> str:
    """What a pausing policy did at its rungs, counted over the trials ("" for others)."""
    rungs = [rung for t in trials for rung in t["rungs"]]
    if not rungs:
        return ""
    promoted = sum(rung["promoted"] for rung in rungs)
    return (f"<p>At the rungs: {len(rungs)} arrivals; {promoted} promoted to train on (from "
            f"their checkpoint where they had paused), {len(rungs) - promoted} not promoted "
            "(paused for good, or waiting when the sweep stopped). The table of all trials "
            "lists each trial's rungs.</p>")


def _seconds_saved(trials: list[dict], epochs: int) -> tuple[str, str]:
    """``(trial time used, trial time saved)`` cells (trial time: see
    :mod:`ncp_search.app.sweep.progress`). With per-epoch times, the sweep
    summary's own accounting (:func:`ncp_search.app.sweep.progress.time_accounting`:
    each stopped trial's remaining epochs at its steady epoch time); without, an
    estimate from the median seconds per epoch of the complete trials."""
    trained = sum(t["seconds"] for t in trials if math.isfinite(t["seconds"]))
    finished = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    if any(np.isfinite(t["epoch_seconds"]).any() for t in finished if t["epoch_seconds"]):
        from ncp_search.app.sweep.progress import (
            NOT_ESTIMATED,
            TRIAL_TIME_MEANING,
            time_accounting,
            trial_time_text,
            trial_time_used_text,
        )

        def clean(values: list[float]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values]

        times = time_accounting(((len(t["val"]), t["seconds"] if math.isfinite(t["seconds"])
                                  else None, clean(t["epoch_seconds"]), t["resumed_at"])
                                 for t in finished), epochs)
        if times["seconds_saved"] is not None:
            fixed = times["fixed_seconds_per_trial"]
            cell = (f"{trial_time_text(times)} (each stopped trial's remaining epochs at its "
                    f"steady epoch time, median {_fmt(times['steady_epoch_seconds'], 3)} s")
            if fixed is not None:
                cell += (f"; {fixed:.1f} s per trial outside steady epochs: model build, "
                         "first-epoch compilation")
            return (f"{trial_time_used_text(times)} (finished trials; "
                    f"{TRIAL_TIME_MEANING})", cell + ")")
        if times["seconds_used"] is not None:  # as the sweep's summary says it
            return (f"{trial_time_used_text(times)} (finished trials; {TRIAL_TIME_MEANING})",
                    f"not estimated: {NOT_ESTIMATED}")
    per_epoch, over = _seconds_per_epoch(trials)
    saved_epochs = sum(_budget(trials, epochs)) - sum(len(t["val"]) for t in trials)
    cell = ("&ndash; (no trial time recorded)" if math.isnan(per_epoch) else
            f"trial time saved {saved_epochs * per_epoch:.0f} s (estimate: {saved_epochs} "
            f"epochs x {per_epoch:.3g} s, the median per epoch of the {over})")
    return f"trial time used {trained:.0f} s", cell


def _seconds_per_epoch(trials: list[dict]) -> tuple[float, str]:
    """Median seconds per epoch, over COMPLETE trials when any has its time, else
    over every trial that has one; with the group it was taken over."""
    for group, label in (([t for t in trials if t["state"] == "COMPLETE"], "complete trials"),
                         (trials, "trials")):
        rates = [t["seconds"] / len(t["val"]) for t in group
                 if math.isfinite(t["seconds"]) and len(t["val"])]
        if rates:
            return float(np.median(rates)), label
    return math.nan, ""


def _stop_reasons(trials: list[dict], decider: Decider) -> tuple[dict[str, int], int]:
    """``{reason in words: count}`` over PRUNED trials, and how many reasons were
    inferred from the rule (the record held none) rather than read."""
    counts: dict[str, int] = {}
    inferred = 0
    for t in trials:
        if t["state"] != "PRUNED":
            continue
        reason = t["stop"]["reason"] if t["stop"] else None
        if reason is None:
            reason = decider.single_stop_reason()
            inferred += reason is not None
        if reason == "diverged":
            words = "the sweep's divergence check (not the rule)"
        elif reason is not None:
            words = STOP_REASONS.get(reason, reason)
        elif decider.known and not decider.is_ncp:
            words = f"{decider.host}'s own rule on the raw value"
        else:
            words = "reason not recorded"
        counts[words] = counts.get(words, 0) + 1
    return counts, inferred


def _beta_measured(trials: list[dict]) -> bool:
    """Whether any trial recorded a finite beta_eff."""
    return any(bool(np.isfinite(t["beta"]).any()) for t in trials if len(t["beta"]))


def _what_decided(trials: list[dict], decider: Decider, metric: str,
                  beta_measured: bool) -> str:
    from ncp_search.app.sweep.progress import failed_run_again

    states = [t["state"] for t in trials]
    counts, inferred = _stop_reasons(trials, decider)
    pruned = states.count("PRUNED")
    parts = [f"<p>{rule_sentence(decider, metric)} "
             f"{predictor_sentence(decider, beta_measured)}</p>"]
    if pruned:
        listed = "; ".join(f"{n} by {html.escape(words, quote=False)}"
                           for words, n in counts.items())
        line = f"Stopped early: {pruned} of {len(trials)} trials ({listed})."
        if inferred:
            line += (f" For {inferred} of them the trial record holds no decision: that "
                     "reason is the only way this rule stops a trial.")
    else:
        line = f"No trial was stopped early ({len(trials)} trials)."
    rest = [f"{states.count('COMPLETE')} ran all their epochs"]
    if states.count("FAIL"):
        rerun = failed_run_again(trials)
        rerun_text = "" if not rerun else (
            "; run again by a later trial" if rerun == states.count("FAIL")
            else f"; {rerun} of them run again by a later trial")
        rest.append(f"{states.count('FAIL')} failed (an error or an interruption, not a "
                    f"pruning decision{rerun_text})")
    others = len(states) - pruned - states.count("COMPLETE") - states.count("FAIL")
    if others:
        rest.append(f"{others} still running or waiting")
    parts.append(f"<p>{line} Of the others, {', '.join(rest)}.</p>")
    parts.append(_rungs_sentence(trials))
    return "\n".join(part for part in parts if part)


def _tau_cell(predicted: np.ndarray, actual: np.ndarray) -> str:
    if len(predicted) < MIN_TAU_TRIALS:
        return f"&ndash; (n &lt; {MIN_TAU_TRIALS})"
    return _fmt(_kendall(predicted, actual), 3)


def _predicted_section(trials: list[dict], points: dict[int, tuple[np.ndarray, np.ndarray]],
                       decider: Decider, metric: str, figure: str) -> str:
    if not any(np.isfinite(t["pred"]).any() for t in trials):
        host = html.escape(decider.host, quote=False)
        why = (f"{host} decides on the raw {html.escape(metric)} and makes no prediction"
               if decider.known and not decider.is_ncp
               else "the trial records hold no prediction")
        return f'<p class="note">No predictions recorded: {why}. Nothing to compare.</p>'
    complete = sum(1 for t in trials if t["state"] == "COMPLETE")
    n = max((len(p) for p, _ in points.values()), default=0)
    rows = [[str(k), str(len(p)),
             _fmt(float(np.mean(np.abs(p - a))) if len(p) else math.nan, 3),
             _tau_cell(p, a)] for k, (p, a) in points.items()]
    text = [
        f"<p>The last prediction made up to epoch k against the final value, over "
        f"<strong>complete trials only</strong> (n = {n} with a prediction, of {complete} "
        f"complete and {len(trials)} trials): a stopped trial never reports a final.</p>",
        '<p class="note">Caveat: the complete trials are the survivors of pruning. The '
        "trials the rule stopped are not here, so this cannot show whether they would "
        "have ended worse than predicted; it shows how well the predictions matched the "
        "trials that were allowed to finish.</p>",
        _table(rows, ["k", "complete trials", "mean |predicted - actual|", "Kendall tau"]),
        f'<p class="note">Kendall tau is shown from {MIN_TAU_TRIALS} complete trials on. '
        "With n trials one swapped pair moves it by 4 / (n (n - 1)) (0.2 at n = 5), and its "
        "standard error when there is no association at all is about "
        "sqrt(2 (2n + 5) / (9 n (n - 1))) (0.41 at n = 5, 0.25 at n = 10): with fewer "
        "trials a tau says next to nothing about ranking.</p>",
    ]
    return "\n".join(text) + (figure or '<p class="note">No prediction for a complete '
                               "trial.</p>")


def write_report(meta: dict[str, Any], trials: list[dict[str, Any]], out_dir: str | Path) -> Path:
    """Write ``out_dir/report.html`` and its figures as PNGs in ``out_dir/report/``.

    Args:
        meta: the sweep's description (``name``, ``backend``, ``metric``,
            ``direction``, ``epochs``, ``pruner``, ``storage``, ``created`` and the
            validated ``config``, whose pruner or scheduler section says what
            decided).
        trials: one dict per trial (``number``, ``state``, ``params``,
            ``val_accuracy``, ``beta_eff``, ``predicted_final``, ``final``,
            ``model_path``, ``seconds``, optionally ``stop``: ``{"epoch",
            "reason", "value", "threshold"}``); None or NaN values are missing
            values.
        out_dir: the sweep's output directory (created if needed).

    Returns:
        The path of ``report.html``.
    """
    out_dir = Path(out_dir)
    figure_dir = out_dir / "report"
    figure_dir.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:  # no stale figure from an earlier report
        (figure_dir / f"{name}.png").unlink(missing_ok=True)
    rows = sorted((_normalise(t, i) for i, t in enumerate(trials)), key=lambda t: t["number"])
    metric = str(meta.get("metric") or "value")
    maximize = str(meta.get("direction") or "maximize").lower() != "minimize"
    epochs = _float(meta.get("epochs"))
    epochs = max([int(epochs) if math.isfinite(epochs) else 0] + [len(t["val"]) for t in rows])
    decider = describe(meta)
    title = f"ncp-search report: {meta.get('name') or 'sweep'}"
    keys = ("name", "backend", "metric", "direction", "epochs", "pruner", "storage", "created")
    parts = [f"<h1>{html.escape(title)}</h1>",
             _table([[k, _fmt(meta.get(k))] for k in keys] + [["trials", str(len(rows))]])]
    if not rows:
        parts.append('<p class="note">No trials recorded: nothing to report.</p>')
    else:
        best, steps = _best(rows, maximize)
        budget = _budget(rows, epochs)
        used, total = sum(len(t["val"]) for t in rows), sum(budget)
        states = [t["state"] for t in rows]
        paused = sum(1 for t in rows if t["paused"])
        shown = [{**t, "state": "PAUSED"} if t["paused"] else t for t in rows]  # plots
        saved = f"{100.0 * (total - used) / total:.1f}%" if total else "&ndash;"
        trained_s, saved_s = _seconds_saved(rows, epochs)
        points = _prediction_points(rows, epochs)
        stopped = [t for t in rows if t["stop"]]
        with_threshold = sum(1 for t in stopped if math.isfinite(t["stop"]["threshold"]))
        beta_heading, beta_note = beta_eff_heading(decider)
        beta_measured = _beta_measured(rows)
        curves_note = ""
        if (any(t["stop"]["reason"] == "dropped" for t in stopped)
                and all(t["stop"]["reason"] in ("dropped", "diverged") for t in stopped)):
            curves_note = ('<p class="note">A pausing rung keeps its best trials by '
                           "predicted final, with no threshold: the curves show where each "
                           "paused (or diverged) trial stopped.</p>")
        elif stopped and not with_threshold:
            curves_note = ('<p class="note">No threshold is recorded for these stops (the '
                           "trial records of this sweep do not keep the rule's decision): "
                           "the curves show the stop points only.</p>")
        elif with_threshold < len(stopped):
            curves_note = ('<p class="note">The rule\'s threshold is recorded for '
                           f"{with_threshold} of the {len(stopped)} stops; the others show "
                           "the stop point only.</p>")
        panels_note = (f'<p class="note">Panels: the first {MAX_PANELS} of {len(rows)} '
                       "trials.</p>" if len(rows) > MAX_PANELS else "")
        parts += [
            "<h2>What decided</h2>", _what_decided(rows, decider, metric, beta_measured),
            "<h2>Best configuration</h2>", _best_section(best, out_dir, metric),
            "<h2>Epochs and seconds saved</h2>",
            _table([["epochs trained", str(used)], ["epochs without pruning", str(total)],
                    ["saved", saved], ["trial time used", trained_s],
                    ["trial time saved", saved_s],
                    *([["paused trials (checkpoints kept)", str(paused)]] if paused else []),
                    ["pruned trials", str(states.count("PRUNED") - paused)],
                    ["complete trials", str(states.count("COMPLETE"))],
                    ["failed trials", str(states.count("FAIL"))]]),
            _figure("epochs_saved", report_plots.epochs_saved(shown, budget), figure_dir,
                    "epochs trained and saved per trial"),
            "<h2>Learning curves and stops</h2>",
            f"<p>Validation {html.escape(metric)} per epoch, coloured by state (epochs count "
            "from 1 throughout this report: epoch n is the n-th epoch trained, reported to "
            "the pruner or scheduler as step n - 1). X: where a "
            "trial was stopped (its value at that epoch); where recorded, the magenta bar is "
            "the rule's threshold at that stop and the circle the prediction it compared "
            "(dashed in the panels: the predicted final after each epoch).</p>",
            curves_note,
            _figure("learning_curves", report_plots.learning_curves(shown, metric), figure_dir,
                    "learning curves with stop points")
            or '<p class="note">No trial has a value yet.</p>',
            _figure("trial_curves", report_plots.trial_curves(shown, metric, MAX_PANELS),
                    figure_dir, "one panel per trial"),
            panels_note,
            "<h2>Predicted vs actual final value</h2>",
            _predicted_section(rows, points, decider, metric,
                               _figure("predicted_vs_actual",
                                       report_plots.predicted_vs_actual(points, metric),
                                       figure_dir, "predicted vs actual final value")),
            *([f"<h2>{beta_heading}</h2>", f"<p>{beta_note}</p>",
               _figure("beta_eff", report_plots.beta_trajectories(
                   shown, "beta_eff per epoch" + (" (input of the predictor)"
                                                 if decider.uses_beta_eff else
                                                 " (recorded, not used to decide)"
                                                 if decider.known else "")),
                       figure_dir, "beta_eff per epoch")]
              if beta_measured else
              ["<h2>beta_eff (not measured)</h2>",
               '<p class="note">No trial measured beta_eff: trials measure it only when '
               "the pruner's or scheduler's predictor reads it (e.g. <code>ncp_raw</code>), "
               "not for this sweep's.</p>"]),
            "<h2>Optimisation history</h2>",
            _figure("history", report_plots.optimisation_history(shown, steps, metric),
                    figure_dir, "optimisation history")
            or '<p class="note">No trial has a final value.</p>',
            "<h2>All trials</h2>", _trials_table(rows),
        ]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(p for p in parts if p) + "\n</body></html>\n")
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
