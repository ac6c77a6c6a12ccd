"""A study seen through its trials' predicted finals, for a built-in Optuna pruner
(``NCPPruner(base=...)``)."""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from ncp_search.core.history import as_number
from ncp_search.integrations.optuna.index import HISTORY_ATTR


def predicted_view(trial: FrozenTrial) -> FrozenTrial:
    """The trial with its intermediate values replaced by its predicted finals at
    each step (steps without a prediction keep their raw value)."""
    history = trial.user_attrs.get(HISTORY_ATTR)
    if not history:
        return trial
    values = dict(trial.intermediate_values)
    for step, value in history.items():
        number = as_number(value)
        if math.isfinite(number) and int(step) in values:
            values[int(step)] = number
    return FrozenTrial(
        number=trial.number, state=trial.state, value=trial.value if trial.values else None,
        datetime_start=trial.datetime_start, datetime_complete=trial.datetime_complete,
        params=trial.params, distributions=trial.distributions, user_attrs=trial.user_attrs,
        system_attrs=trial.system_attrs, intermediate_values=values, trial_id=trial._trial_id,
    )


class PredictedStudy:
    """A view of a study whose trials report predicted finals instead of raw values,
    handed to a built-in pruner (``NCPPruner(base=...)``). Everything else is the
    real study's."""

    def __init__(self, study: optuna.study.Study) -> None:
        self._wrapped = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return [predicted_view(t) for t in self._wrapped.get_trials(deepcopy=deepcopy,
                                                                    states=states)]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()
