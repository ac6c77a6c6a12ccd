"""NCPScheduler's record of its trials: Tune results in, pool events out, journaled.

:class:`TuneRecords` turns one Tune result into a ``result`` event of a
:class:`~ncp_search.core.pool.TrialPool` (the metric signed so that higher is better,
``time_attr`` as the step, the series the predictor reads), applies every event to the
pool and appends it to the :class:`~ncp_search.integrations.ray.journal.Journal`, and
replays the journal once after ``Tuner.restore``. A result whose metric or
``time_attr`` is missing or not a number is not recorded: it fails open (the trial
goes on) with one warning. The decision itself is the policy's
(:mod:`ncp_search.core.policy`); the Tune hooks are :class:`ncp_search.NCPScheduler`'s.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ncp_search.core import rules
from ncp_search.core.history import as_number
from ncp_search.core.pool import Track, TrialPool
from ncp_search.integrations.ray.journal import FORMAT, Journal


class TuneRecords:
    """The trials' results and decisions, as seen by one scheduler.

    Args:
        time_attr: the result key counting training progress.
        beta_key: the result key holding ``beta_eff``.
        requires: the series the predictor reads (``beta_eff`` and probe terms).
        state_path: the journal's path, or None to keep nothing on disk.
    """

    def __init__(self, *, time_attr: str, beta_key: str, requires: Sequence[str],
                 state_path: str | None) -> None:
        self.metric: str | None = None
        self.mode: str | None = None
        self.time_attr, self.beta_key, self.requires = time_attr, beta_key, tuple(requires)
        self.pool = TrialPool()
        self.journal = None if state_path is None else Journal(state_path, self.warn_once)
        self._loaded = False
        self._warned: set[str] = set()

    @property
    def sign(self) -> float:
        """+1 when the metric is maximised, -1 when minimised (the pool's numbers are
        "higher is better")."""
        return 1.0 if self.mode == "max" else -1.0

    def add(self, trial_id: str) -> None:
        """A trial Tune added (a restored one keeps its track); the metric and mode must
        be known by now."""
        if not self.metric or self.mode not in ("max", "min"):
            raise ValueError(
                f"NCPScheduler needs a metric and a mode ('max' or 'min'), but got "
                f"metric={self.metric!r}, mode={self.mode!r}. Pass them to NCPScheduler "
                "or to tune.TuneConfig(metric=..., mode=...).")
        self.pool.sign = self.sign
        self.pool.tracks.setdefault(trial_id, Track())

    def record(self, trial_id: str, result: Mapping[str, Any]
               ) -> tuple[Any, float, Track] | rules.Decision:
        """Record ``result``: ``(reported metric, time, the trial's track)``, or the
        fail-open decision for a result without a usable metric or time."""
        self.load_once()
        if self.metric is None:
            raise ValueError("NCPScheduler needs a metric; pass metric= or set it in "
                             "tune.TuneConfig(metric=..., mode=...).")
        reported = result.get(self.metric)
        now = as_number(result.get(self.time_attr))
        metric_ok = rules.is_diverged(reported) or math.isfinite(as_number(reported))
        if math.isnan(now) or not metric_ok:
            bad = ([] if metric_ok else [self.metric]) + (
                [self.time_attr] if math.isnan(now) else [])
            return self.no_value(result, bad)
        self.pool.sign = self.sign
        series = {name: null(as_number(result.get(self.beta_key if name == "beta_eff"
                                                  else name)))
                  for name in self.requires}
        track = self.apply({"e": "result", "id": trial_id, "t": now,
                            "v": null(self.sign * as_number(reported)), "s": series})
        return reported, now, track

    def no_value(self, result: Mapping[str, Any], bad: Sequence[str | None]) -> rules.Decision:
        """CONTINUE, warned once: the result lacks a usable ``bad`` key."""
        self.warn_once(
            "metric", f"results with a missing, non-numeric or non-finite {list(bad)} (got "
            f"{[result.get(k) for k in bad if k]}); NCPScheduler lets such trials run. "
            f"Reported keys: {sorted(result)[:20]}.")
        return rules.Decision(False, "no_value")

    def warn_missing(self, missing: Sequence[str], predictor: str) -> None:
        """Warn once that results lack series the predictor needs (the trial goes on)."""
        keys = [self.beta_key if name == "beta_eff" else name for name in missing]
        self.warn_once("inputs", f"results lack {keys}, which predictor={predictor!r} "
                       "needs; NCPScheduler lets such trials run. Report them with "
                       "ncp_search's Ray helpers.")

    def warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def apply(self, event: dict[str, Any]) -> Track:
        """Apply a pool event and journal it."""
        track = self.pool.apply(event)
        if self.journal is not None:
            self.journal.write(event)
        return track

    def load_once(self) -> list[dict[str, Any]]:
        """Replay the journal the first time it is needed (after ``Tuner.restore``);
        returns the events replayed (none after the first call)."""
        if self._loaded or self.journal is None:
            return []
        self._loaded = True
        events = self.journal.read() or []
        if events:
            self.pool = TrialPool.replay(events, self.sign)
        return events

    def state(self) -> dict[str, Any]:
        """The pool as plain JSON."""
        return {"format": FORMAT, **self.pool.state()}


def null(value: float) -> float | None:
    """``value``, or None when it is not finite (JSON has no NaN)."""
    return value if math.isfinite(value) else None
