"""ncp_search: prune hyperparameter trials by their predicted final accuracy.

The prediction comes from the neural capacitance ``beta_eff`` of a frozen probe on
each trial's model and a Bayesian ridge regression (Jiang et al., Nature
Communications 15, 5718, 2024).

Importing this package is cheap and silent: TensorFlow/Keras are imported on first
use of a name that needs them, Optuna and Ray on first use of their adapters
(``NCPPruner``, ``NCPCallback``, ``report_beta_eff``; ``NCPScheduler``,
``NCPTuneCallback``, ``report_beta_eff_to_tune``), never here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ncp_search.core.history import TrialHistory
from ncp_search.core.pausing import PausingPolicy
from ncp_search.core.policy import AshaPolicy, PercentilePolicy, Policy
from ncp_search.core.predictors import PREDICTORS, predict_final
from ncp_search.core.regression import AccuracyPredictor, FinalAccuracy
from ncp_search.core.rules import Decision
from ncp_search.errors import DataError, NCPSearchError, ProbeError

__version__ = "0.3.0"

# Public names whose modules import TensorFlow/Keras: resolved lazily (PEP 562).
_LAZY = {
    "attach_probe": "ncp_search.engine.probe",
    "split_probe": "ncp_search.engine.probe",
    "observer_probe": "ncp_search.engine.probe",
    "probe_batch": "ncp_search.engine.batch",
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
    "optimize_pausing": "ncp_search.integrations.optuna.pausing",
    "NCPScheduler": "ncp_search.integrations.ray.scheduler",
    "NCPTuneCallback": "ncp_search.integrations.ray.callback",
    "report_beta_eff_to_tune": "ncp_search.integrations.ray.trainable",
    "restore_keras": "ncp_search.integrations.ray.checkpoint",
    "keras_checkpoint": "ncp_search.integrations.ray.checkpoint",
}

__all__ = [
    "PREDICTORS",
    "AccuracyPredictor",
    "AshaPolicy",
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
    "NCPTuneCallback",
    "PausingPolicy",
    "PercentilePolicy",
    "Policy",
    "ProbeError",
    "ProbeParts",
    "TrialHistory",
    "attach_probe",
    "beta_eff",
    "beta_eff_from_weights",
    "beta_eff_terms",
    "observer_probe",
    "optimize_pausing",
    "keras_checkpoint",
    "predict_final",
    "probe_batch",
    "report_beta_eff",
    "report_beta_eff_to_tune",
    "restore_keras",
    "split_probe",
]

if TYPE_CHECKING:  # pragma: no cover
    from ncp_search.engine.batch import probe_batch
    from ncp_search.engine.callbacks import BetaEffLogger
    from ncp_search.engine.capacitance import (
        BetaEffMeter,
        BetaEffTerms,
        beta_eff,
        beta_eff_from_weights,
        beta_eff_terms,
    )
    from ncp_search.engine.probe import ProbeParts, attach_probe, observer_probe, split_probe
    from ncp_search.integrations.optuna.callback import NCPCallback
    from ncp_search.integrations.optuna.pausing import optimize_pausing
    from ncp_search.integrations.optuna.pruner import NCPPruner
    from ncp_search.integrations.optuna.reporting import report_beta_eff
    from ncp_search.integrations.ray.callback import NCPTuneCallback
    from ncp_search.integrations.ray.checkpoint import keras_checkpoint, restore_keras
    from ncp_search.integrations.ray.scheduler import NCPScheduler
    from ncp_search.integrations.ray.trainable import report_beta_eff_to_tune


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ncp_search' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
