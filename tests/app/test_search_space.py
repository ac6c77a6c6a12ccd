"""Search-space validation and seeded sampling."""

from __future__ import annotations

import math

import pytest

from ncp_search.app.search_space import sample_configs, validate_space

SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "units": {"type": "int", "low": 8, "high": 64},
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
    "fixed": 3,
}


def test_sampling_is_seeded_and_in_range():
    a = sample_configs(SPACE, 50, seed=1)
    assert a == sample_configs(SPACE, 50, seed=1)
    assert a != sample_configs(SPACE, 50, seed=2)
    assert all(1e-4 <= c["lr"] <= 1e-1 and 8 <= c["units"] <= 64 for c in a)
    assert {c["opt"] for c in a} == {"sgd", "adam"} and all(c["fixed"] == 3 for c in a)
    assert all(isinstance(c["units"], int) for c in a)
    logs = sorted(math.log10(c["lr"]) for c in a)
    assert logs[len(logs) // 2] < -2.0  # log-uniform median is 10^-2.5, not ~0.05


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({}, "non-empty"),
        ({"x": {"type": "normal"}}, r"x\.type must be one of"),
        ({"x": {"type": "float", "low": 1, "high": 0}}, "low must be <= high"),
        ({"x": {"type": "float", "low": 0, "high": 1, "log": True}}, "log scale"),
        ({"x": {"type": "float", "low": 0, "high": 1, "step": 2}}, "unknown keys"),
        ({"x": {"type": "categorical", "choices": []}}, "non-empty list"),
        ({"x": {"type": "int", "low": "a", "high": 2}}, "finite numbers"),
    ],
)
def test_invalid_spaces(space, match):
    with pytest.raises(ValueError, match=match):
        validate_space(space)


def test_suggest_draws_each_kind_through_optuna():
    import optuna

    from ncp_search.app.search_space import suggest

    space = {
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "units": {"type": "int", "low": 16, "high": 64},
        "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
        "fixed": 3,
    }
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = suggest(trial, space)
        assert 1e-4 <= params["lr"] <= 0.1 and isinstance(params["units"], int)
        assert 16 <= params["units"] <= 64 and params["opt"] in ("sgd", "adam")
        assert params["fixed"] == 3 and "fixed" not in trial.params
        assert trial.distributions["lr"].log and not trial.distributions["units"].log
        study.tell(trial, 0.0)
