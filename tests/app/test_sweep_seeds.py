"""Sweep seeds: any non-negative integer works; derived seeds stay in [0, 2**32 - 1]."""

from __future__ import annotations

import numpy as np
import pytest

from ncp_search.app.sweep.config import validate_sweep_config
from ncp_search.app.sweep.optuna_backend import make_sampler
from ncp_search.app.sweep.seeds import reduce_seed, sampler_seed, trial_seed
from ncp_search.app.sweep.trial import load_data

SEEDS = [0, 42, 43, 123, 2024, 2**31, 2**32 - 1, 2**32, 2**40 + 5, 10**30]


def _config(seed: int, sampler: str = "tpe") -> dict:
    return validate_sweep_config({
        "name": "s", "seed": seed, "data": {"target": "digits:5-9"},
        "source": {"zoo": "mlp", "task": "digits:0-4"},
        "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1}},
        "budget": {"trials": 2, "epochs": 2}, "optuna": {"sampler": sampler},
        "probe": {"seed": seed, "batch": 32},
    })


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_every_seed_makes_a_sampler(seed: int, sampler: str) -> None:
    # "Seed must be between 0 and 2**32 - 1" broke every Optuna sweep with seed >= 43.
    for worker, existing in ((0, 0), (3, 17), (999, 10**6)):
        make_sampler(_config(seed, sampler), worker, existing)


@pytest.mark.parametrize("seed", SEEDS)
def test_derived_seeds_are_in_range(seed: int) -> None:
    for value in (reduce_seed(seed), sampler_seed(seed, 7, 10**6), trial_seed(seed, 10**6)):
        assert 0 <= value <= 2**32 - 1
        np.random.RandomState(value)  # what Optuna, scikit-learn and Keras seed with


def test_small_seeds_keep_their_old_values() -> None:
    # Reduction changes nothing where the old formulas were in range.
    assert sampler_seed(0, 1, 2) == (0 * 1000 + 1) * 100_003 + 2
    assert sampler_seed(42, 3, 5) == (42 * 1000 + 3) * 100_003 + 5
    assert trial_seed(7, 11) == 7 * 100_003 + 11
    assert reduce_seed(2**32 + 9) == 9


def test_a_huge_seed_loads_the_data_and_the_probe() -> None:
    data = load_data(_config(10**30))
    assert len(data.y_probe) == 32
