"""Store beta_eff and predictions on an Optuna trial (no Keras needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from ncp_search.core.history import PROBE_TERMS, as_number
from ncp_search.integrations.optuna.pruner import (
    BETA_ATTR,
    HISTORY_ATTR,
    PREDICTION_ATTR,
    TERMS_ATTR,
    NCPPruner,
)


def _frozen(trial: optuna.Trial) -> Any:
    for frozen in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number == trial.number:
            return frozen
    return None


def _terms_dict(terms: Any) -> dict[str, float | None]:
    """Probe terms (a ``BetaEffTerms`` or a mapping) under the names predictors read
    (``probe_<field>``; ``train_loss`` as is), non-finite values as ``None``."""
    raw = terms.as_dict() if hasattr(terms, "as_dict") else dict(terms)
    out: dict[str, float | None] = {}
    for name, value in raw.items():
        key = name if name in PROBE_TERMS or name == "train_loss" else f"probe_{name}"
        if key in PROBE_TERMS or key == "train_loss":
            number = as_number(value)
            out[key] = number if math.isfinite(number) else None
    return out


def report_beta_eff(
    trial: optuna.Trial,
    step: int,
    beta_eff: float,
    value: float | None = None,
    *,
    terms: Any = None,
) -> float | None:
    """Store ``beta_eff`` (and optionally report ``value``) for ``step``; return the
    trial's current predicted final value when the study's pruner is an NCPPruner.

    ``beta_eff`` goes into the user attribute ``ncp_beta_eff`` (``{step: value}``,
    ``None`` for NaN); ``terms`` (the :class:`ncp_search.BetaEffTerms` of the same
    measurement, or a mapping that may also hold ``train_loss``) into
    ``ncp_probe_terms`` (``{step: {name: value}}``), which the predictors that read
    probe terms need; the prediction into ``ncp_predicted_final``
    (``{"step": ..., "value": ...}``) and its history into ``ncp_predicted_history``
    (``{step: value}``), so all survive RDB/Journal storage and show in
    optuna-dashboard. Call ``trial.should_prune()`` afterwards as usual.

    Raises:
        ValueError: if ``step`` is negative.
    """
    if step < 0:
        raise ValueError(f"step must be non-negative, but got step={step}.")
    if isinstance(terms, Mapping) and not terms:
        terms = None
    betas = dict(trial.user_attrs.get(BETA_ATTR, {}))
    number = as_number(beta_eff)
    betas[str(int(step))] = number if math.isfinite(number) else None
    trial.set_user_attr(BETA_ATTR, betas)
    if terms is not None:
        stored_terms = dict(trial.user_attrs.get(TERMS_ATTR, {}))
        stored_terms[str(int(step))] = _terms_dict(terms)
        trial.set_user_attr(TERMS_ATTR, stored_terms)
    if value is not None:
        trial.report(float(value), int(step))
    pruner = trial.study.pruner
    if not isinstance(pruner, NCPPruner):
        return None
    frozen = _frozen(trial)
    if frozen is None:
        return None
    predicted = pruner.predict_final(trial.study, frozen)
    stored = float(predicted) if math.isfinite(predicted) else None
    trial.set_user_attr(PREDICTION_ATTR, {"step": int(step), "value": stored})
    history = dict(trial.user_attrs.get(HISTORY_ATTR, {}))
    history[str(int(step))] = stored
    trial.set_user_attr(HISTORY_ATTR, history)
    return stored


def report_predicted_final(trial: optuna.Trial, step: int) -> float | None:
    """Report the trial's latest predicted final value as the intermediate value of
    ``step`` (call it just before raising ``TrialPruned``), so that the sampler
    (TPE ranks pruned trials by their last reported value) learns from the
    prediction instead of the raw value at the pruning step.

    Returns the reported value, or ``None`` (nothing reported) when no finite
    prediction is stored.
    """
    stored = trial.user_attrs.get(PREDICTION_ATTR, {}).get("value")
    if stored is None or not math.isfinite(stored):
        return None
    trial.report(float(stored), int(step))
    return float(stored)
