"""The stop rules: the only place where ncp_search decides to stop a trial.

Adapters (the Optuna pruner, the Ray scheduler) gather what the host knows into
plain numbers ("higher is better", see :class:`ncp_search.core.history.TrialHistory`)
and call these functions; they add nothing to the decision but their host's own
units for warm-up and grace.

Every function returns a :class:`Decision` whose ``reason`` says which guard or
comparison decided, so a log line, a report or a test can tell why a trial ran on.
Guards come first and fail open (the trial continues); the comparison is last.

NaN and edge cases:
    A trial whose latest *reported* value is NaN or infinite has diverged and is
    stopped by :func:`diverged_rule` (adapters: ``prune_diverged=True``, the
    default the budget benchmark picked; Optuna's built-in pruners do the same). A
    value that is missing or not a number at all (``None``, a string) is bad input,
    not divergence: the adapters continue and warn. A non-finite prediction
    continues the trial. Non-finite finals and predictions of other trials are left
    out of the reference (they never disable the rule for the others). An empty
    reference continues.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np

RULES = ("percentile", "asha")


@dataclass(frozen=True)
class Decision:
    """A stop decision and why.

    Attributes:
        stop: whether to stop the trial.
        reason: the guard or comparison that decided (``"diverged"``, ``"startup"``,
            ``"warmup"``, ``"interval"``, ``"no_prediction"``, ``"empty_reference"``,
            ``"no_rung"``, ``"already_at_rung"``, ``"last_step"``, ``"below"``,
            ``"not_below"``).
        value: the value compared (prediction, shifted by ``kappa * spread`` for the
            percentile rule); NaN where no comparison was made.
        threshold: the reference it was compared with; NaN where none.
    """

    stop: bool
    reason: str
    value: float = math.nan
    threshold: float = math.nan


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


PERCENTILE_DEFAULTS = {"percentile": 50.0, "n_startup_trials": 5, "n_warmup_steps": 2,
                       "interval_steps": 1, "kappa": 0.0}
"""The settings only the percentile rule reads, with their defaults."""
_COUNTS = ("n_startup_trials", "n_warmup_steps", "interval_steps")


def rule_settings(
    rule: str,
    host: str,
    *,
    reduction_factor: float,
    incumbent_alpha: float | None,
    **given: float | None,
) -> dict[str, float]:
    """Check the rule settings both adapters share (Optuna-style messages) and return
    the percentile rule's own settings (``given``, ``None`` meaning "not passed") with
    their defaults filled in, counts as ints.

    Raises:
        ValueError: naming the argument, what must hold and what was received; also
            when a setting only the percentile rule reads is passed with another rule:
            it would be ignored (code written for 0.1, whose default rule was the
            percentile rule, would change behaviour silently).
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, but got rule={rule!r}.")
    unknown = sorted(set(given) - set(PERCENTILE_DEFAULTS))
    if unknown:
        raise TypeError(f"rule_settings got unknown settings {unknown}.")
    passed = sorted(k for k, v in given.items() if v is not None)
    if rule != "percentile" and passed:
        raise ValueError(
            f"{host}: {', '.join(passed)} only apply to rule='percentile', but got "
            f"rule={rule!r}. Pass rule='percentile' (the default in 0.1) to keep that "
            f"rule, or drop {', '.join(passed)} to use {rule!r}.")
    settings: dict[str, float] = {
        k: PERCENTILE_DEFAULTS[k] if v is None else v for k, v in given.items()}
    bounds = {"percentile": ("in [0, 100]", lambda v: 0.0 <= v <= 100.0),
              "n_startup_trials": ("non-negative", lambda v: v >= 0),
              "n_warmup_steps": ("non-negative", lambda v: v >= 0),
              "interval_steps": (">= 1", lambda v: v >= 1),
              "kappa": ("finite", math.isfinite)}
    for name, value in settings.items():
        what, holds = bounds[name]
        if not holds(value):
            raise ValueError(f"{name} must be {what}, but got {name}={value}.")
    if not reduction_factor > 1.0:
        raise ValueError(
            f"reduction_factor must be > 1, but got reduction_factor={reduction_factor}.")
    if incumbent_alpha is not None and not 0.0 < incumbent_alpha < 1.0:
        raise ValueError("incumbent_alpha must be in (0, 1) or None, but got "
                         f"incumbent_alpha={incumbent_alpha}.")
    return {k: int(v) if k in _COUNTS else float(v) for k, v in settings.items()}


# ---------------------------------------------------------------- guards
def is_diverged(reported: object) -> bool:
    """Whether a reported metric value is a number that is NaN or infinite (a
    diverged run). ``None``, strings and other non-numbers are not: they are
    missing values, which the adapters treat as bad input."""
    if isinstance(reported, bool) or not isinstance(reported, (Real, np.floating,
                                                                  np.integer)):
        return False
    try:
        return not math.isfinite(float(reported))
    except OverflowError:  # an integer beyond float range is an infinite value
        return True


def diverged_rule(reported: object) -> Decision:
    """Stop a trial whose latest reported value is NaN or infinite.

    A diverged network does not come back (its weights are NaN or its loss has
    blown up), so every further epoch is wasted; Optuna's MedianPruner,
    PercentilePruner and SuccessiveHalvingPruner prune such a trial too. On the
    public Taskset task TS IRNN (23% of its runs diverge), letting them run cost
    NCP ASHA 0.29 of no pruning's epochs against 0.10 (docs/budget/). Adapters
    apply this before any other guard but the last step (a trial at its last step
    has used its budget).
    """
    if is_diverged(reported):
        return Decision(True, "diverged", float(reported))  # type: ignore[arg-type]
    return Decision(False, "finite")


def in_warmup(step: float, n_warmup_steps: float) -> bool:
    """Whether ``step`` is before the warm-up ends (no decision; Optuna's
    ``n_warmup_steps``, Ray's ``grace_period``, both in the host's step units)."""
    return step < n_warmup_steps


def is_check_step(
    step: float, reported_steps: Iterable[float], n_warmup_steps: float, interval_steps: int
) -> bool:
    """Whether ``step`` is the first reported step of its interval after warm-up.

    Intervals are ``[n_warmup_steps + i * interval_steps, ... + interval_steps)``;
    with strided or gapped reports the first report inside an interval is checked
    (as Optuna's own pruners do), so ``interval_steps`` never skips every report.
    """
    if interval_steps <= 1:
        return True
    offset = step - n_warmup_steps
    start = n_warmup_steps + (offset // interval_steps) * interval_steps
    earlier = [s for s in reported_steps if start <= s < step]
    return not earlier


def prediction_spread(pairs: Iterable[tuple[float, float]]) -> float:
    """Standard deviation of ``final - prediction`` over completed trials, each
    prediction made at the step now being decided (0 with fewer than 2 pairs).

    With ``kappa`` this widens the percentile rule by the predictor's own error at
    this horizon: the error of a prediction made early is larger than at the end.
    """
    errors = [f - p for p, f in pairs if math.isfinite(p) and math.isfinite(f)]
    return float(np.std(errors)) if len(errors) >= 2 else 0.0


def prediction_at(history: dict[float, float], step: float) -> float:
    """The prediction stored at the latest step <= ``step`` (NaN if none)."""
    earlier = [s for s in history if s <= step]
    return float(history[max(earlier)]) if earlier else math.nan


# ---------------------------------------------------------------- percentile
def percentile_rule(
    prediction: float,
    *,
    finals: Sequence[float],
    others: Sequence[float] = (),
    percentile: float = 50.0,
    n_startup_trials: int = 5,
    kappa: float = 0.0,
    spread: float = 0.0,
) -> Decision:
    """Stop when the prediction is below the ``100 - percentile`` percentile of the
    completed finals and the other trials' latest predictions.

    Args:
        prediction: this trial's predicted final.
        finals: final values of the completed trials.
        others: latest predictions of the other running and stopped trials.
        percentile: keep trials predicted to land in the best ``percentile`` percent.
        n_startup_trials: continue until this many completed trials have a finite
            final (at least 1: a rule over predictions only compares a first wave
            of trials with each other).
        kappa: decide on ``prediction + kappa * spread``.
        spread: the predictor's error spread at this step (see
            :func:`prediction_spread`).
    """
    done = _finite(finals)
    if len(done) < max(1, n_startup_trials):
        return Decision(False, "startup")
    if not math.isfinite(prediction):
        return Decision(False, "no_prediction")
    reference = done + _finite(others)
    threshold = float(np.percentile(reference, 100.0 - percentile))
    value = prediction + kappa * spread
    return Decision(value < threshold, "below" if value < threshold else "not_below",
                    value, threshold)


# ---------------------------------------------------------------- ASHA
def asha_rungs(grace: float, reduction_factor: float, max_t: float) -> list[float]:
    """Rung milestones ``grace * reduction_factor**k`` below ``max_t``, ascending
    (grace 1, factor 3, max_t 20: 1, 3, 9)."""
    if grace <= 0 or reduction_factor <= 1:
        raise ValueError("asha_rungs needs grace > 0 and reduction_factor > 1, but got "
                         f"grace={grace}, reduction_factor={reduction_factor}.")
    rungs = []
    milestone = float(grace)
    while milestone < max_t:
        rungs.append(milestone)
        milestone *= reduction_factor
    return rungs


def asha_rung_steps(min_resource: float, reduction_factor: float, last_step: float,
                    first_step: float = 1) -> list[float]:
    """ASHA's rungs as reported steps: after ``min_resource * reduction_factor**k``
    epochs, a trial's first epoch being reported at ``first_step`` (0 for Keras' epoch
    index, as NCPCallback and Optuna's Keras callback report it; 1 when epochs are
    counted from 1, as Ray's ``training_iteration``), below ``last_step``. With
    ``first_step=0``, 1, 3, 20: steps 0, 2, 8 (after epochs 1, 3 and 9 of 20)."""
    shift = first_step - 1
    return [r + shift for r in asha_rungs(min_resource, reduction_factor, last_step - shift)]


def current_rung(t: float, rungs: Sequence[float]) -> float | None:
    """The highest rung ``<= t`` (None before the first)."""
    reached = [r for r in rungs if r <= t]
    return reached[-1] if reached else None


def asha_rule(
    prediction: float,
    *,
    recorded: Sequence[float],
    reduction_factor: float,
) -> Decision:
    """At a rung: stop when the prediction is below the ``100 * (1 - 1/rf)``
    percentile of the predictions already recorded at that rung (an empty rung
    continues). The caller records the prediction at the rung either way."""
    if not math.isfinite(prediction):
        return Decision(False, "no_prediction")
    reference = _finite(recorded)
    if not reference:
        return Decision(False, "empty_reference", prediction)
    threshold = float(np.percentile(reference, 100.0 * (1.0 - 1.0 / reduction_factor)))
    stop = prediction < threshold
    return Decision(stop, "below" if stop else "not_below", prediction, threshold)


# ---------------------------------------------------------------- incumbent test
def incumbent_min_completed(alpha: float) -> int:
    """Completed trials the incumbent test needs before it can stop anything:
    ``ceil(1/alpha) - 1`` (fewer leave an empty conformal quantile)."""
    return max(1, math.ceil(1.0 / alpha) - 1)


def incumbent_rule(
    best_now: float,
    *,
    peers_best: Sequence[float],
    peers_final: Sequence[float],
    alpha: float,
) -> Decision:
    """The conformal incumbent test: stop when even an upper bound on this trial's
    final is below the best completed final (the incumbent).

    The final is predicted as ``best_now + median(final - best)`` over the
    completed trials, ``best`` being each one's best value at the step now being
    decided; the bound adds the ``ceil((n+1)(1-alpha))``-th smallest
    leave-one-out residual of that prediction (split-conformal, Vovk et al.
    2005; Lei et al. 2018).

    What it promises: if this trial were exchangeable with the completed ones, its
    final would exceed the bound with probability at most ``alpha``, so a trial
    that would have beaten the incumbent is stopped with probability at most
    ``alpha`` at each look. What it does not: the completed trials are the
    rule's own survivors (the stopped ones never report a final), so they are
    not exchangeable with a trial being judged early; and a trial is looked at
    at every step, so its chance of a wrong stop over a run is larger than
    ``alpha`` per look. docs/benchmarks.md reports the measured rate of good trials
    stopped next to each ``alpha``.

    Args:
        best_now: this trial's best value so far ("higher is better").
        peers_best: each completed trial's best value at the same step.
        peers_final: their final values, in the same order.
        alpha: miscoverage level in (0, 1); smaller stops less.
    """
    pairs = [(b, f) for b, f in zip(peers_best, peers_final)
             if b is not None and f is not None and math.isfinite(b) and math.isfinite(f)]
    n = len(pairs)
    if n < incumbent_min_completed(alpha) or n < 2:
        return Decision(False, "startup")
    if not math.isfinite(best_now):
        return Decision(False, "no_prediction")
    residuals = np.array([f - b for b, f in pairs])
    rank = math.ceil((n + 1) * (1.0 - alpha))
    if rank > n:
        return Decision(False, "startup")
    loo = np.array([residuals[j] - np.median(np.delete(residuals, j)) for j in range(n)])
    bound = best_now + float(np.median(residuals)) + float(np.sort(loo)[rank - 1])
    incumbent = max(f for _, f in pairs)
    stop = bound < incumbent
    return Decision(stop, "below_incumbent" if stop else "not_below_incumbent",
                    bound, incumbent)
