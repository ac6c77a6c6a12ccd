"""Storage passwords stay out of files, logs, messages and command lines."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import optuna
import pytest
import yaml

import ncp_search.app.sweep.optuna_backend as sweep_optuna
import ncp_search.app.sweep.run as run
import ncp_search.app.sweep.worker as worker
from ncp_search.app.sweep.config import validate_sweep_config
from ncp_search.app.sweep.optuna_backend import SWEEP_ATTR, publish_run
from ncp_search.app.sweep.secrets import (
    STORAGE_ENV,
    mask_url,
    masked_logs,
    read_storage_file,
)
from ncp_search.errors import NCPSearchError

SECRET = "hunter2"
URL = f"postgresql+psycopg2://ncp:{SECRET}@127.0.0.1:1/ncp_test"
BASE = {
    "name": "sec", "data": {"target": "digits:5-9"},
    "source": {"zoo": "mlp", "task": "digits:0-4"},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1}},
    "budget": {"trials": 2, "epochs": 2}, "pruner": {"name": "nop"},
}


class Ran(Exception):
    pass


@pytest.mark.parametrize("text, masked", [
    (URL, "postgresql+psycopg2://ncp:***@127.0.0.1:1/ncp_test"),
    ("mysql://u:p%40ss@h/db and sqlite:///x.db", "mysql://u:***@h/db and sqlite:///x.db"),
    ("postgresql://u@h/db?password=abc&sslmode=require",
     "postgresql://u@h/db?password=***&sslmode=require"),
    ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
    (None, None),
])
def test_mask_url(text, masked) -> None:
    assert mask_url(text) == masked


def _config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "sec.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output": str(tmp_path / "out"), **changes}))
    return path


@pytest.mark.parametrize("where", ["config", "--storage", "environment"])
def test_sweep_json_masks_the_password(tmp_path, monkeypatch, where) -> None:
    seen = {}

    def fake_run_optuna(config, storage, *args, **kwargs):
        seen["url"] = storage
        raise Ran

    monkeypatch.setattr(run, "_run_optuna", fake_run_optuna)
    # no server here: the storage opens as an empty in-memory one
    monkeypatch.setattr(sweep_optuna, "open_storage",
                        lambda url: optuna.storages.InMemoryStorage())
    kwargs = {}
    if where == "config":
        path = _config(tmp_path, optuna={"storage": URL})
    else:
        path = _config(tmp_path)
        if where == "--storage":
            kwargs["storage"] = URL
        else:
            monkeypatch.setenv(STORAGE_ENV, URL)
    with pytest.raises(Ran):
        run.run_sweep(str(path), **kwargs)
    assert seen["url"] == URL  # the backend gets the real URL
    text = (tmp_path / "out" / "sweep.json").read_text()
    assert SECRET not in text and "ncp:***@127.0.0.1" in text
    meta = json.loads(text)
    assert meta["storage"] == mask_url(URL)


def test_workers_get_the_url_in_the_environment_not_argv(tmp_path, monkeypatch) -> None:
    started = []

    class FakePopen:
        def __init__(self, command, **kwargs):
            started.append((command, kwargs))

    monkeypatch.setattr(run.subprocess, "Popen", FakePopen)
    run._spawn_workers("sec", URL, tmp_path, 3, None)
    assert len(started) == 3
    for command, kwargs in started:
        assert not any(SECRET in part for part in command), command
        assert kwargs["env"][STORAGE_ENV] == URL
        assert "--parent" in command and kwargs["start_new_session"]


def test_the_study_record_of_the_settings_masks_the_password(tmp_path) -> None:
    config = validate_sweep_config({**BASE, "optuna": {"storage": URL}})
    study = optuna.create_study(study_name="sec", storage=f"sqlite:///{tmp_path / 's.db'}")
    publish_run(study, config, tmp_path, None)
    stored = json.dumps(study.user_attrs[SWEEP_ATTR])
    assert SECRET not in stored and "ncp:***@" in stored


def test_worker_errors_mask_the_password(monkeypatch, capsys) -> None:
    monkeypatch.setenv(STORAGE_ENV, URL)  # nothing listens on port 1
    code = worker.main(["--study", "sec"])
    err = capsys.readouterr().err
    assert code in (1, 2) and err.strip()
    assert SECRET not in err


def test_storage_file_must_be_private(tmp_path) -> None:
    path = tmp_path / "url"
    path.write_text(f"\n{URL}\n")
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        read_storage_file(path)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    assert read_storage_file(path) == URL


def test_argv_storage_is_warned_about(monkeypatch, caplog) -> None:
    import argparse

    args = argparse.Namespace(storage_file=None, storage=URL)
    with caplog.at_level(logging.WARNING):
        assert worker._storage_url(args) == URL
    assert STORAGE_ENV in caplog.text and SECRET not in caplog.text


def test_logs_and_errors_mask_the_password(caplog) -> None:
    logger = logging.getLogger("ncp_search.test")
    with caplog.at_level(logging.INFO), masked_logs(URL):
        logger.info("connecting to %s", URL)
        logger.info("password is %s", SECRET)
    assert SECRET not in caplog.text and "ncp:***@" in caplog.text
    with pytest.raises(NCPSearchError) as error, run._secrets_kept(URL):
        raise RuntimeError(f"could not connect to {URL}")
    assert SECRET not in str(error.value) and "***" in str(error.value)


def test_report_reads_a_masked_storage_from_the_environment(tmp_path, monkeypatch) -> None:
    from ncp_search.app.sweep.results import load_trials

    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(study_name="sec", storage=url)
    meta = {"name": "sec", "backend": "optuna", "epochs": 2, "config": {},
            "storage": "postgresql://ncp:***@h/db", "study_name": "sec"}
    (tmp_path / "sweep.json").write_text(json.dumps(meta))
    with pytest.raises(NCPSearchError, match=STORAGE_ENV):
        load_trials(tmp_path)
    monkeypatch.setenv(STORAGE_ENV, url)
    assert load_trials(tmp_path)[1] == []
