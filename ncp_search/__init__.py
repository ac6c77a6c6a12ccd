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

from ncp_search.errors import DataError, NCPSearchError, ProbeError
from ncp_search.predictor import AccuracyPredictor, FinalAccuracy

__version__ = "0.1.0"

# Public names whose modules import TensorFlow/Keras: resolved lazily (PEP 562).
_LAZY = {
    "attach_probe": "ncp_search.probe",
    "split_probe": "ncp_search.probe",
    "ProbeParts": "ncp_search.probe",
    "beta_eff": "ncp_search.capacitance",
    "beta_eff_terms": "ncp_search.capacitance",
    "beta_eff_from_weights": "ncp_search.capacitance",
    "BetaEffTerms": "ncp_search.capacitance",
    "BetaEffMeter": "ncp_search.capacitance",
    "BetaEffLogger": "ncp_search.callbacks",
    "NCPPruner": "ncp_search.optuna_pruner",
    "NCPCallback": "ncp_search.optuna_callback",
    "report_beta_eff": "ncp_search.optuna_reporting",
    "NCPScheduler": "ncp_search.ray_scheduler",
}

__all__ = [
    "AccuracyPredictor",
    "BetaEffLogger",
    "BetaEffMeter",
    "BetaEffTerms",
    "DataError",
    "FinalAccuracy",
    "NCPCallback",
    "NCPPruner",
    "NCPScheduler",
    "NCPSearchError",
    "ProbeError",
    "ProbeParts",
    "attach_probe",
    "beta_eff",
    "beta_eff_from_weights",
    "beta_eff_terms",
    "report_beta_eff",
    "split_probe",
]

if TYPE_CHECKING:  # pragma: no cover
    from ncp_search.callbacks import BetaEffLogger
    from ncp_search.capacitance import (
        BetaEffMeter,
        BetaEffTerms,
        beta_eff,
        beta_eff_from_weights,
        beta_eff_terms,
    )
    from ncp_search.optuna_callback import NCPCallback
    from ncp_search.optuna_pruner import NCPPruner
    from ncp_search.optuna_reporting import report_beta_eff
    from ncp_search.probe import ProbeParts, attach_probe, split_probe
    from ncp_search.ray_scheduler import NCPScheduler


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ncp_search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
