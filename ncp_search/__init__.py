"""ncp_search: prune hyperparameter trials by their predicted final accuracy.

The prediction comes from the neural capacitance ``beta_eff`` of a frozen probe on
each trial's model and a Bayesian ridge regression (Jiang et al., Nature
Communications 15, 5718, 2024).

Importing this package is cheap and silent: TensorFlow/Keras are imported on first
use of a name that needs them, and Optuna and Ray are never imported here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ncp_search.core.history import TrialHistory
from ncp_search.core.predictors import PREDICTORS, predict_final
from ncp_search.core.regression import AccuracyPredictor, FinalAccuracy
from ncp_search.core.rules import Decision
from ncp_search.errors import DataError, NCPSearchError, ProbeError

__version__ = "0.1.0"

# Public names whose modules import TensorFlow/Keras: resolved lazily (PEP 562).
_LAZY = {
    "attach_probe": "ncp_search.engine.probe",
    "split_probe": "ncp_search.engine.probe",
    "ProbeParts": "ncp_search.engine.probe",
    "beta_eff": "ncp_search.engine.capacitance",
    "beta_eff_terms": "ncp_search.engine.capacitance",
    "beta_eff_from_weights": "ncp_search.engine.capacitance",
    "BetaEffTerms": "ncp_search.engine.capacitance",
    "BetaEffMeter": "ncp_search.engine.capacitance",
    "BetaEffLogger": "ncp_search.engine.callbacks",
    "NCPPruner": "ncp_search.integrations.optuna.pruner",
    "NCPCallback": "ncp_search.integrations.optuna.callback",
    "report_beta_eff": "ncp_search.integrations.optuna.reporting",
    "NCPScheduler": "ncp_search.integrations.ray.scheduler",
}

__all__ = [
    "PREDICTORS",
    "AccuracyPredictor",
    "BetaEffLogger",
    "BetaEffMeter",
    "BetaEffTerms",
    "DataError",
    "Decision",
    "FinalAccuracy",
    "NCPCallback",
    "NCPPruner",
    "NCPScheduler",
    "NCPSearchError",
    "ProbeError",
    "ProbeParts",
    "TrialHistory",
    "attach_probe",
    "beta_eff",
    "beta_eff_from_weights",
    "beta_eff_terms",
    "predict_final",
    "report_beta_eff",
    "split_probe",
]

if TYPE_CHECKING:  # pragma: no cover
    from ncp_search.engine.callbacks import BetaEffLogger
    from ncp_search.engine.capacitance import (
        BetaEffMeter,
        BetaEffTerms,
        beta_eff,
        beta_eff_from_weights,
        beta_eff_terms,
    )
    from ncp_search.engine.probe import ProbeParts, attach_probe, split_probe
    from ncp_search.integrations.optuna.callback import NCPCallback
    from ncp_search.integrations.optuna.pruner import NCPPruner
    from ncp_search.integrations.optuna.reporting import report_beta_eff
    from ncp_search.integrations.ray.scheduler import NCPScheduler


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ncp_search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
