"""The predictor registry: declared inputs, NaN policy, steps as reported."""

from __future__ import annotations

import math

import pytest

from ncp_search.core.history import REPORTED_SERIES, TrialHistory
from ncp_search.core.predictors import (
    PREDICTORS,
    check_feedable,
    fit_cross_trial,
    predict_final,
)


def test_every_predictor_declares_what_it_reads():
    assert not PREDICTORS["best"].requires and not PREDICTORS["best"].uses_beta_eff
    assert PREDICTORS["ncp_feature_norm"].requires == ("beta_eff", "probe_feature_norm")
    assert PREDICTORS["pow3"].needs_horizon and PREDICTORS["xtrial_ncp"].cross_trial
    assert PREDICTORS["tse"].score_only


def test_adapters_refuse_what_they_cannot_feed():
    check_feedable("ncp_delta_norms", REPORTED_SERIES, "NCPPruner")
    with pytest.raises(ValueError, match="beta_eff_batch2.*NCPPruner is never given"):
        check_feedable("ncp_two_batch", REPORTED_SERIES, "NCPPruner")
    with pytest.raises(ValueError, match="ranking score"):
        check_feedable("tse", REPORTED_SERIES, "NCPPruner")
    with pytest.raises(ValueError, match="but got predictor='oracle'"):
        check_feedable("oracle", REPORTED_SERIES, "NCPPruner")


def test_missing_inputs_give_nan_not_a_silent_fallback():
    history = TrialHistory.from_reports({0: 0.5, 1: 0.6, 2: 0.7},
                                        series={"beta_eff": {0: 3.0, 1: 2.0, 2: 1.0}})
    assert math.isfinite(predict_final("ncp_raw", history))
    assert math.isnan(predict_final("ncp_feature_norm", history))  # no probe_feature_norm
    assert math.isnan(predict_final("best", TrialHistory()))


@pytest.mark.parametrize("steps", [range(0, 8), range(1, 9), range(0, 80, 10)])
def test_predictions_do_not_depend_on_step_numbering(steps):
    steps = list(steps)
    values = [0.9 - 0.5 / (i + 1) for i in range(len(steps))]
    history = TrialHistory.from_reports(dict(zip(steps, values)))
    horizon = steps[0] + 19 * (steps[1] - steps[0])  # the 20th report
    reference = TrialHistory.from_reports(dict(zip(range(1, 9), values)))
    for name in ("last", "best", "pow3"):
        assert predict_final(name, history, horizon=horizon) == pytest.approx(
            predict_final(name, reference, horizon=20))
    assert predict_final("last", history) == values[-1]


def test_pow3_extrapolates_a_minimised_objective():
    loss = {t: 0.2 + 1.0 / t for t in range(1, 9)}  # a decreasing loss, sign -1
    history = TrialHistory.from_reports(loss, sign=-1.0)
    predicted = predict_final("pow3", history, horizon=40)
    assert predicted > history.values[-1] + 0.05  # better (less loss) than the last value
    assert -predicted == pytest.approx(0.2 + 1.0 / 40, abs=0.02)


def test_cross_trial_learns_only_from_completed_peers_that_reached_the_step():
    peers = [TrialHistory.from_reports({s: 0.5 + 0.01 * i + 0.01 * s for s in range(5)},
                                       final=0.6 + 0.02 * i) for i in range(6)]
    short = [TrialHistory.from_reports({0: 0.1}, final=0.2)] * 3
    running = TrialHistory.from_reports({s: 0.5 + 0.01 * s for s in range(3)})
    assert fit_cross_trial(PREDICTORS["xtrial_curve"], peers[:4] + short, 2) is None
    model = fit_cross_trial(PREDICTORS["xtrial_curve"], peers + short, 2)
    assert model is not None
    value = predict_final("xtrial_curve", running, peers=peers + short)
    assert math.isfinite(value) and value != running.values[-1]
