"""Self-describing sweep folders: a moved, copied or reused folder reads its own
study, a folder of the other backend or of another sweep is refused in one line.

The Optuna sweeps here run through the real driver, worker loop and storage with a
trivial objective in place of training (what is under test is the folder).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
import yaml

import ncp_search.app.sweep.optuna_backend as sweep_optuna
import ncp_search.app.sweep.trial as sweep_trial
from ncp_search.app.cli import main
from ncp_search.app.search_space import suggest
from ncp_search.app.sweep.folder import (
    ID_ATTR,
    read_meta,
    record_storage,
    resolve_storage,
)

BASE = {
    "name": "ident", "data": {"target": "digits:5-9"},
    "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1}},
    "budget": {"trials": 2, "epochs": 2}, "pruner": {"name": "nop"},
}


@pytest.fixture
def cheap_trials(monkeypatch):
    """Trials through the real worker loop, with a trivial objective."""

    def make_objective(config, data, output, on_epoch=None, cache_dir=None):
        def objective(trial):
            params = suggest(trial, config["search_space"])
            for epoch in range(int(config["budget"]["epochs"])):
                trial.report(params["learning_rate"] * (epoch + 1), epoch)
            return params["learning_rate"]

        return objective

    monkeypatch.setattr(sweep_optuna, "make_objective", make_objective)
    monkeypatch.setattr(sweep_trial, "load_data", lambda *a, **k: None)


def _config(tmp_path: Path, output: Path, **changes) -> Path:
    path = tmp_path / f"ident-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({**BASE, "output": str(output), **changes}))
    return path


def _report_trials(folder: Path, capsys) -> int:
    assert main(["report", str(folder)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    from ncp_search.app.sweep.results import load_trials

    return len(load_trials(folder)[1])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_storage_paths_are_recorded_relative_to_the_folder(tmp_path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    assert record_storage(f"sqlite:///{folder}/study.db", folder) == "sqlite:///study.db"
    assert record_storage(f"sqlite:///{tmp_path}/x.db", folder) == f"sqlite:///{tmp_path}/x.db"
    assert record_storage("postgresql://u@h/db", folder) == "postgresql://u@h/db"
    moved = tmp_path / "moved"
    assert resolve_storage("sqlite:///study.db", moved) == f"sqlite:///{moved}/study.db"
    # an old sweep.json's absolute path to another folder's study.db: this folder's
    (moved).mkdir()
    (moved / "study.db").write_bytes(b"")
    assert (resolve_storage(f"sqlite:///{folder}/study.db", moved)
            == f"sqlite:///{moved}/study.db")
    assert resolve_storage(f"sqlite:///{tmp_path}/x.db", moved) == f"sqlite:///{tmp_path}/x.db"


def test_a_moved_folder_reports_its_own_trials_not_the_new_sweep_at_its_old_path(
        tmp_path, capsys, cheap_trials) -> None:
    first = tmp_path / "a" / "out"
    assert main(["sweep", str(_config(tmp_path, first))]) == 0
    meta = read_meta(first / "sweep.json")
    assert meta["storage"] == "sqlite:///study.db" and len(meta["id"]) == 32
    moved = tmp_path / "b" / "out"
    moved.parent.mkdir()
    shutil.move(str(first), str(moved))
    # A new sweep (3 trials) starts at the old path.
    assert main(["sweep", str(_config(tmp_path, first, budget={"trials": 3, "epochs": 2}))]) == 0
    capsys.readouterr()
    assert _report_trials(moved, capsys) == 2
    assert _report_trials(first, capsys) == 3
    # The moved folder resumes on its own study (more trials: 2 -> 4).
    assert main(["sweep", str(_config(tmp_path, moved, budget={"trials": 4, "epochs": 2})),
                 "--resume"]) == 0
    assert _report_trials(moved, capsys) == 4 and _report_trials(first, capsys) == 3


def test_a_copied_folder_is_its_own_sweep(tmp_path, capsys, cheap_trials) -> None:
    first = tmp_path / "out"
    assert main(["sweep", str(_config(tmp_path, first))]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    assert main(["sweep", str(_config(tmp_path, copy, budget={"trials": 3, "epochs": 2})),
                 "--resume"]) == 0
    capsys.readouterr()
    assert _report_trials(copy, capsys) == 3 and _report_trials(first, capsys) == 2


def test_a_folder_whose_study_belongs_to_another_sweep_is_refused(tmp_path, capsys,
                                                                  cheap_trials) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        assert main(["sweep", str(_config(tmp_path, folder))]) == 0
    before = (one / "sweep.json").read_bytes()
    shutil.copy(two / "study.db", one / "study.db")  # same study name, another sweep
    capsys.readouterr()
    assert main(["report", str(one)]) == 2
    assert "does not hold the sweep" in _one_line_error(capsys)
    assert main(["sweep", str(_config(tmp_path, one)), "--resume"]) == 2
    assert "does not hold the sweep" in _one_line_error(capsys)
    assert (one / "sweep.json").read_bytes() == before
    study = optuna.load_study(study_name="ident", storage=f"sqlite:///{one}/study.db")
    assert study.user_attrs[ID_ATTR] == read_meta(two / "sweep.json")["id"]
    assert len(study.trials) == 2  # nothing ran


def test_a_new_sweep_never_joins_a_study_with_trials(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    study = optuna.create_study(study_name="ident", storage=f"sqlite:///{out}/study.db")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert main(["sweep", str(_config(tmp_path, out))]) == 2
    assert "already holds a study named 'ident' with trials" in _one_line_error(capsys)
    assert not (out / "sweep.json").exists()


def test_a_ray_sweep_into_an_optuna_folder_is_refused(tmp_path, capsys, cheap_trials) -> None:
    out = tmp_path / "out"
    assert main(["sweep", str(_config(tmp_path, out))]) == 0
    written = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    ray_config = tmp_path / "ray.yaml"
    ray_config.write_text(yaml.safe_dump({**{k: v for k, v in BASE.items() if k != "pruner"},
                                          "output": str(out), "backend": "ray"}))
    for extra in ([], ["--resume"]):
        assert main(["sweep", str(ray_config), *extra]) == 2
        assert "holds a sweep of backend 'optuna'" in _one_line_error(capsys)
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == written
        assert not (out / "ray").exists()


def test_sweep_json_of_an_old_sweep_still_reads(tmp_path, capsys, cheap_trials) -> None:
    """A sweep.json from before sweep ids (an absolute storage path, no id) reads, and
    gets an id when resumed."""
    out = tmp_path / "out"
    assert main(["sweep", str(_config(tmp_path, out))]) == 0
    meta = json.loads((out / "sweep.json").read_text())
    del meta["id"]
    meta["storage"] = f"sqlite:///{out.resolve()}/study.db"
    (out / "sweep.json").write_text(json.dumps(meta))
    study = optuna.load_study(study_name="ident", storage=f"sqlite:///{out}/study.db")
    study.set_user_attr(ID_ATTR, None)  # as if never set
    capsys.readouterr()
    assert _report_trials(out, capsys) == 2
    assert main(["sweep", str(_config(tmp_path, out, budget={"trials": 3, "epochs": 2})),
                 "--resume"]) == 0
    assert read_meta(out / "sweep.json")["id"]
    assert _report_trials(out, capsys) == 3


def test_a_tuner_pickle_other_than_the_sweeps_is_refused(tmp_path) -> None:
    from ncp_search.app.sweep.folder import TUNER_DIGEST, check_tuner_pickle, tuner_digest
    from ncp_search.errors import NCPSearchError

    experiment = tmp_path / "ray" / "name"
    experiment.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"what Tune wrote")
    meta = {TUNER_DIGEST: tuner_digest(experiment)}
    check_tuner_pickle(experiment, meta)
    check_tuner_pickle(experiment, {})  # a sweep from before the digest: not checked
    (experiment / "tuner.pkl").write_bytes(b"planted")
    with pytest.raises(NCPSearchError, match="not the file this sweep wrote"):
        check_tuner_pickle(experiment, meta)
    (experiment / "tuner.pkl").unlink()
    (experiment / "tuner.pkl").symlink_to(tmp_path / "elsewhere.pkl")
    with pytest.raises(NCPSearchError, match="symbolic link"):
        check_tuner_pickle(experiment, {})
