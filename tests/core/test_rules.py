"""The stop rules (core/rules.py): guards first, the comparison last."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncp_search.core import rules


def test_percentile_rule_guards_and_comparison():
    finals = [0.6, 0.7, 0.8, 0.9, 1.0]
    assert rules.percentile_rule(0.1, finals=finals[:4], n_startup_trials=5).reason == "startup"
    # never a rule over predictions only, even with n_startup_trials=0
    assert rules.percentile_rule(0.1, finals=[], others=[0.9, 0.9],
                                 n_startup_trials=0).reason == "startup"
    assert rules.percentile_rule(math.nan, finals=finals).reason == "no_prediction"
    low = rules.percentile_rule(0.75, finals=finals, percentile=50.0)
    assert low.stop and low.threshold == pytest.approx(0.8) and low.reason == "below"
    high = rules.percentile_rule(0.85, finals=finals, percentile=50.0)
    assert not high.stop and high.reason == "not_below"


def test_non_finite_finals_and_predictions_never_disable_the_rule():
    finals = [0.6, 0.7, float("nan"), 0.8, 0.9, 1.0, float("inf")]
    decision = rules.percentile_rule(0.1, finals=finals, others=[float("nan"), None])
    assert decision.stop and math.isfinite(decision.threshold)


def test_kappa_shifts_the_prediction_by_the_spread():
    finals = [0.6, 0.7, 0.8, 0.9, 1.0]
    assert rules.percentile_rule(0.75, finals=finals).stop
    relaxed = rules.percentile_rule(0.75, finals=finals, kappa=1.0, spread=0.1)
    assert not relaxed.stop and relaxed.value == pytest.approx(0.85)
    pairs = [(0.5, 0.6), (0.5, 0.8), (math.nan, 0.9)]
    assert rules.prediction_spread(pairs) == pytest.approx(0.1)
    assert rules.prediction_spread(pairs[:1]) == 0.0
    assert rules.prediction_at({0.0: 0.1, 4.0: 0.4, 9.0: 0.9}, 5) == 0.4
    assert math.isnan(rules.prediction_at({4.0: 0.4}, 3))


def test_asha_rungs_like_ray_and_the_rung_rule():
    assert rules.asha_rungs(1, 3, 20) == [1.0, 3.0, 9.0]
    assert rules.asha_rungs(2, 2, 16) == [2.0, 4.0, 8.0]
    assert rules.current_rung(5, [1.0, 3.0, 9.0]) == 3.0
    assert rules.current_rung(0.5, [1.0, 3.0]) is None
    assert rules.asha_rule(0.1, recorded=[], reduction_factor=3).reason == "empty_reference"
    kept = rules.asha_rule(0.9, recorded=[0.5, 0.6, 0.7], reduction_factor=3)
    cut = rules.asha_rule(0.55, recorded=[0.5, 0.6, 0.7], reduction_factor=3)
    assert not kept.stop and cut.stop
    assert cut.threshold == pytest.approx(0.6333333)
    with pytest.raises(ValueError, match="reduction_factor"):
        rules.asha_rungs(1, 1, 10)


@pytest.mark.parametrize(
    ("steps", "warmup", "interval", "checked"),
    [
        (range(8), 3, 2, [3, 5, 7]),
        (range(1, 9), 3, 2, [3, 5, 7]),
        ([0, 10, 20, 30], 0, 10, [0, 10, 20, 30]),  # strided: every report starts an interval
        ([0, 1, 4, 5, 9], 0, 3, [0, 4, 9]),  # gaps: the first report in each interval
    ],
)
def test_check_steps_for_every_numbering(steps, warmup, interval, checked):
    steps = list(steps)
    seen = []
    for i, step in enumerate(steps):
        if not rules.in_warmup(step, warmup) and rules.is_check_step(
                step, steps[:i + 1], warmup, interval):
            seen.append(step)
    assert seen == checked


def test_incumbent_rule_bounds_the_final_conformally():
    finals = [0.6, 0.7, 0.8, 0.85, 0.9, 0.95]
    best = [0.5] * 6
    assert rules.incumbent_min_completed(0.3) == 3
    few = rules.incumbent_rule(0.1, peers_best=best[:2], peers_final=finals[:2], alpha=0.3)
    assert few.reason == "startup"
    hopeless = rules.incumbent_rule(0.1, peers_best=best, peers_final=finals, alpha=0.3)
    assert hopeless.stop and hopeless.threshold == 0.95
    residuals = [f - 0.5 for f in finals]
    loo = sorted(r - float(np.median([x for j, x in enumerate(residuals) if j != i]))
                 for i, r in enumerate(residuals))
    assert hopeless.value == pytest.approx(0.1 + np.median(residuals) + loo[4])  # rank 5
    # as good as every completed trial was at this step: the bound (0.925) is still
    # below the incumbent, which only 1 of 6 such trials beat
    level = rules.incumbent_rule(0.5, peers_best=best, peers_final=finals, alpha=0.3)
    assert level.stop and level.value == pytest.approx(0.925)
    promising = rules.incumbent_rule(0.6, peers_best=best, peers_final=finals, alpha=0.3)
    assert not promising.stop and promising.value > 0.95
    # a smaller alpha is more careful: a higher quantile, so a higher bound
    careful = rules.incumbent_rule(0.1, peers_best=best, peers_final=finals, alpha=0.15)
    assert careful.value >= hopeless.value
    nan = rules.incumbent_rule(0.1, peers_best=[0.5, float("nan")] + best,
                               peers_final=[float("nan"), 0.9] + finals, alpha=0.3)
    assert nan.stop  # pairs with a NaN are left out


def test_asha_rung_steps_place_rungs_after_epochs_for_either_counting():
    from ncp_search.core.rules import asha_rung_steps

    assert asha_rung_steps(1, 3, 20, first_step=1) == [1.0, 3.0, 9.0]
    assert asha_rung_steps(1, 3, 19, first_step=0) == [0.0, 2.0, 8.0]  # last step 19 of 0..19
    assert asha_rung_steps(2, 2, 10, first_step=0) == [1.0, 3.0, 7.0]
