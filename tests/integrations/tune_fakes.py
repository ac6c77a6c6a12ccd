"""Stand-ins for Ray Tune objects, for tests that call a scheduler's hooks directly."""

from __future__ import annotations


class Trial:
    """What NCPScheduler reads of a Tune trial: its ``trial_id``."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
