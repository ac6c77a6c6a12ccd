"""Optuna, imported in one place for the whole Optuna integration, with the install hint.

The integration's modules import Optuna's names from here, so a missing Optuna gives
one message that says which extra to install.
"""

from __future__ import annotations

try:
    import optuna
    from optuna.pruners import BasePruner
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState
except ImportError as error:  # pragma: no cover - exercised without optuna only
    raise ImportError(
        "ncp_search's Optuna integration (NCPPruner, NCPCallback, report_beta_eff, "
        "optimize_pausing) needs Optuna: pip install 'ncp-search[optuna]'"
    ) from error

__all__ = ["BasePruner", "FrozenTrial", "StudyDirection", "TrialState", "optuna"]
