"""TrialHistory: the one data model between hosts and the decision core."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncp_search.core.history import TrialHistory, as_number


def test_steps_are_kept_as_reported_sorted_and_first_value_wins():
    history = TrialHistory.from_reports([(20, 0.9), (0, 0.1), (10, 0.5), (10, 0.7)])
    assert history.steps.tolist() == [0.0, 10.0, 20.0]
    assert history.values.tolist() == [0.1, 0.5, 0.9]  # step 10 keeps its first value
    assert history.last_step == 20.0


def test_sign_is_applied_once_to_values_and_final_but_not_initial():
    history = TrialHistory.from_reports({0: 2.0, 1: 1.0}, sign=-1.0, final=0.5,
                                        initial={"val_accuracy": 0.3})
    assert history.values.tolist() == [-2.0, -1.0]
    assert history.final == -0.5 and history.is_complete
    assert history.initial == {"val_accuracy": 0.3}


@pytest.mark.parametrize("bad", [None, "0.5", float("nan"), float("inf"), True, [0.5]])
def test_values_that_are_not_finite_numbers_become_nan(bad):
    history = TrialHistory.from_reports({0: 0.4, 1: bad}, final=bad)
    assert history.values[0] == 0.4 and math.isnan(history.values[1])
    assert not history.is_complete
    assert math.isnan(as_number(bad))


def test_series_align_with_steps_and_accept_json_string_keys():
    history = TrialHistory.from_reports(
        {1: 0.5, 3: 0.6}, series={"beta_eff": {"1": 2.0, "3": None, "7": 9.0}})
    assert history.get("beta_eff")[0] == 2.0 and math.isnan(history.get("beta_eff")[1])
    assert history.has("beta_eff") and not history.has("probe_feature_norm")
    assert np.isnan(history.get("probe_feature_norm")).all()


def test_until_and_elapsed_for_every_numbering():
    for steps in [(0, 1, 2), (1, 2, 3), (0, 10, 20)]:
        history = TrialHistory.from_reports({s: 0.5 for s in steps})
        t, t_end = history.elapsed(horizon=steps[0] + 9 * (steps[1] - steps[0]))
        assert t.tolist() == [1, 2, 3] and t_end == 10
    cut = TrialHistory.from_reports({0: 0.1, 10: 0.2, 20: 0.3}).until(15)
    assert cut.steps.tolist() == [0.0, 10.0]


def test_construction_errors():
    with pytest.raises(ValueError, match="sign"):
        TrialHistory.from_reports({0: 1.0}, sign=2.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        TrialHistory(steps=np.array([1.0, 0.0]), values=np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="one value per step"):
        TrialHistory(steps=np.array([0.0]), values=np.array([0.1]),
                     series={"beta_eff": np.array([1.0, 2.0])})


def test_probe_series_is_the_one_naming_of_probe_terms():
    from ncp_search.core.history import PROBE_TERMS, probe_series
    from ncp_search.engine.capacitance import NAN_TERMS

    named = probe_series(NAN_TERMS)
    assert set(named) == set(PROBE_TERMS)  # every BetaEffTerms field has its series name
    assert set(probe_series(NAN_TERMS, beta_eff=True)) == {"beta_eff", *PROBE_TERMS}
    assert probe_series({"probe_loss": 1.0, "feature_norm": 2.0}) == {
        "probe_loss": 1.0, "probe_feature_norm": 2.0}  # a series name stays as it is
