"""The output folder: a failed start is not a sweep, a damaged sweep.json is a clear
error, files are written atomically, stale partial models are cleaned on resume."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml

import ncp_search.app.sweep.run as run
from ncp_search.app.cli import main
from ncp_search.errors import NCPSearchError

BASE = {
    "name": "f", "data": {"target": "digits:5-9"},
    "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1}},
    "budget": {"trials": 2, "epochs": 2}, "pruner": {"name": "nop"},
}


class Ran(Exception):
    """The sweep got as far as running its backend."""


def _config(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output": str(tmp_path / "out"), **changes}))
    return path


def _run_one_trial(out: Path) -> None:
    """One trial in the folder's study, as the sweep of its sweep.json."""
    from ncp_search.app.sweep.folder import ID_ATTR, read_meta

    study = optuna.create_study(study_name="f", storage=f"sqlite:///{out}/study.db",
                                load_if_exists=True)
    study.set_user_attr(ID_ATTR, read_meta(out / "sweep.json")["id"])
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)


def test_a_folder_left_by_a_failed_start_is_reused(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path)
    calls = []

    def failing(*args, **kwargs):
        calls.append(args)
        raise NCPSearchError("the database went away") if len(calls) == 1 else Ran()

    monkeypatch.setattr(run, "_run_optuna", failing)
    with pytest.raises(NCPSearchError, match="went away"):
        run.run_sweep(str(config))
    assert (tmp_path / "out" / "sweep.json").exists()  # the failed start's folder
    for resume in (False, True):  # neither "already holds a sweep" nor "nothing to resume"
        with pytest.raises(Ran):
            run.run_sweep(str(config), resume=resume)
    # A folder whose study ran trials is a sweep: refused without --resume.
    _run_one_trial(tmp_path / "out")
    with pytest.raises(NCPSearchError, match="already holds a sweep; pass --resume"):
        run.run_sweep(str(config))
    with pytest.raises(NCPSearchError, match=r"config changed \['source'\]"):
        run.run_sweep(str(_config(tmp_path, source={"zoo": "cnn_small", "task": "digits:0-4"})),
                      resume=True)


def test_a_resume_of_a_folder_that_holds_no_sweep_makes_no_folder(tmp_path) -> None:
    config = _config(tmp_path)
    with pytest.raises(NCPSearchError, match="nothing to resume"):
        run.run_sweep(str(config), resume=True)
    assert not (tmp_path / "out").exists()  # a mistyped --output is not left behind


def test_a_resume_cannot_switch_between_pausing_and_killing(tmp_path, monkeypatch) -> None:
    """A sweep that ran ASHA (ncp) resumed with a config that names ncp_pause would
    replay its trials into a pausing policy that never saw them: refused with the line
    that keeps it as it ran; and the other way round. A config that names no pruner
    goes on with the one the sweep ran (the default changed: it was ncp)."""
    seen = []

    def backend(config, *args, **kwargs):
        seen.append(config["pruner"]["name"])
        raise Ran()

    monkeypatch.setattr(run, "_run_optuna", backend)
    asha = _config(tmp_path, pruner={"name": "ncp"})
    with pytest.raises(Ran):
        run.run_sweep(str(asha))
    _run_one_trial(tmp_path / "out")
    unnamed = {k: v for k, v in BASE.items() if k != "pruner"}
    path = tmp_path / "unnamed.yaml"
    path.write_text(yaml.safe_dump({**unnamed, "output": str(tmp_path / "out")}))
    with pytest.raises(Ran):  # no name: it goes on as it ran, not as the new default
        run.run_sweep(str(path), resume=True)
    assert seen[-1] == "ncp"
    with pytest.raises(NCPSearchError, match=r"it ran pruner ncp, and this config's pruner "
                       r"is ncp_pause; .*set pruner: \{name: ncp\} to resume it"):
        run.run_sweep(str(_config(tmp_path, pruner={"name": "ncp_pause"})), resume=True)
    with pytest.raises(Ran):  # another killing rule may follow
        run.run_sweep(str(_config(tmp_path, pruner={"name": "median"})), resume=True)
    assert seen[-1] == "median"
    paused = tmp_path / "p"
    with pytest.raises(Ran):
        run.run_sweep(str(_config(tmp_path, output=str(paused),
                                  pruner={"name": "ncp_pause"})))
    _run_one_trial(paused)
    with pytest.raises(NCPSearchError, match=r"it ran pruner ncp_pause, and this config's "
                       r"pruner is ncp"):
        run.run_sweep(str(_config(tmp_path, output=str(paused), pruner={"name": "ncp"})),
                      resume=True)
    # the default with a deadline is ncp; a pausing sweep resumed so keeps pausing
    path.write_text(yaml.safe_dump({**unnamed, "output": str(paused),
                                    "budget": {**BASE["budget"], "minutes": 5}}))
    with pytest.raises(Ran):
        run.run_sweep(str(path), resume=True)
    assert seen[-1] == "ncp_pause"


_GOOD = {"name": "f", "backend": "optuna", "epochs": 2, "storage": "sqlite:///study.db",
         "study_name": "f", "config": {"budget": {"epochs": 2}}}


@pytest.mark.parametrize("damage, expected", [
    (b"{\"name\": \"f\", ", "is damaged: not JSON"),
    (b"{\"name\": \"f\"}", "is damaged: it lacks ['backend', 'epochs', 'config']"),
    (b"[1, 2]", "is damaged: it holds a JSON list"),
    (b"NaN", "is damaged: it holds a JSON float"),
    (b"\xff\xfe{}", "is damaged: not readable JSON text"),
    (b"[" * 100_000 + b"]" * 100_000, "is damaged: not readable JSON text"),
    (json.dumps({**_GOOD, "config": None}).encode(), "config is not an object"),
    (json.dumps({**_GOOD, "config": {"budget": []}}).encode(), "config is not an object"),
    (json.dumps({**_GOOD, "backend": "tpu"}).encode(), "backend is not one of"),
    (json.dumps({**_GOOD, "epochs": "2"}).encode(), "epochs is not an integer"),
    (json.dumps({**_GOOD, "storage": 5}).encode(), "storage is not a string"),
    (json.dumps({**_GOOD, "study_name": ["f"]}).encode(), "study_name is not a string"),
    (json.dumps({**_GOOD, "id": {"a": 1}}).encode(), "id is not a short string"),
    (json.dumps({**_GOOD, "name": ""}).encode(), "name is not a non-empty string"),
])
def test_a_damaged_sweep_json_is_a_clear_error(tmp_path, capsys, monkeypatch, damage,
                                               expected) -> None:
    config = _config(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sweep.json").write_bytes(damage)
    monkeypatch.setattr(run, "_run_optuna", lambda *a, **k: pytest.fail("ran"))
    for argv in (["sweep", str(config), "--resume"], ["sweep", str(config)],
                 ["report", str(tmp_path / "out")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert expected in err and "restore it" in err and "Traceback" not in err, err
        assert err.count("\n") == 1, err


def test_json_files_are_written_atomically(tmp_path, monkeypatch) -> None:
    from ncp_search.app import jsonio

    path = tmp_path / "s.json"
    jsonio.write_json({"a": 1}, path)

    def broken_dump(*args, **kwargs):
        args[1].write('{"a": ')
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(jsonio.json, "dump", broken_dump)
    with pytest.raises(KeyboardInterrupt):
        jsonio.write_json({"a": 2}, path)
    assert json.loads(path.read_text()) == {"a": 1}  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary left


def test_stale_partial_models_are_cleaned(tmp_path) -> None:
    import os
    import socket
    import subprocess
    import sys

    from ncp_search.app.sweep.trial import clean_partial_models

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    names = {
        "trial_0001.partial.keras": False,  # the old naming: always stale
        f"trial_0002.partial-{host}-{dead}.keras": False,  # its saver is dead
        f"trial_0003.partial-{host}-{os.getpid()}.keras": True,  # being saved now
        "trial_0004.partial-elsewhere-1.keras": True,  # another host, recent
        "trial_0005.partial-elsewhere-2.keras": False,  # another host, an hour old
        "trial_0006.keras": True,
    }
    for name in names:
        (tmp_path / name).write_text("x")
    old = tmp_path / "trial_0005.partial-elsewhere-2.keras"
    os.utime(old, (old.stat().st_atime - 7200, old.stat().st_mtime - 7200))
    removed = {p.name for p in clean_partial_models(tmp_path)}
    assert removed == {n for n, keep in names.items() if not keep}
    assert {p.name for p in tmp_path.iterdir()} == {n for n, keep in names.items() if keep}


def test_resume_cleans_partial_models(tmp_path, monkeypatch) -> None:
    config = _config(tmp_path)
    out = tmp_path / "out"
    (out / "models").mkdir(parents=True)
    monkeypatch.setattr(run, "_run_optuna", lambda *a, **k: (_ for _ in ()).throw(Ran()))
    with pytest.raises(Ran):  # a first start writes sweep.json
        run.run_sweep(str(config))
    _run_one_trial(out)
    (out / "models" / "trial_0000.partial.keras").write_text("half a model")
    with pytest.raises(Ran):
        run.run_sweep(str(config), resume=True)
    assert not list((out / "models").glob("*partial*"))


def test_a_model_save_killed_midway_leaves_no_file(tmp_path) -> None:
    from ncp_search.app.sweep.trial import save_model

    class Killed:
        def save(self, path):
            Path(path).write_text("half")
            raise KeyboardInterrupt

    class Whole:
        def save(self, path):
            Path(path).write_text("model")

    target = tmp_path / "models" / "trial_0001.keras"
    save_model(Whole(), target)
    with pytest.raises(KeyboardInterrupt):
        save_model(Killed(), target)
    assert target.read_text() == "model"
    assert [p.name for p in target.parent.iterdir()] == ["trial_0001.keras"]
