"""Search-space validation and seeded sampling."""

from __future__ import annotations

import math

import pytest

from ncp_search.search_space import sample_configs, validate_space

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
