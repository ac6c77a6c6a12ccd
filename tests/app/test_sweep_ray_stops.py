"""A Ray sweep's stop decisions (reason, prediction, threshold), read from NCPScheduler's
journal into the trial records and drawn by the report as the Optuna sweep's are."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from ncp_search.app.sweep.results import (
    RAY_JOURNAL_FILE,
    load_trials,
    ray_decisions,
    ray_stops,
)
from ncp_search.integrations.ray.journal import Journal


def _journal(path, events):
    journal = Journal(str(path), lambda key, message: pytest.fail(message))
    for event in events:
        journal.write(event)


def _decision(trial_id, t, p, th, stop=True, why="below"):
    return {"e": "decision", "id": trial_id, "t": t, "p": p, "stop": stop, "rung": None,
            "why": why if stop else None, "th": th}


EVENTS = [
    {"e": "result", "id": "a_00000", "t": 1, "v": 0.3, "s": {}},
    _decision("a_00000", 1, 0.42, 0.5, stop=False),
    _decision("a_00000", 2, 0.41, 0.55),
    {"e": "result", "id": "a_00001", "t": 1, "v": 0.2, "s": {}},
    _decision("a_00001", 1, 0.3, 0.6),
    {"e": "remove", "id": "a_00001"},  # run again after a restore, stopped later
    _decision("a_00001", 3, 0.35, None, why="below_incumbent"),
    _decision("a_00002", 2, 0.9, 0.5, stop=False),
    {"e": "complete", "id": "a_00002", "final": 0.91},
]


def test_ray_stops_reads_each_stopped_trials_last_stop(tmp_path):
    path = tmp_path / RAY_JOURNAL_FILE
    _journal(path, EVENTS)
    stops = ray_stops(path)
    assert stops == {
        "a_00000": {"epoch": 2, "reason": "below", "value": 0.41, "threshold": 0.55},
        "a_00001": {"epoch": 3, "reason": "below_incumbent", "value": 0.35,
                    "threshold": None},
    }
    # the journal is "higher is better": a minimised metric's numbers change sign
    assert ray_stops(path, mode="min")["a_00000"]["threshold"] == -0.55
    assert ray_stops(tmp_path / "none.jsonl") == {}


def _pause(trial_id, t, p, stop=False):
    """A rung decision as NCPScheduler's pausing policy journals it."""
    return {"e": "decision", "id": trial_id, "t": t, "p": p, "stop": stop, "rung": float(t),
            "pause": True}


def test_a_pausing_schedulers_rungs_are_read_per_trial(tmp_path):
    path = tmp_path / RAY_JOURNAL_FILE
    _journal(path, [
        _pause("a_00000", 1, 0.5), _pause("a_00000", 2, 0.6),
        _pause("a_00000", 2, 0.6),  # decided again after a restore: counted once
        _pause("a_00001", 1, 0.3), _pause("a_00001", 2, 0.31, stop=True),  # dropped there
        _decision("a_00002", 1, 0.2, 0.4),  # an ASHA stop: no rung
    ])
    stops, rungs = ray_decisions(path)
    assert rungs == {"a_00000": [{"epoch": 1, "prediction": 0.5},
                                 {"epoch": 2, "prediction": 0.6}],
                     "a_00001": [{"epoch": 1, "prediction": 0.3},
                                 {"epoch": 2, "prediction": 0.31}]}
    assert set(stops) == {"a_00001", "a_00002"} and stops == ray_stops(path)
    assert ray_decisions(path, mode="min")[1]["a_00000"][0]["prediction"] == -0.5


def test_ray_stops_skips_damaged_lines(tmp_path, caplog):
    path = tmp_path / RAY_JOURNAL_FILE
    _journal(path, EVENTS[:3])
    with open(path, "a", encoding="utf-8") as handle:
        handle.write('{"e": "decision", "id": "a_00009", "t": "x"}\n')
        handle.write(json.dumps(_decision("a_00003", 1, 0.2, 0.4)) + "\n")
    assert set(ray_stops(path)) == {"a_00000", "a_00003"}
    assert "skipped 1 line" in caplog.text


def test_session_records_the_schedulers_decision_at_the_stop(tmp_path):
    pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")
    from ncp_search.app.sweep.config import validate_sweep_config
    from ncp_search.app.sweep.ray_backend import _Session

    config = validate_sweep_config({
        "name": "t", "backend": "ray", "data": {"target": "digits:5-9"},
        "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
        "budget": {"trials": 3, "epochs": 3},
        "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.3}},
        "scheduler": {"name": "ncp", "grace_period": 1}})
    session = _Session(config, tmp_path, None)
    trials = [SimpleNamespace(trial_id=f"a_0000{i}", config={"learning_rate": 0.1},
                              status="RUNNING") for i in range(3)]
    for trial, epochs in zip(trials, (2, 3, 3)):
        session.start(trial)
        for epoch in range(epochs):
            session.result(trial, {"val_accuracy": 0.5, "epoch": epoch})
    _journal(tmp_path / RAY_JOURNAL_FILE, EVENTS)
    for trial in trials:
        session.end(trial, failed=False)
    records = {r["trial_id"]: r for r in map(json.loads, session.path.read_text().splitlines())}
    assert records["a_00000"]["state"] == "PRUNED"
    assert records["a_00000"]["stop"] == {"epoch": 2, "reason": "below", "value": 0.41,
                                          "threshold": 0.55}
    assert records["a_00002"]["state"] == "COMPLETE" and records["a_00002"]["stop"] is None
    # a trial that starts again forgets its old stop
    session.start(trials[0])
    assert session.records["a_00000"]["stop"] is None


def _threshold_pixels(png) -> int:
    import matplotlib.image

    from ncp_search.app.report.plots import THRESHOLD_COLOR

    rgb = np.round(matplotlib.image.imread(png)[..., :3] * 255).astype(int)
    target = np.array([int(THRESHOLD_COLOR[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).max(axis=-1) <= 12).sum())


def _ray_folder(folder, journal: bool):
    folder.mkdir()
    config = {"scheduler": {"name": "ncp", "rule": "percentile", "predictor": "best",
                            "grace_period": 1}, "budget": {"epochs": 4}}
    (folder / "sweep.json").write_text(json.dumps(
        {"name": "r", "backend": "ray", "epochs": 4, "config": config, "storage": None}))
    curve = [0.3, 0.4, 0.45, 0.5]
    records = [  # written before the records kept the decision: no "stop" key
        {"number": 0, "trial_id": "a_00000", "state": "PRUNED", "params": {},
         "val_accuracy": curve[:2], "beta_eff": [], "predicted_final": [0.42, 0.41],
         "final": 0.4, "model_path": None, "seconds": 2.0},
        {"number": 2, "trial_id": "a_00002", "state": "COMPLETE", "params": {},
         "val_accuracy": [v + 0.4 for v in curve], "beta_eff": [], "predicted_final": [],
         "final": 0.9, "model_path": None, "seconds": 4.0},
    ]
    (folder / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if journal:
        _journal(folder / RAY_JOURNAL_FILE, EVENTS)


def test_report_of_a_ray_sweep_draws_the_journaled_threshold(tmp_path):
    from ncp_search.app.report.html import write_report

    pages, pixels = {}, {}
    for journal in (True, False):
        folder = tmp_path / str(journal)
        _ray_folder(folder, journal)
        meta, trials = load_trials(folder)
        pages[journal] = write_report(meta, trials, folder).read_text(encoding="utf-8")
        pixels[journal] = _threshold_pixels(folder / "report" / "learning_curves.png")
    assert trials[0]["stop"] is None  # no journal: nothing recorded
    assert "prediction 0.41 &lt; threshold 0.55" in pages[True]
    assert "No threshold is recorded" not in pages[True]
    assert "No threshold is recorded" in pages[False]
    assert pixels[True] > 20 and pixels[False] == 0
