"""What optuna-dashboard shows of a study fed by report_beta_eff / record_decision: a
real dashboard app served over HTTP on 127.0.0.1, read through its JSON API."""

from __future__ import annotations

import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest

from ncp_search import NCPPruner, report_beta_eff
from ncp_search.integrations.optuna.reporting import record_decision

optuna_dashboard = pytest.importorskip(
    "optuna_dashboard", reason="optuna-dashboard is not installed (pip install optuna-dashboard)")

optuna.logging.set_verbosity(optuna.logging.WARNING)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:  # no request lines in the test output
        pass


@pytest.fixture
def dashboard(tmp_path):
    """``(storage URL, get(path) -> JSON)`` of a dashboard serving a SQLite storage."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=storage, study_name="warm-up")  # creates the schema
    server = make_server("127.0.0.1", 0, optuna_dashboard.wsgi(storage),
                         handler_class=_Quiet)  # bound and listening on return
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def get(path: str) -> dict:
        url = f"http://127.0.0.1:{server.server_port}{path}"
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.loads(response.read())

    yield storage, get
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.slow
def test_dashboard_sorts_and_plots_beta_eff_predictions_and_decisions(dashboard):
    # Was: predictions, decisions and beta_eff only as JSON strings (not sortable,
    # not offered as plot targets).
    storage, get = dashboard
    study = optuna.create_study(storage=storage, study_name="ncp", direction="maximize",
                                pruner=NCPPruner(rule="percentile", n_startup_trials=2,
                                                 n_warmup_steps=0, predictor="ncp_raw"))
    for number in range(3):  # two good complete trials, then a bad one that is pruned
        trial = study.ask()
        good = number < 2
        for step in range(3):
            report_beta_eff(trial, step, 0.5 - 0.1 * step, (0.8 if good else 0.1) + 0.01 * step,
                            terms={"feature_norm": 2.0})
        if good:
            study.tell(trial, 0.82)
    assert trial.should_prune()
    decision = record_decision(trial, 2)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)

    (listed,) = [s for s in get("/api/studies")["study_summaries"] if s["study_name"] == "ncp"]
    detail = get(f"/api/studies/{listed['study_id']}")
    sortable = {a["key"] for a in detail["union_user_attrs"] if a["sortable"]}
    # numbers per step (and at the prune) are sortable columns and plot targets
    for key in ("ncp_beta_eff/0", "ncp_beta_eff/2", "ncp_predicted_final/0",
                "ncp_predicted_final/2", "ncp_beta_eff_last", "ncp_predicted_final_last",
                "ncp_decision_value", "ncp_decision_threshold", "ncp_decision_epoch"):
        assert key in sortable, (key, detail["union_user_attrs"])
    assert "ncp_beta_eff" not in sortable  # the JSON object the pruner reads stays as it is
    pruned = next(t for t in detail["trials"] if t["number"] == 2)
    shown = {a["key"]: a["value"] for a in pruned["user_attrs"]}
    assert float(shown["ncp_beta_eff/2"]) == pytest.approx(0.3)
    assert float(shown["ncp_decision_threshold"]) == pytest.approx(decision["threshold"])
    assert float(shown["ncp_decision_value"]) == pytest.approx(decision["value"])
    assert int(shown["ncp_decision_epoch"]) == 3
    assert json.loads(shown["ncp_decision"])["step"] == 2
