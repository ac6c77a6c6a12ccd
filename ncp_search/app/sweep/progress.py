"""The one-line progress display of a running sweep.

Shows trials done / pruned / running / failed, the best final so far and the
epochs saved by pruning, compared with running every finished trial to the end.
On a terminal the line is rewritten in place; otherwise a line is printed each
time the counts change.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class TrialStatus:
    """What the progress line needs of one trial."""

    number: int
    state: str  # COMPLETE, PRUNED, RUNNING, FAIL, WAITING
    epochs: int  # epochs trained so far
    final: float | None = None  # the final value of a COMPLETE trial


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
    return {
        "complete": count["COMPLETE"], "pruned": count["PRUNED"], "running": count["RUNNING"],
        "failed": count["FAIL"], "finished": len(finished), "epochs_used": used,
        "epochs_full": full, "epochs_saved": full - used,
        "saved_fraction": (full - used) / full if full else 0.0,
        "best": None if best is None else best[0],
        "best_trial": None if best is None else best[1],
    }


def format_line(summary: dict[str, Any], budget: int) -> str:
    """The progress line of :func:`summarize`'s result."""
    bar_width = 20
    filled = min(bar_width, round(bar_width * summary["finished"] / max(budget, 1)))
    bar = "#" * filled + "." * (bar_width - filled)
    best = ("best -" if summary["best"] is None
            else f"best {summary['best']:.4f} (#{summary['best_trial']})")
    failed = f", {summary['failed']} failed" if summary["failed"] else ""
    return (f"[{bar}] {summary['finished']}/{budget} trials ({summary['pruned']} pruned, "
            f"{summary['running']} running{failed}) | {best} | epochs saved "
            f"{summary['epochs_saved']}/{summary['epochs_full']} "
            f"({100 * summary['saved_fraction']:.0f}%)")


class ProgressLine:
    """Writes :func:`format_line` to ``stream`` when something changed."""

    def __init__(self, budget: int, epochs: int, stream: TextIO | None = None) -> None:
        self.budget = budget
        self.epochs = epochs
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = ""
        self._last_finished: tuple[int, ...] | None = None
        self.summary: dict[str, Any] = summarize([], epochs)

    def update(self, trials: Iterable[TrialStatus]) -> None:
        self.summary = summarize(trials, self.epochs)
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
    return summary["finished"], summary["pruned"], summary["failed"]
