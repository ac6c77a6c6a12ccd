"""Hostile or broken surroundings of a sweep: planted symbolic links, a dead Ray
address and an unreachable storage are refused in one line (exit 2), before
anything is written."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml

from ncp_search.app.cli import main
from ncp_search.app.sweep.optuna_backend import BudgetLock
from ncp_search.errors import NCPSearchError

BASE = {
    "name": "hostile", "data": {"target": "digits:5-9"},
    "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1}},
    "budget": {"trials": 1, "epochs": 1},
}
POSTGRES_ENV = "NCP_SEARCH_TEST_POSTGRES"


def _config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output": str(tmp_path / "out"), **changes}))
    return path


def _closed_port() -> int:
    with socket.socket() as probe:  # bound, never listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_planted_budget_lock_link_is_not_followed(tmp_path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".budget.lock").symlink_to(outside)
    with pytest.raises(NCPSearchError, match="symbolic link"):
        BudgetLock(tmp_path / "out" / ".budget.lock").acquire()
    assert outside.read_text() == "keep"


@pytest.mark.parametrize("name", [".budget.lock", "report", "summary.json", "models"])
def test_a_sweep_into_a_folder_with_a_planted_link_is_refused(tmp_path, capsys, name) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / name).symlink_to(outside)
    assert main(["sweep", str(_config(tmp_path))]) == 2
    assert "is a symbolic link" in _one_line(capsys)
    assert not list(outside.iterdir())
    assert not (tmp_path / "out" / "sweep.json").exists()


def test_report_does_not_follow_a_planted_report_link(tmp_path, capsys) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "report").symlink_to(outside)
    (out / "report.html").symlink_to(outside / "page.html")
    assert main(["report", str(out)]) == 2
    assert "is a symbolic link" in _one_line(capsys)
    assert not list(outside.iterdir())


def test_a_dead_ray_address_fails_at_once(tmp_path, capsys) -> None:
    config = _config(tmp_path, backend="ray")
    assert main(["sweep", str(config), "--address", f"127.0.0.1:{_closed_port()}"]) == 2
    assert "cannot reach the Ray cluster" in _one_line(capsys)
    assert not (tmp_path / "out").exists()
    assert main(["sweep", str(config), "--address", "nonsense"]) == 2
    assert "host:port" in _one_line(capsys)


def test_an_unreachable_storage_is_one_line_and_leaves_nothing(tmp_path, capsys) -> None:
    url = f"postgresql+psycopg2://ncp:s3cret@127.0.0.1:{_closed_port()}/ncp"
    assert main(["sweep", str(_config(tmp_path)), "--storage", url]) == 2
    err = _one_line(capsys)
    assert "cannot open the storage" in err and "Connection refused" in err, err
    assert "s3cret" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not os.environ.get(POSTGRES_ENV), reason=f"set {POSTGRES_ENV} to a "
                    "PostgreSQL URL (see .ci/postgres.sh)")
@pytest.mark.parametrize("damage", ["password", "database"])
def test_a_wrong_postgres_password_or_database_is_one_line(tmp_path, capsys, damage) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(os.environ[POSTGRES_ENV])
    if damage == "password":
        url = url.set(password="not-the-password")
    else:
        url = url.set(database="no_such_database_ncp")
    text = url.render_as_string(hide_password=False)
    assert main(["sweep", str(_config(tmp_path)), "--storage", text]) == 2
    err = _one_line(capsys)
    assert "cannot open the storage" in err and "not-the-password" not in err
    assert not (tmp_path / "out").exists()


_RAY_META = {"name": "hostile", "backend": "ray", "epochs": 2, "storage": None,
             "config": {"budget": {"epochs": 2}}}
_RECORD = {"number": 0, "trial_id": "a_00000", "state": "COMPLETE", "params": {},
           "val_accuracy": [0.5, 0.6], "beta_eff": [1.0, 1.0], "final": 0.6}


@pytest.mark.parametrize("line", [
    "5", "[]", "\"text\"", "{\"number\": 0}", json.dumps({**_RECORD, "number": "0"}),
    json.dumps({**_RECORD, "state": "DONE"}), json.dumps({**_RECORD, "params": [1]}),
    json.dumps({**_RECORD, "val_accuracy": 0.6}), json.dumps({**_RECORD, "trial_id": 7}),
    "{\"number\": ", "[" * 50_000,
])
def test_a_damaged_ray_trials_file_is_one_line(tmp_path, capsys, line) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(_RAY_META))
    (out / "trials.jsonl").write_text(line + "\n" + json.dumps(_RECORD) + "\n")
    assert main(["report", str(out)]) == 2
    assert "trials.jsonl" in _one_line(capsys)
    assert main(["sweep", str(_config(tmp_path, backend="ray")), "--resume"]) == 2
    assert "trials.jsonl" in _one_line(capsys)
