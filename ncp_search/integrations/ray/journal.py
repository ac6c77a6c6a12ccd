"""The scheduler's state on disk: an append-only JSON-lines journal of pool events.

Ray Tune does not checkpoint a scheduler's state (ray-project/ray#30838): a sweep
resumed with ``Tuner.restore`` gets the scheduler as it was when the sweep started.
:class:`Journal` is how :class:`ncp_search.NCPScheduler` finds its trials again: every
:class:`~ncp_search.core.pool.TrialPool` event is appended as one line, and on restore
the lines are replayed.

The file is user-reachable state (a folder can be copied, edited or damaged), so it is
validated, never trusted: it is parsed as JSON (never unpickled); each line is checked
against the event schema (known event, string id of bounded length, finite numbers
within bounds, a few series, bounded size and nesting) and a line that fails is
skipped and counted, with one warning per file. Writing never raises out of a
scheduler hook: if the file cannot be written (a full disk, a read-only folder), the
scheduler warns once and goes on deciding without persisting.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from ncp_search.core.history import REPORTED_SERIES

logger = logging.getLogger(__name__)

FORMAT = "ncp_search.NCPScheduler/1"
MAX_LINE = 64 * 1024  # bytes: a result line holds a few numbers
MAX_ID = 256
MAX_SERIES = 4 * len(REPORTED_SERIES)
BOUND = 1e15  # larger numbers are not steps, metrics or predictions

_FIELDS: dict[str, dict[str, str]] = {
    "add": {},
    "result": {"t": "step", "v": "number?", "s": "series?"},
    "decision": {"t": "step", "p": "number?", "stop": "bool", "rung": "number?",
                 "pause": "bool?", "why": "reason?", "th": "number?"},
    "complete": {"final": "number?"},
    "remove": {},
    "error": {},
}


def _number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, int):
        return -BOUND <= value <= BOUND
    return math.isfinite(value) and abs(value) <= BOUND


def _valid(field: str, kind: str, value: Any) -> bool:
    if kind.endswith("?") and value is None:
        return True
    kind = kind.rstrip("?")
    if kind in ("step", "number"):
        return _number(value)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "reason":
        return isinstance(value, str) and 0 < len(value) <= 64 and value.isidentifier()
    if kind == "series":
        return (isinstance(value, dict) and len(value) <= MAX_SERIES
                and all(isinstance(k, str) and len(k) <= MAX_ID
                        and (v is None or _number(v)) for k, v in value.items()))
    return False  # pragma: no cover - the schema above names every kind


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on ``line`` if it is a valid one, else None (never raises)."""
    if len(line) > MAX_LINE or line.count("{") > 8 or line.count("[") > 8:
        return None  # bounded nesting before the parser sees it
    try:
        event = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict):
        return None
    kind = event.get("e")
    if not isinstance(kind, str) or kind not in _FIELDS:
        return None
    trial_id = event.get("id")
    if not isinstance(trial_id, str) or not 0 < len(trial_id) <= MAX_ID:
        return None
    fields = _FIELDS[kind]
    if set(event) - set(fields) - {"e", "id"}:
        return None
    for name, spec in fields.items():
        if not spec.endswith("?") and name not in event:
            return None
        if not _valid(name, spec, event.get(name)):
            return None
    return event


class Journal:
    """Append pool events to ``path``; replay them.

    Args:
        path: the JSON-lines file (created with its folder on the first write).
        warn: called once with a message when the file cannot be read or written.
    """

    def __init__(self, path: str, warn: Callable[[str, str], None]) -> None:
        self.path = os.path.abspath(path)
        self._warn = warn
        self._handle: Any = None
        self.broken = False  # stopped writing after a failure

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None
        return state

    def write(self, event: Mapping[str, Any]) -> None:
        """Append one event; on an OS error, warn once and stop persisting."""
        if self.broken:
            return
        try:
            if self._handle is None:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                new = not os.path.exists(self.path)
                self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                if new:
                    self._handle.write(json.dumps({"format": FORMAT}) + "\n")
            self._handle.write(json.dumps(event, allow_nan=False) + "\n")
            self._handle.flush()
        except (OSError, ValueError) as error:
            self.broken = True
            self._warn("journal-write", f"NCPScheduler cannot write its journal {self.path} "
                       f"({error}); it goes on deciding without persisting its state, so a "
                       "Tuner.restore will not find the histories written after this.")

    def read(self) -> list[dict[str, Any]] | None:
        """The valid events in the file ([] if there is none; None if it is not a
        journal: then it is never written to). Bad lines are skipped and counted,
        with one warning."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return []
        except OSError as error:
            self.broken = True
            self._warn("journal-read", f"NCPScheduler cannot read its journal {self.path} "
                       f"({error}); starting empty and not writing to it.")
            return None
        header = None
        if lines and len(lines[0]) <= MAX_LINE:
            try:
                header = json.loads(lines[0])
            except (ValueError, RecursionError):
                header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            self.broken = True
            self._warn("journal-format", f"NCPScheduler: {self.path} is not an NCPScheduler "
                       "journal; starting empty and not writing to it.")
            return None
        events, bad = [], 0
        for position, line in enumerate(lines[1:], start=2):
            event = parse_event(line)
            if event is None:
                if position < len(lines):  # a torn last line is an interrupted write
                    bad += 1
                continue
            events.append(event)
        if bad:
            self._warn("journal-lines", f"NCPScheduler: skipped {bad} line(s) of {self.path} "
                       "that are not valid state events (damaged or edited file).")
        logger.info("NCPScheduler: read %d events from %s (%d skipped)", len(events),
                    self.path, bad)
        return events


def save_state(path: str, state: Mapping[str, Any]) -> None:
    """Write a scheduler state file atomically (Tune's ``TrialScheduler.save``)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump({"format": FORMAT, **state}, handle, allow_nan=False)
    os.replace(tmp, path)


def load_state(path: str) -> dict[str, Any]:
    """Read a state file written by :func:`save_state`.

    Raises:
        ValueError: if it is not one.
    """
    with open(path, encoding="utf-8") as handle:
        state = json.load(handle)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an NCPScheduler state file.")
    return state
