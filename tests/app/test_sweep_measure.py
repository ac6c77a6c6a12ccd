"""A sweep's trials measure beta_eff only when its pruner or scheduler reads it."""

from __future__ import annotations

import math

import pytest

from ncp_search.app.sweep.config import validate_sweep_config
from ncp_search.app.sweep.trial import reads_beta_eff


def _config(backend: str, choice: dict) -> dict:
    return {"name": "m", "backend": backend, "data": {"target": "digits:5-9"},
            "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 1},
            "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1}},
            "budget": {"trials": 2, "epochs": 2},
            ("scheduler" if backend == "ray" else "pruner"): choice}


@pytest.mark.parametrize("backend, choice, reads", [
    ("optuna", {"name": "ncp"}, False),  # the default predictor, best, reads the curve only
    ("optuna", {"name": "ncp", "predictor": "ncp_raw"}, True),
    ("optuna", {"name": "ncp_percentile", "predictor": "ncp_feature_norm"}, True),
    ("optuna", {"name": "ncp_percentile", "predictor": "xtrial_curve"}, False),
    ("optuna", {"name": "median"}, False),
    ("ray", {"name": "ncp"}, False),
    ("ray", {"name": "ncp_asha", "predictor": "ncp_raw"}, True),
    ("ray", {"name": "async_hyperband"}, False),
])
def test_reads_beta_eff_follows_the_configured_predictor(backend, choice, reads):
    config = validate_sweep_config(_config(backend, choice))
    assert reads_beta_eff(config) is reads
    assert reads_beta_eff(config.to_dict()) is reads  # the form a Ray actor gets


@pytest.mark.slow
@pytest.mark.parametrize("predictor, meters", [("best", 0), ("ncp_raw", 1)])
def test_a_trial_builds_no_meter_when_nothing_reads_beta_eff(monkeypatch, tmp_path, predictor,
                                                            meters):
    # Was: every sweep trial traced a meter and measured beta_eff each epoch, read or not.
    import ncp_search.engine.capacitance as capacitance
    from ncp_search.app.sweep.trial import application_input_shape, load_data, run_trial

    built = []
    real = capacitance.BetaEffMeter

    class CountingMeter(real):
        def __init__(self, *args, **kwargs):
            built.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(capacitance, "BetaEffMeter", CountingMeter)
    raw = _config("optuna", {"name": "ncp", "predictor": predictor})
    raw["output"] = str(tmp_path / "out")
    config = validate_sweep_config(raw)
    data = load_data(config, application_input_shape(config))
    seen = []

    def on_epoch(epoch, value, beta, terms, info):
        seen.append((beta, set(terms)))

    record = run_trial(config, {"learning_rate": 0.05}, data, on_epoch, trial_seed=0,
                       cache_dir=str(tmp_path / "zoo"))
    assert len(built) == meters and record["epochs"] == 2
    if meters:
        assert all(math.isfinite(beta) and "probe_feature_norm" in terms for beta, terms in seen)
    else:
        assert all(math.isnan(beta) and terms == {"train_loss"} for beta, terms in seen)
