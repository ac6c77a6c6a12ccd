"""The Ray sweep's records show the prediction the scheduler decided on."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install 'ncp-search[ray]'")

from ncp_search.app.sweep.ray_backend import METRIC, _Session  # noqa: E402
from ncp_search.integrations.ray.scheduler import NCPScheduler  # noqa: E402
from tests.integrations.tune_fakes import Trial  # noqa: E402


def test_the_display_reads_the_prediction_the_scheduler_recorded(tmp_path):
    # Was: the display predicted a third time, from the curve alone, and showed the last
    # value as the "prediction" of xtrial_* predictors (the report's predicted-vs-actual
    # figure read it).
    scheduler = NCPScheduler(metric=METRIC, mode="max", max_t=4, predictor="xtrial_curve",
                             time_attr="epoch_count")
    session = _Session({"budget": {"epochs": 4}}, tmp_path, None, scheduler)
    for k, final in enumerate((0.6, 0.7, 0.8, 0.9, 0.95)):
        done = Trial(f"done{k}")
        scheduler.on_trial_add(None, done)
        for epoch in range(1, 5):
            scheduler.on_trial_result(None, done, {"epoch_count": epoch,
                                                   METRIC: final * epoch / 4})
        scheduler.on_trial_complete(None, done, {METRIC: final})
    trial = Trial("shown")
    trial.config = {"lr": 0.1}  # type: ignore[attr-defined]
    scheduler.on_trial_add(None, trial)
    session.start(trial)
    for epoch, value in enumerate((0.2, 0.4), start=1):
        result = {"epoch_count": epoch, "epoch": epoch - 1, METRIC: value}
        scheduler.on_trial_result(None, trial, result)
        session.result(trial, result)
    shown = session.records["shown"]["predicted_final"]
    assert shown[-1] == pytest.approx(scheduler.latest_prediction("shown"))
    assert shown[-1] != pytest.approx(0.4)  # not the last value
