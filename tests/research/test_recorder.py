"""Recording real (tiny) trials into the table format, resuming, and config errors."""

from __future__ import annotations

import json

import pytest

import research.cli as cli
import research.recorder as rec

WORKLOAD = """
name: tiny
source_model: mlp
source: digits:0-4
source_epochs: 1
target: digits:5-9
trials: 2
epochs: 2
probe: {hidden: [8, 8, 8], batch: 32, seed: 0}
extra_probes: [{name: deep, hidden: [8, 8, 8, 8], seed: 1}]
seed: 0
search_space:
  optimizer: {type: categorical, choices: [sgd, adam]}
  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}
  batch_size: 64
"""


@pytest.fixture
def workload(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(WORKLOAD)
    return path


@pytest.mark.slow
def test_record_writes_table_and_resumes(workload, tmp_path, monkeypatch):
    table = tmp_path / "runs.jsonl"
    cache = str(tmp_path / "zoo")
    runs = rec.record(workload, table, cache_dir=cache)
    assert [r["trial"] for r in runs] == [
        "t000-observer", "t000-probe_head", "t001-observer", "t001-probe_head"
    ]
    for run in runs:
        assert [s["step"] for s in run["curve"]] == [0, 1, 2]
        assert run["final_val_accuracy"] == run["curve"][-1]["val_accuracy"]
        assert {"beta_eff", "beta_eff_batch2", "beta_eff@deep", "probe_denominator"} <= set(
            run["curve"][1]
        )
        assert run["config"]["optimizer"] in ("sgd", "adam")
    # configurations are shared by the two modes of one trial
    assert runs[0]["config"]["learning_rate"] == runs[1]["config"]["learning_rate"]
    # resuming runs nothing again
    monkeypatch.setattr(rec, "run_trial", lambda *a, **k: pytest.fail("re-ran a trial"))
    assert len(rec.record(workload, table, cache_dir=cache)) == 4
    # a line cut by an interruption is ignored, and that trial is re-run
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    assert len(rec.read_table(table)) == 3


def test_read_table_rejects_garbage_in_the_middle(tmp_path):
    table = tmp_path / "bad.jsonl"
    table.write_text('{"trial": "a"}\nnot json\n{"trial": "b"}\n')
    with pytest.raises(ValueError, match=":2: not a JSON object"):
        rec.read_table(table)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.replace("trials: 2", "trials: 0"), "trials must be a positive"),
        (lambda t: t.replace("name: tiny", "nmae: tiny"), "missing required keys"),
        (lambda t: t + "\nextra: 1\n", "unknown keys"),
        (lambda t: t.replace("log: true", "log: true, step: 3"), "unknown keys"),
        (lambda t: "- a list\n", "mapping at the top level"),
        (lambda t: t.replace("name: deep,", "label: deep,"), r"extra_probes\[0\]"),
    ],
)
def test_workload_errors(tmp_path, edit, match):
    path = tmp_path / "w.yaml"
    path.write_text(edit(WORKLOAD))
    with pytest.raises(ValueError, match=match):
        rec.load_workload(path)
    assert cli.main(["record", str(path), "--out", str(tmp_path / "o.jsonl")]) == 2


def test_shipped_workloads_are_valid():
    import pathlib

    configs = sorted(pathlib.Path(__file__).parents[2].glob("configs/record_*.yaml"))
    assert len(configs) >= 3
    for path in configs:
        workload = rec.load_workload(path)
        assert workload["trials"] >= 40 and workload["epochs"] >= 20
        json.dumps(workload)


def test_second_writer_is_refused(workload, tmp_path):
    import fcntl

    from ncp_search.errors import NCPSearchError

    table = tmp_path / "runs.jsonl"
    with open(table, "a") as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        with pytest.raises(NCPSearchError, match="another `python -m research record`"):
            rec.record(workload, table)
