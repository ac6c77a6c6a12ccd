"""The trials a long-lived decider has seen: :class:`TrialPool`.

A host that calls the decider once per result (Ray Tune's scheduler, the research
replays) keeps the other trials here. The pool changes only through
:meth:`TrialPool.apply` of small JSON events, so the same events written to a journal
and replayed rebuild it exactly:

- ``{"e": "add", "id"}``: the host added the trial (its order places it in a
  bracket of the pausing policy);
- ``{"e": "result", "id", "t", "v", "s": {series: value}}``: a report ("higher is
  better"; ``t`` going back means the host restarted the trial: what it is about
  to report again is dropped, except the rung values of a trial that had completed or
  been stopped, since the others were judged against them);
- ``{"e": "decision", "id", "t", "p", "stop", "rung", "pause", "why", "th"}``: the
  prediction the policy used at ``t``, whether it stopped the trial, the rung it was
  compared at, whether it paused there (the pausing policy), the decision's reason and
  threshold (in "higher is better" units; for reports);
- ``{"e": "complete", "id", "final"}``: the trial completed (``final`` None when
  not a finite number: it stays out of the reference);
- ``{"e": "remove", "id"}`` / ``{"e": "error", "id"}``: the host dropped the trial
  or it errored: it leaves every reference (as Optuna leaves failed trials out).

:meth:`TrialPool.view` is the :class:`~ncp_search.core.policy.StudyView` of the other
trials that a policy decides on.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ncp_search.core.history import TrialHistory, as_number
from ncp_search.core.policy import PREDICTION_SERIES

EVENTS = ("add", "result", "decision", "complete", "remove", "error")


@dataclass
class Track:
    """What the pool knows of one trial (values "higher is better")."""

    t: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    predictions: dict[float, float] = field(default_factory=dict)
    final: float | None = None
    stopped: bool = False
    stopped_at: float | None = None  # the step of the stop decision
    stopped_before: float | None = None  # stopped there, then run again by the host
    completed_once: bool = False  # completed, then run again by the host (restore)
    removed: bool = False  # removed without completing or being stopped
    failed: bool = False  # errored
    latest_prediction: float = math.nan  # the prediction at the latest step

    @property
    def out(self) -> bool:
        """Whether the trial is out of every reference (removed or errored)."""
        return self.removed or self.failed

    def history(self, sign: float) -> TrialHistory:
        series = {k: np.array(v, dtype=float) for k, v in self.series.items()}
        series[PREDICTION_SERIES] = np.array(
            [self.predictions.get(t, math.nan) for t in self.t], dtype=float)
        return TrialHistory(
            steps=np.array(self.t, dtype=float), values=np.array(self.values, dtype=float),
            series=series, final=math.nan if self.final is None else self.final, sign=sign)

    def as_json(self) -> dict[str, Any]:
        return {"t": self.t, "values": nulls(self.values),
                "series": {k: nulls(v) for k, v in self.series.items()},
                "predictions": [[t, p] for t, p in self.predictions.items()],
                "final": self.final, "stopped": self.stopped, "stopped_at": self.stopped_at,
                "stopped_before": self.stopped_before, "completed_once": self.completed_once,
                "removed": self.removed, "failed": self.failed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Track:
        predictions = {float(t): as_number(p) for t, p in data["predictions"]}
        return cls(
            t=[float(v) for v in data["t"]],
            values=[as_number(v) for v in data["values"]],
            series={str(k): [as_number(v) for v in s] for k, s in data["series"].items()},
            predictions=predictions,
            latest_prediction=predictions[max(predictions)] if predictions else math.nan,
            final=None if data["final"] is None else as_number(data["final"]),
            stopped=bool(data["stopped"]), completed_once=bool(data["completed_once"]),
            stopped_at=_step(data.get("stopped_at")),
            stopped_before=_step(data.get("stopped_before")),
            removed=bool(data.get("removed", False)), failed=bool(data.get("failed", False)),
        )


def _step(value: Any) -> float | None:
    return None if value is None else float(value)


def nulls(values: Sequence[float]) -> list[float | None]:
    """Non-finite numbers as JSON nulls."""
    return [v if math.isfinite(v) else None for v in values]


class TrialPool:
    """Every trial's history, predictions, rung records and fate, by trial id.

    Args:
        sign: +1 for a maximised metric, -1 for a minimised one (histories are built
            with it; values in events are already "higher is better").
    """

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign
        self.tracks: dict[str, Track] = {}
        self.rungs: dict[float, dict[str, float]] = {}
        self._completed: dict[Hashable, TrialHistory] | None = None

    # ---------------------------------------------------------------- changes
    def apply(self, event: Mapping[str, Any]) -> Track:
        """Apply one event (see the module docstring); returns the trial's track.

        Raises:
            KeyError, TypeError, ValueError: for an event that is not one of the
                above (a journal reader skips such lines).
        """
        trial_id = str(event["id"])
        kind = event["e"]
        if kind not in EVENTS:
            raise ValueError(f"unknown event {kind!r}")
        track = self.tracks.setdefault(trial_id, Track())
        if kind == "add":
            pass
        elif kind == "result":
            self._result(trial_id, track, event)
        elif kind == "decision":
            prediction = as_number(event.get("p"))
            if math.isfinite(prediction):
                track.predictions[float(event["t"])] = prediction
                track.latest_prediction = prediction
            rung = event.get("rung")
            if rung is not None and not track.out:
                self.rungs.setdefault(float(rung), {})[trial_id] = prediction
            if event.get("stop"):
                track.stopped = True
                track.stopped_at = float(event["t"])
        elif kind == "complete":
            final = event.get("final")
            track.final = None if final is None else as_number(final)
            if track.final is not None and not math.isfinite(track.final):
                track.final = None
            self._completed = None
        else:
            if kind == "remove":
                track.removed = True
            else:
                track.failed = True
            for recorded in self.rungs.values():
                recorded.pop(trial_id, None)
            self._completed = None
        return track

    def _result(self, trial_id: str, track: Track, event: Mapping[str, Any]) -> None:
        now = float(event["t"])
        if not math.isfinite(now):
            raise ValueError(f"t must be finite, got {now}")
        if track.t and now <= track.t[-1]:
            self._restart(trial_id, track, now)
        track.t.append(now)
        track.values.append(as_number(event["v"]))
        for name, value in (event.get("s") or {}).items():
            column = track.series.setdefault(str(name), [math.nan] * (len(track.t) - 1))
            column.append(as_number(value))
        for column in track.series.values():
            column.extend([math.nan] * (len(track.t) - len(column)))

    def _restart(self, trial_id: str, track: Track, now: float) -> None:
        """The host restarted the trial (from scratch or an earlier checkpoint): drop
        what it is about to report again."""
        keep = [i for i, t in enumerate(track.t) if t < now]
        track.t = [track.t[i] for i in keep]
        track.values = [track.values[i] for i in keep]
        track.series = {k: [v[i] for i in keep] for k, v in track.series.items()}
        track.predictions = {t: p for t, p in track.predictions.items() if t < now}
        track.latest_prediction = (track.predictions[max(track.predictions)]
                                   if track.predictions else math.nan)
        finished = track.final is not None or track.stopped
        if track.final is not None:
            track.completed_once = True
            track.final = None
            self._completed = None
        if track.stopped:
            track.stopped_before = track.stopped_at
        track.stopped = track.removed = track.failed = False
        for rung, recorded in self.rungs.items():
            # a finished trial's rung values stay: the others were judged against them,
            # and its rerun is not judged again (it repeats its fate)
            if rung >= now and not finished:
                recorded.pop(trial_id, None)

    @classmethod
    def replay(cls, events: Iterable[Mapping[str, Any]], sign: float = 1.0) -> TrialPool:
        """A pool rebuilt from its events (a journal); an event that does not apply
        (a schema-valid line inconsistent with the rest) is skipped."""
        pool = cls(sign)
        for event in events:
            try:
                pool.apply(event)
            except (KeyError, TypeError, ValueError):
                continue
        return pool

    # ---------------------------------------------------------------- reading
    def history(self, trial_id: str) -> TrialHistory:
        return self.tracks[trial_id].history(self.sign)

    def completed(self) -> dict[Hashable, TrialHistory]:
        """Histories of the completed trials (kept until one completes or restarts)."""
        if self._completed is None:
            self._completed = {k: t.history(self.sign) for k, t in self.tracks.items()
                               if t.final is not None and not t.out}
        return self._completed

    def view(self, trial_id: str) -> PoolView:
        """The other trials, as a policy reads them."""
        return PoolView(self, trial_id)

    @property
    def num_stopped(self) -> int:
        """Trials stopped (one stopped, run again by the host and stopped again counts
        once, also while it runs again)."""
        return sum(t.stopped or t.stopped_before is not None for t in self.tracks.values())

    def state(self) -> dict[str, Any]:
        return {"tracks": {k: t.as_json() for k, t in self.tracks.items()},
                "rungs": [[r, v] for r, v in self.rungs.items()],
                "num_stopped": self.num_stopped}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.tracks = {str(k): Track.from_json(v) for k, v in state["tracks"].items()}
        self.rungs = {float(r): {str(k): as_number(p) for k, p in v.items()}
                      for r, v in state["rungs"]}
        self._completed = None


class PoolView:
    """A :class:`TrialPool` seen from one trial: the others, removed and errored ones
    left out (a :class:`~ncp_search.core.policy.StudyView`)."""

    def __init__(self, pool: TrialPool, trial_id: str) -> None:
        self._pool = pool
        self._id = trial_id

    def finals(self) -> Sequence[float]:
        return [h.final for k, h in self._pool.completed().items() if k != self._id]

    def completed(self) -> Mapping[Hashable, TrialHistory]:
        done = self._pool.completed()
        if self._id not in done:
            return done
        return {k: h for k, h in done.items() if k != self._id}

    def latest_predictions(self) -> Sequence[float]:
        return [t.latest_prediction for k, t in self._pool.tracks.items()
                if k != self._id and t.final is None and not t.out]

    def rung_values(self, rung: float) -> Sequence[float]:
        return [v for k, v in self._pool.rungs.get(float(rung), {}).items() if k != self._id]

    def max_last_step(self) -> float | None:
        steps = [h.last_step for h in self._pool.completed().values() if len(h)]
        return max(steps) if steps else None
