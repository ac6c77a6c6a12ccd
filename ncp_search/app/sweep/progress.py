"""The one-line progress display of a running sweep, and the one account of time.

Shows trials done / paused / pruned / running / failed, the best final so far (before
any trial completes, the leader: the best latest value among the trials trained
furthest, as under ``ncp_pause`` for most of a sweep) and the
epochs and trial time saved by pruning, compared with running every finished trial
to the end. On a terminal the line is rewritten in place; otherwise a line is printed
each time the counts change.

One account of time, the same in the progress line, the end-of-sweep summary and the
report (:func:`trial_time_text`):

- **trial time** (what "used" and "saved" count): the sum over finished trials of
  each trial's own wall time, from its start to its end as its host records it
  (Optuna: the trial's completion minus its start, :func:`trial_seconds`; Ray Tune:
  ``time_total_s``), model loading, building and saving included. Trials running
  side by side on ``n`` workers add up to ``n`` times the wall clock, so it is
  always labelled "trial time", never given as the sweep's duration.
- **the sweep's wall clock**: how long ``ncp-search sweep`` ran, printed on its own
  line of the summary.

Trial time saved (:func:`time_accounting`) is measured against the trials' own epoch
times: a trial stopped after ``n`` of ``E`` epochs saved ``E - n`` times its steady
epoch time (the median of its epochs after the first, which carries one-off costs
such as graph compilation; for a trial stopped after one epoch, the median steady
epoch of the sweep's other trials). While no trial has trained past its first epoch
(under ``ncp_pause``, until the first rung closes) there is no steady epoch time, and
time saved is not estimated: a first epoch's compilation can cost ten steady epochs of
a small model, and counting the saved epochs at it overstated the saving that much.
Trial time used is each
finished trial's whole wall time, its fixed costs (loading and building the model,
the first epoch's compilation) included, so the fraction of time saved is lower than
the fraction of epochs saved.

Epochs count from 1 in everything printed (epoch ``n`` is the ``n``-th epoch
trained, reported to the pruner or scheduler as step ``n - 1``).
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO


def trial_seconds(trial: Any) -> float | None:
    """A finished Optuna trial's trial time: its ``datetime_complete`` minus its
    ``datetime_start`` (None while it runs). The one source the progress line, the
    summary and the report read for Optuna trials, whatever their state."""
    start = getattr(trial, "datetime_start", None)
    end = getattr(trial, "datetime_complete", None)
    if start is None or end is None:
        return None
    return float((end - start).total_seconds())


def trial_time_text(times: Mapping[str, Any]) -> str | None:
    """The trial time saved, labelled, as every printed place says it, e.g.
    ``trial time saved 7 s of 38 s (18%)``; None when no trial recorded times.
    ``times``: :func:`time_accounting`'s result (or a summary holding it)."""
    if times.get("seconds_saved") is None:
        return None
    return (f"trial time saved {duration(times['seconds_saved'])} of "
            f"{duration(times['seconds_without_pruning'])} "
            f"({100 * times['seconds_saved_fraction']:.0f}%)")


def trial_time_used_text(times: Mapping[str, Any]) -> str | None:
    """``trial time used 31 s`` (None when no trial recorded times)."""
    if times.get("seconds_used") is None:
        return None
    return f"trial time used {duration(times['seconds_used'])}"


NOT_ESTIMATED = ("no trial has a recorded epoch time after its first epoch (a first "
                 "epoch carries the compilation), so there is no steady epoch time")
"""Why trial time saved is not estimated (:func:`time_accounting` gave None): said
alike by the end-of-sweep summary and the report."""

TRIAL_TIME_MEANING = ("trial time: each finished trial's own wall time, summed over trials "
                      "and workers")
"""What "trial time" means, said where the totals are printed in full."""


@dataclass(frozen=True)
class TrialStatus:
    """What the progress line needs of one trial."""

    number: int
    state: str  # COMPLETE, PRUNED, RUNNING, FAIL, WAITING
    epochs: int  # epochs trained so far
    final: float | None = None  # the final value of a COMPLETE trial
    seconds: float | None = None  # trial time: whole wall time of a finished trial
    epoch_seconds: tuple[float | None, ...] = ()  # wall time of each epoch
    paused: bool = False  # ncp_pause: PRUNED and paused with a checkpoint (may resume)
    last: float | None = None  # the latest reported value
    resumed_at: tuple[int, ...] = ()  # 0-based epochs that began a resume (ncp_pause)


def failed_run_again(records: Iterable[Mapping[str, Any]]) -> int:
    """How many FAIL records a later record ran again (the numbers in its ``retries``;
    a retry only queued, WAITING because the sweep stopped first, has not run it)."""
    records = list(records)
    again = {n for r in records if r.get("state") != "WAITING" for n in r.get("retries") or ()}
    return sum(r.get("state") == "FAIL" and r.get("number") in again for r in records)


def resume_starts(piece_epochs: Iterable[int]) -> tuple[int, ...]:
    """The 0-based epochs that began a resume in a configuration's chain of pieces (each
    piece's epoch count, in order): the first epoch of each piece after the first."""
    starts, done = [], 0
    for epochs in piece_epochs:
        if done:
            starts.append(done)
        done += epochs
    return tuple(starts)


def _steady(epoch_seconds: Sequence[float | None],
            resumed_at: Collection[int] = ()) -> float | None:
    """The median epoch time, leaving out the first epoch and each epoch that began a
    resume (both carry one-off costs: compilation, a model loaded and traced again)."""
    times = [t for i, t in enumerate(epoch_seconds) if i and i not in resumed_at
             and t is not None and math.isfinite(t)]
    return statistics.median(times) if times else None


def time_accounting(trials: Iterable[tuple[Any, ...]], epochs: int) -> dict[str, Any]:
    """Trial time used and saved by the finished trials, each given as ``(epochs
    trained, whole wall time, per-epoch times)`` or with a fourth item, the 0-based
    epochs that began a resume (left out of its steady time, as its first epoch is;
    see the module docstring).

    Returns:
        ``seconds_used``, ``seconds_saved``, ``seconds_without_pruning``,
        ``seconds_saved_fraction``, ``steady_epoch_seconds`` (the sweep's median)
        and ``fixed_seconds_per_trial`` (mean wall time outside steady epochs:
        model loading and building, first-epoch compilation); None where no
        trial recorded times.
    """
    rows = [(int(row[0]), row[1], list(row[2]), frozenset(row[3] if len(row) > 3 else ()))
            for row in trials]
    steadies = [x for x in (_steady(times, starts) for _, _, times, starts in rows)
                if x is not None]
    sweep_steady = statistics.median(steadies) if steadies else None
    used = saved = 0.0
    fixed: list[float] = []
    timed = unknown = False
    for done, seconds, times, starts in rows:
        clean = [t for t in times if t is not None and math.isfinite(t)]
        if seconds is None or not math.isfinite(seconds):
            seconds = sum(clean) if clean else None
        if seconds is None:
            continue
        timed = True
        used += seconds
        steady = _steady(times, starts) or sweep_steady
        if steady is not None:
            saved += max(0, epochs - done) * steady
            fixed.append(max(0.0, seconds - steady * len(clean)) if clean else seconds)
        elif done < epochs:
            unknown = True  # stopped with no steady epoch time anywhere in the sweep
    if not timed or unknown:
        return {"seconds_used": used if timed else None, "seconds_saved": None,
                "seconds_without_pruning": None, "seconds_saved_fraction": None,
                "steady_epoch_seconds": sweep_steady, "fixed_seconds_per_trial": None}
    full = used + saved
    return {"seconds_used": used, "seconds_saved": saved, "seconds_without_pruning": full,
            "seconds_saved_fraction": saved / full if full else 0.0,
            "steady_epoch_seconds": sweep_steady,
            "fixed_seconds_per_trial": statistics.fmean(fixed) if fixed else None}


def summarize(trials: Iterable[TrialStatus], epochs: int) -> dict[str, Any]:
    """Counts, best and epochs saved of a set of trials."""
    trials = list(trials)
    count = {state: sum(t.state == state for t in trials)
             for state in ("COMPLETE", "PRUNED", "RUNNING", "FAIL")}
    finished = [t for t in trials if t.state in ("COMPLETE", "PRUNED")]
    used = sum(t.epochs for t in finished)
    full = epochs * len(finished)
    finals = [(t.final, t.number) for t in trials
              if t.state == "COMPLETE" and t.final is not None and math.isfinite(t.final)]
    best = max(finals, key=lambda final_number: final_number[0], default=None)
    leads = [(t.epochs, t.last, t.number) for t in trials if t.state != "FAIL"
             and t.last is not None and math.isfinite(t.last)]
    lead = max(leads, key=lambda e: (e[0], e[1]), default=None)  # furthest, then best
    times = time_accounting(((t.epochs, t.seconds, t.epoch_seconds, t.resumed_at)
                             for t in finished), epochs)
    return {
        **times,
        "complete": count["COMPLETE"], "pruned": count["PRUNED"], "running": count["RUNNING"],
        "paused": sum(t.state == "PRUNED" and t.paused for t in trials),
        "failed": count["FAIL"], "finished": len(finished), "epochs_used": used,
        "epochs_full": full, "epochs_saved": full - used,
        "saved_fraction": (full - used) / full if full else 0.0,
        "best": None if best is None else best[0],
        "best_trial": None if best is None else best[1],
        "leader": None if lead is None else (lead[2], lead[1], lead[0]),
    }


def format_line(summary: dict[str, Any], budget: int) -> str:
    """The progress line of :func:`summarize`'s result."""
    bar_width = 20
    filled = min(bar_width, round(bar_width * summary["finished"] / max(budget, 1)))
    bar = "#" * filled + "." * (bar_width - filled)
    best = ("best -" if summary["best"] is None
            else f"best {summary['best']:.4f} (#{summary['best_trial']})")
    leader = summary.get("leader")
    if summary["best"] is None and leader is not None:
        number, value, epochs = leader
        best += (f" (leading #{number}: {value:.4f} after {epochs} "
                 f"epoch{'s' if epochs != 1 else ''})")
    failed = f", {summary['failed']} failed" if summary["failed"] else ""
    saved_time = trial_time_text(summary)
    seconds = "" if saved_time is None else f", {saved_time}"
    return (f"[{bar}] {summary['finished']}/{budget} trials ({stopped_text(summary)}, "
            f"{summary['running']} running{failed}) | {best} | epochs saved "
            f"{summary['epochs_saved']}/{summary['epochs_full']} "
            f"({100 * summary['saved_fraction']:.0f}%){seconds}")


def stopped_text(summary: dict[str, Any], *, kept: str = "", diverged: str = "") -> str:
    """``3 pruned``, or under ncp_pause ``8 paused, 2 pruned``: the progress line's and
    the end-of-sweep summary's words (``kept`` follows the paused count, ``diverged``
    the pruned one). ``summary["pruned"]`` counts the paused too: they end PRUNED.
    ``summary["pausing"]`` (the rule pauses): ``0 paused`` before any trial stops."""
    paused = summary.get("paused") or 0
    pruned = summary["pruned"] - paused
    if not paused and not (summary.get("pausing") and not pruned):
        return f"{pruned} pruned{diverged}"
    return f"{paused} paused{kept if paused else ''}" + (f", {pruned} pruned{diverged}"
                                       if pruned or diverged else "")


def duration(seconds: float) -> str:
    """``42 s``, ``3.5 min`` or ``2.1 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class ProgressLine:
    """Writes :func:`format_line` to ``stream`` when something changed."""

    def __init__(self, budget: int, epochs: int, stream: TextIO | None = None, *,
                 pausing: bool = False) -> None:
        self.budget = budget
        self.epochs = epochs
        self.pausing = pausing  # the rule pauses: the line counts paused trials
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = ""
        self._last_finished: tuple[int, ...] | None = None
        self.summary: dict[str, Any] = {**summarize([], epochs), "pausing": pausing}

    def update(self, trials: Iterable[TrialStatus]) -> None:
        self.summary = {**summarize(trials, self.epochs), "pausing": self.pausing}
        line = format_line(self.summary, self.budget)
        if line == self._last:
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self._last)))
        elif _finished(self.summary) != self._last_finished:
            self.stream.write(line + "\n")  # off a terminal: a line per finished trial
        self.stream.flush()
        self._last = line
        self._last_finished = _finished(self.summary)

    def close(self) -> None:
        if self.tty and self._last:
            self.stream.write("\n")
            self.stream.flush()


def _finished(summary: dict[str, Any]) -> tuple[int, ...]:
    return summary["finished"], summary["pruned"], summary["failed"], summary["paused"]
