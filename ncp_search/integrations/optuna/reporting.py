"""Store beta_eff and predictions on an Optuna trial (no Keras needed).

Besides the per-step dictionaries the pruner reads (JSON objects such as
``ncp_beta_eff = {"0": 1.2, "1": 1.1}``), it stores what optuna-dashboard can sort
and plot: plain numbers on the trial, which the dashboard lists as sortable columns
of its trial table and offers as plot targets (history, slice, parallel coordinate,
rank, EDF) beside the objective:

- per step: ``ncp_beta_eff/<step>`` and ``ncp_predicted_final/<step>`` (e.g.
  ``ncp_predicted_final/2``: the prediction after step 2, so "predicted final after
  epoch 3" across trials is one plot); a step with no finite value has none;
- latest: ``ncp_beta_eff_last``, ``ncp_predicted_final_last`` (``None`` for NaN,
  which makes the dashboard treat that column as text) and ``ncp_last_step``;
- at a prune: ``ncp_decision_value``, ``ncp_decision_threshold`` and
  ``ncp_decision_epoch`` (the numbers of ``ncp_decision`` below).

It also stores what decides (the study user attribute ``ncp_pruner``: the pruner's
class and settings, and whether its predictor uses ``beta_eff``), and logs once per
study and process which predictor and rule decide.

Steps and epochs: a *step* is what is reported to Optuna (``trial.report(value,
step)``); :class:`ncp_search.NCPCallback` and the sweeps report Keras' 0-based epoch
index as the step. What people read (log lines, ``TrialPruned`` messages, the
report, ``ncp_decision["epoch"]``) counts epochs from 1: **epoch = step + 1**, the
number of epochs trained. Attributes keyed by step (``ncp_beta_eff``,
``ncp_predicted_history``, ...) keep the step.

Why a trial was pruned: :func:`record_decision` stores the trial user attribute
``ncp_decision``, a JSON object with

- ``step``: the step at which the pruner decided (the last reported step);
- ``epoch``: the same in epochs trained, ``step + 1``;
- ``reason``: the guard or comparison that decided: ``"below"`` (the compared value
  is below the threshold) or ``"diverged"`` (the latest value is NaN or infinite);
- ``value``: the compared value (the trial's predicted final, shifted by ``kappa``
  times the spread of past errors for the percentile rule), in the objective's own
  units, ``null`` where none was compared;
- ``threshold``: what it was compared with (the rung's or the percentile's
  reference), in the objective's own units, ``null`` where none.

:func:`prune_message` writes the same as one line, the ``TrialPruned`` message that
Optuna logs ("Trial 7 pruned. pruned at epoch 3 (step 2): predicted final 0.6123
below threshold 0.75").
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from ncp_search.core.history import PROBE_TERMS, as_number, probe_series
from ncp_search.core.predictors import PREDICTORS
from ncp_search.integrations.optuna._optuna import TrialState, optuna
from ncp_search.integrations.optuna.index import (
    BETA_ATTR,
    HISTORY_ATTR,
    PREDICTION_ATTR,
    TERMS_ATTR,
)
from ncp_search.integrations.optuna.pausing import DrivenPruner
from ncp_search.integrations.optuna.pruner import NCPPruner

logger = logging.getLogger(__name__)

PRUNER_ATTR = "ncp_pruner"  # study: the pruner's class and settings
BETA_STEP_ATTR = BETA_ATTR + "/{step}"  # trial: beta_eff at a step (float)
PREDICTION_STEP_ATTR = "ncp_predicted_final/{step}"  # trial: prediction after a step
BETA_LAST_ATTR = "ncp_beta_eff_last"  # trial: latest beta_eff (float, None for NaN)
PREDICTION_LAST_ATTR = "ncp_predicted_final_last"  # trial: latest prediction (float/None)
STEP_LAST_ATTR = "ncp_last_step"  # trial: the step of the two above (int)

_recorded: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_recorded_lock = threading.Lock()


def pruner_settings(pruner: Any) -> dict[str, Any]:
    """What decides, as JSON values: :meth:`NCPPruner.settings` for an NCPPruner,
    the pausing policy's class and ``uses_beta_eff`` for a ``DrivenPruner`` (a study
    an ask-and-tell pausing driver runs), else the pruner's class with
    ``uses_beta_eff: False`` (a built-in pruner reads the reported values only)."""
    if isinstance(pruner, (NCPPruner, DrivenPruner)):
        return pruner.settings()
    return {"class": type(pruner).__name__, "uses_beta_eff": False}


def describe_pruner(pruner: Any) -> str:
    """One sentence naming the rule and predictor that decide and whether they use
    ``beta_eff`` (what is logged once per study)."""
    if isinstance(pruner, DrivenPruner):
        return pruner.decides
    if not isinstance(pruner, NCPPruner):
        return (f"{type(pruner).__name__} decides from the reported values alone; beta_eff "
                "is recorded but does not decide.")
    settings = pruner.settings()
    predictor = PREDICTORS[pruner.predictor]
    if settings["base"] is not None:
        rule = f"{settings['base']} run on the predicted finals"
    elif pruner.rule == "asha":
        first = pruner.first_step - 1 + pruner.min_resource
        rule = (f"rule='asha' (rungs from step {first}, reduction_factor="
                f"{pruner.reduction_factor:g})")
    else:
        rule = (f"rule='percentile' (percentile={pruner.percentile:g}, n_startup_trials="
                f"{pruner.n_startup_trials}, n_warmup_steps={pruner.n_warmup_steps})")
    if predictor.uses_beta_eff:
        reads = ", ".join(predictor.requires)
        signal = f"it uses beta_eff (reads {reads})"
    else:
        signal = ("it does not use beta_eff: beta_eff is recorded, but the decisions come "
                  "from the reported values alone")
    return (f"NCPPruner decides with {rule} on predictor={pruner.predictor!r} "
            f"({predictor.summary}); {signal}.")


def _record_pruner(study: Any) -> None:
    """Store the pruner's settings on the study and log what decides, once per study
    and pruner object in this process."""
    pruner = study.pruner
    name = study.study_name
    try:
        with _recorded_lock:
            seen = _recorded.setdefault(pruner, set())
            if name in seen:
                return
            seen.add(name)
    except TypeError:  # a pruner that cannot be weakly referenced: record every time
        pass
    study.set_user_attr(PRUNER_ATTR, pruner_settings(pruner))
    logger.info("study %r: %s", name, describe_pruner(pruner))


def _frozen(trial: optuna.Trial) -> Any:
    for frozen in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if frozen.number == trial.number:
            return frozen
    return None


def _terms_dict(terms: Any) -> dict[str, float | None]:
    """Probe terms (a ``BetaEffTerms`` or a mapping) under the names predictors read
    (``probe_<field>``; ``train_loss`` as is), non-finite values as ``None``."""
    raw = terms.as_dict() if hasattr(terms, "as_dict") else dict(terms)
    named = probe_series({k: v for k, v in raw.items() if k != "train_loss"})
    if "train_loss" in raw:
        named["train_loss"] = raw["train_loss"]
    out: dict[str, float | None] = {}
    for key, value in named.items():
        if key in PROBE_TERMS or key == "train_loss":
            number = as_number(value)
            out[key] = number if math.isfinite(number) else None
    return out


def report_beta_eff(
    trial: optuna.Trial,
    step: int,
    beta_eff: float | None,
    value: float | None = None,
    *,
    terms: Any = None,
) -> float | None:
    """Store ``beta_eff`` (and optionally report ``value``) for ``step``; return the
    trial's current predicted final value when the study's pruner is an NCPPruner.

    ``beta_eff`` goes into the user attribute ``ncp_beta_eff`` (``{step: value}``,
    ``None`` for NaN; ``beta_eff=None`` means not measured: nothing is stored for
    it); ``terms`` (the :class:`ncp_search.BetaEffTerms` of the same
    measurement, or a mapping that may also hold ``train_loss``) into
    ``ncp_probe_terms`` (``{step: {name: value}}``), which the predictors that read
    probe terms need; the prediction into ``ncp_predicted_final``
    (``{"step": ..., "value": ...}``) and its history into ``ncp_predicted_history``
    (``{step: value}``), so all survive RDB/Journal storage and show in
    optuna-dashboard. The same values are also stored as plain numbers, which the
    dashboard can sort trials by and plot: ``ncp_beta_eff/<step>`` and
    ``ncp_predicted_final/<step>`` (finite values only), ``ncp_beta_eff_last``,
    ``ncp_predicted_final_last`` (``None`` for NaN) and ``ncp_last_step``. On the
    first call in a process the study gets the user attribute ``ncp_pruner``
    (:func:`pruner_settings`) and one ``logging`` INFO line says which rule and
    predictor decide and whether they use ``beta_eff`` (:func:`describe_pruner`).
    Call ``trial.should_prune()`` afterwards as usual.

    Raises:
        ValueError: if ``step`` is negative.
    """
    if step < 0:
        raise ValueError(f"step must be non-negative, but got step={step}.")
    if isinstance(terms, Mapping) and not terms:
        terms = None
    if beta_eff is not None:
        betas = dict(trial.user_attrs.get(BETA_ATTR, {}))
        number = as_number(beta_eff)
        betas[str(int(step))] = number if math.isfinite(number) else None
        trial.set_user_attr(BETA_ATTR, betas)
        trial.set_user_attr(BETA_LAST_ATTR, betas[str(int(step))])
        if math.isfinite(number):
            trial.set_user_attr(BETA_STEP_ATTR.format(step=int(step)), number)
    trial.set_user_attr(STEP_LAST_ATTR, int(step))
    if terms is not None:
        stored_terms = dict(trial.user_attrs.get(TERMS_ATTR, {}))
        stored_terms[str(int(step))] = _terms_dict(terms)
        trial.set_user_attr(TERMS_ATTR, stored_terms)
    if value is not None:
        trial.report(float(value), int(step))
    _record_pruner(trial.study)
    pruner = trial.study.pruner
    if not isinstance(pruner, NCPPruner):
        return None
    frozen = _frozen(trial)
    if frozen is None:
        return None
    predicted = pruner.predict_final(trial.study, frozen)
    stored = float(predicted) if math.isfinite(predicted) else None
    trial.set_user_attr(PREDICTION_ATTR, {"step": int(step), "value": stored})
    trial.set_user_attr(PREDICTION_LAST_ATTR, stored)
    if stored is not None:
        trial.set_user_attr(PREDICTION_STEP_ATTR.format(step=int(step)), stored)
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


DECISION_ATTR = "ncp_decision"


def record_decision(trial: optuna.Trial, epoch: int) -> dict[str, Any] | None:
    """Store why an NCPPruner pruned ``trial`` (call it when ``should_prune()`` said
    so, before raising ``TrialPruned``) as the user attribute ``ncp_decision``:
    ``{"step", "epoch": step + 1, "reason", "value", "threshold"}`` in the objective's
    own units (see the module docstring), so reports can draw the threshold at the
    stop; its numbers also as ``ncp_decision_epoch``, ``ncp_decision_value`` and
    ``ncp_decision_threshold`` (for optuna-dashboard). ``epoch`` is the step just
    reported (Keras' 0-based epoch index). Returns it, or ``None`` for another pruner
    or a trial that is not running."""
    pruner = trial.study.pruner
    frozen = _frozen(trial)
    if not isinstance(pruner, NCPPruner) or frozen is None:
        return None
    decision = pruner.decide(trial.study, frozen)
    sign = 1.0 if trial.study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0

    def units(value: float) -> float | None:
        return sign * value if math.isfinite(value) else None

    stored = {"step": int(epoch), "epoch": int(epoch) + 1, "reason": decision.reason,
              "value": units(decision.value), "threshold": units(decision.threshold)}
    trial.set_user_attr(DECISION_ATTR, stored)
    for key in ("epoch", "value", "threshold"):  # numbers the dashboard sorts and plots
        if stored[key] is not None:
            trial.set_user_attr(f"{DECISION_ATTR}_{key}", stored[key])
    return stored


def prune_message(step: int, decision: Mapping[str, Any] | None = None,
                  pruner: Any = None) -> str:
    """The one line that says where and why a trial was pruned (the ``TrialPruned``
    message, which Optuna logs): the epoch (``step + 1``) and the step, and, from an
    NCPPruner's ``decision`` (:func:`record_decision`), the compared value and the
    threshold; for another pruner, its class.

    Example:
        >>> prune_message(2, {"step": 2, "epoch": 3, "reason": "below", "value": 0.61234,
        ...                   "threshold": 0.75})
        'pruned at epoch 3 (step 2): predicted final 0.6123 below threshold 0.75'
        >>> prune_message(0, None, optuna.pruners.MedianPruner())
        'pruned at epoch 1 (step 0) by MedianPruner'
    """
    where = f"pruned at epoch {int(step) + 1} (step {int(step)})"
    if not decision:
        return where + (f" by {type(pruner).__name__}" if pruner is not None else "")
    value, threshold = decision.get("value"), decision.get("threshold")
    reason = str(decision.get("reason"))
    if reason == "diverged":
        return f"{where}: diverged (latest value {_shown(value)})"
    if value is None and threshold is None:
        return f"{where}: {reason}"
    word = "below" if reason == "below" else f"{reason}:"
    return f"{where}: predicted final {_shown(value)} {word} threshold {_shown(threshold)}"


def _shown(number: Any) -> str:
    return "nan" if number is None else f"{float(number):.4g}"
