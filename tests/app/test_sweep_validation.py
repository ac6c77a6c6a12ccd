"""One validation pass before anything is written: every broken config the sweep used
to accept (or refuse only after sweep.json and study.db existed) exits with code 2 and
one line naming the file, the key, what was expected and a fix; no traceback, no
output folder."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from ncp_search.app.cli import main
from ncp_search.app.sweep.config import (
    IMAGE_SHAPES,
    PARAMS,
    ConfigError,
    load_sweep_config,
    validate_sweep_config,
)

BASE: dict[str, Any] = {
    "name": "v",
    "data": {"target": "digits:5-9"},
    "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
    "budget": {"trials": 4, "epochs": 3},
    "pruner": {"name": "ncp_percentile", "n_startup_trials": 1, "n_warmup_steps": 1},
}
BASE_YAML = """\
name: v
output: {output}
data: {{target: "digits:5-9"}}
source: {{zoo: mlp, task: "digits:0-4", epochs: 10}}
search_space:
  learning_rate: {{type: float, low: {low}, high: 0.1, log: true}}
budget:
  trials: 4
  epochs: {epochs}
{extra}"""


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Saved models: a good digits classifier and the ways a source.file goes wrong."""
    import keras

    folder = tmp_path_factory.mktemp("models")

    def classifier(shape, classes=5, lam=False, name="good"):
        inputs = keras.Input(shape)
        x = keras.layers.Flatten()(inputs)
        if lam:
            x = keras.layers.Lambda(lambda t: t * 2.0)(x)
        x = keras.layers.Dense(16, activation="relu", name="features")(x)
        activation = "softmax" if classes > 1 else None
        out = keras.layers.Dense(classes, activation=activation, name="predictions")(x)
        path = folder / f"{name}.keras"
        keras.Model(inputs, out).save(path)
        return path

    junk = folder / "junk.keras"
    junk.write_text("not a model")
    (folder / "model.txt").write_text("not a model")
    (folder / "dir.keras").mkdir()
    return {"good": classifier((8, 8, 1)), "lambda": classifier((8, 8, 1), lam=True,
                                                                name="lambda"),
            "regression": classifier((8, 8, 1), classes=1, name="regression"),
            "fashion": classifier((28, 28, 1), name="fashion"),
            "junk": junk, "dir": folder / "dir.keras", "text": folder / "model.txt"}


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def apply(config: dict) -> None:
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return apply


def _file(kind: str) -> Callable[[dict, dict], None]:
    def apply(config: dict, models: dict) -> None:
        config["source"] = {"file": str(models[kind])}
    return apply


# (id, change to BASE, fragments the message must hold). A change is a function of the
# config dict (and the saved models), or a YAML text (for what only YAML text can hold).
BROKEN: list[tuple[str, Any, list[str]]] = [
    # -- failed only after sweep.json and study.db existed ---------------------------------
    ("fixed learning_rate text", _set("search_space.learning_rate", "fast"),
     ["search_space.learning_rate: expected a number in (0, 1000]", "'fast' (str)"]),
    ("dropout range up to 1.5", _set("search_space.dropout",
                                     {"type": "float", "low": 0.0, "high": 1.5}),
     ["search_space.dropout.high: expected a number in [0, 1)", "1.5"]),
    ("batch_size 0..0", _set("search_space.batch_size", {"type": "int", "low": 0, "high": 0}),
     ["search_space.batch_size.low: expected an integer in [1, 65536]", "0 (int)"]),
    ("source.file not a Keras model", _file("junk"),
     ["source.file", "does not load as a Keras model with safe_mode=True"]),
    ("source.file a directory", _file("dir"), ["source.file", "is a folder"]),
    ("source.file not .keras", _file("text"), ["source.file", "is not a .keras file"]),
    ("source.file missing", lambda c: c.update(source={"file": "nope.keras"}),
     ["source.file: no such file 'nope.keras'", "read from the config file's folder"]),
    ("negative fixed head_units", _set("search_space.head_units", -4),
     ["search_space.head_units: expected an integer in [0, 65536]", "-4 (int)"]),
    ("a list as a space spec", _set("search_space.learning_rate", [0.1, 0.01]),
     ["search_space.learning_rate: a list is not a search-space spec",
      "{type: categorical, choices: [0.1, 0.01]}"]),
    ("learning-rate range below zero", _set("search_space.learning_rate",
                                            {"type": "float", "low": -0.1, "high": 0.1}),
     ["search_space.learning_rate.low: expected a number in (0, 1000]", "but got -0.1"]),
    ("ray grace_period above the epochs",
     lambda c: (c.pop("pruner"), c.update(backend="ray",
                                           scheduler={"name": "ncp", "grace_period": 5})),
     ["scheduler.grace_period: 5 exceeds budget.epochs=3", "set grace_period <="]),
    ("probe widths of 1e12", _set("probe.hidden", [10**12, 64, 64]),
     ["probe.hidden: expected a list of 3 to 32 integers in [1, 16384]"]),
    # -- accepted silently ----------------------------------------------------------------
    ("duplicate top-level key", "budget: {trials: 1000000, epochs: 3}\n",
     ["budget: duplicate key at lines 7 and 10", "remove one"]),
    ("duplicate nested key", "pruner:\n  name: ncp\n  name: nop\n",
     ["pruner.name: duplicate key at lines 11 and 12"]),
    ("n_warmup_steps above the epochs", _set("pruner.n_warmup_steps", 5),
     ["pruner.n_warmup_steps: 5 warm-up epochs of 3", "nothing would ever be pruned",
      "pruner: nop"]),
    ("n_startup_trials above the budget", _set("pruner.n_startup_trials", 9),
     ["pruner.n_startup_trials: 9 start-up trials of 4", "set n_startup_trials < budget"]),
    ("int bounds 8.5..8.7", _set("search_space.head_units",
                                 {"type": "int", "low": 8.5, "high": 8.7}),
     ["search_space.head_units.low: expected an integer, but got 8.5"]),
    ("epochs: 1e20 (YAML text)", "", ["budget.epochs: expected an integer in [1, 10000]",
                                      "YAML reads 1e20 as a string", "1.0e+20"]),
    ("epochs 10**20", _set("budget.epochs", 10**20),
     ["budget.epochs: expected an integer in [1, 10000]"]),
    ("negative fixed weight_decay", _set("search_space.weight_decay", -0.01),
     ["search_space.weight_decay: expected a number in [0, 10], but got -0.01"]),
    ("unparseable storage URL", _set("optuna.storage", "postgres//nope"),
     ["optuna.storage: cannot read 'postgres//nope' as a storage URL", "sqlite:///"]),
    ("storage URL with a bad port", _set("optuna.storage", "postgresql://u:hunter2@h:x/db"),
     ["optuna.storage: cannot read 'postgresql://u:***@h:x/db'"]),
    ("unsupported database", _set("optuna.storage", "postgres://u@h/db"),
     ["unsupported database 'postgres'", "did you mean 'postgresql'?"]),
    ("unknown storage driver", _set("optuna.storage", "postgresql+nodriver://h/db"),
     ["unknown driver 'postgresql+nodriver'"]),
    ("in-memory SQLite", _set("optuna.storage", "sqlite://"), ["in-memory SQLite"]),
    ("SQLite in a missing folder", _set("optuna.storage", "sqlite:////no/such/dir/s.db"),
     ["'/no/such/dir'", "does not exist"]),
    # -- issue 13's CLI items -------------------------------------------------------------
    ("1e-4 read as a string (YAML text)", "",
     ["search_space.learning_rate.low: expected a finite number, but got '1e-4' (str)",
      "YAML reads 1e-4 as a string", "write 1.0e-4"]),
    ("misspelt spec type", _set("search_space.learning_rate",
                                {"type": "flaot", "low": 0.1, "high": 0.2}),
     ["search_space.learning_rate.type: expected one of", "did you mean 'float'?"]),
    ("misspelt spec key", _set("search_space.learning_rate",
                               {"type": "float", "low": 0.1, "hihg": 0.2}),
     ["search_space.learning_rate.hihg: unknown key", "did you mean 'high'?"]),
    ("quoted number", _set("budget.trials", "5"), ["Write 5 without quotes"]),
    # -- more that would only fail in a trial ---------------------------------------------
    ("Lambda layer (safe_mode)", _file("lambda"), ["source.file", "safe_mode=True"]),
    ("a regression model", _file("regression"), ["is not a classifier"]),
    ("a model for other images", _file("fashion"),
     ["takes inputs of shape (28, 28, 1)", "(8, 8, 1)"]),
    ("zoo source trained on other images", _set("source.task", "fashion_mnist:0-4"),
     ["source.task: zoo models trained on fashion_mnist take images of shape (28, 28, 1)"]),
    ("head_units in probe_head mode",
     lambda c: c.update(mode="probe_head", search_space={
         **c["search_space"], "head_units": {"type": "categorical", "choices": [0, 64]}}),
     ["search_space.head_units: only used in mode: observer"]),
    ("int range for a real setting", _set("search_space.learning_rate",
                                          {"type": "int", "low": 1, "high": 3}),
     ["search_space.learning_rate.type", "write type: float"]),
    ("float range for an integer setting",
     _set("search_space.batch_size", {"type": "float", "low": 16, "high": 64}),
     ["search_space.batch_size.type", "write type: int"]),
    ("range for a choice", _set("search_space.optimizer", {"type": "float", "low": 0,
                                                           "high": 1}),
     ["search_space.optimizer.type", "type: categorical"]),
    ("log not a boolean", _set("search_space.learning_rate",
                               {"type": "float", "low": 0.1, "high": 0.2, "log": "yes"}),
     ["search_space.learning_rate.log: expected true or false"]),
    ("bad categorical value", _set("search_space.batch_size",
                                   {"type": "categorical", "choices": [32, 0]}),
     ["search_space.batch_size.choices[1]: expected an integer in [1, 65536]"]),
    ("source_model with a file", lambda c: c.update(
        source={"file": "x.keras", "task": "digits:0-4"},
        search_space={**c["search_space"], "source_model": {"type": "categorical",
                                                            "choices": ["mlp"]}}),
     ["source.file: search_space.source_model chooses among zoo models"]),
    # -- issue 20: hostile or unbounded input, late errors, silent accepts ----------------
    ("alias bomb (YAML text)", "description: [" + ", ".join(
        [f"&l0 [{', '.join(['x'] * 9)}]"]
        + [f"&l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 6)]) + "]\n",
     ["aliases (*name) expand to more than 10,000 values", "write the values out"]),
    ("recursive alias (YAML text)", "description: &loop [*loop]\n",
     ["the alias *loop at line 10 is inside the value it names"]),
    ("10,000-deep nesting (YAML text)", "description: " + "[" * 10_000 + "]" * 10_000 + "\n",
     ["YAML nested deeper than 32 levels at line 10"]),
    ("source.epochs a million", _set("source.epochs", 1_000_000),
     ["source.epochs: expected an integer in [1, 1000] (epochs to pre-train a zoo source; "
      "more is a typo), but got 1000000 (int)"]),
    ("huge input_shape", lambda c: c.update(source={"application": "MobileNetV2",
                                                    "input_shape": [100_000, 100_000, 3]}),
     ["source.input_shape: expected null or [height, width, channels] with height, width "
      "in [32, 1024]", "do not fit a probe batch"]),
    ("huge head_units", _set("search_space.head_units", 10**9),
     ["search_space.head_units: expected an integer in [0, 65536]", "does not fit"]),
    ("huge budget.trials", _set("budget.trials", 10**9),
     ["budget.trials: expected an integer in [1, 100000]"]),
    ("seed of 200 digits", _set("seed", 10**200),
     ["seed: expected an integer >= 0 of at most 100 digits"]),
    ("pruner: false", _set("pruner", False),
     ["pruner: expected a mapping such as {name: nop}, but got False (bool)"]),
    ("name: ..", _set("name", ".."), ["name: expected a name of letters", "not only dots"]),
    ("ncp_two_batch predictor", _set("pruner.predictor", "ncp_two_batch"),
     ["pruner.predictor: predictor='ncp_two_batch' reads ['beta_eff_batch2']",
      "use one of ['best'"]),
    ("one-class target", _set("data.target", "digits:5"),
     ["data.target: a classifier needs at least 2 classes, but 'digits:5' has 1"]),
    ("labels the data lacks", _set("data.target", "digits:5-12"),
     ["data.target: the data's labels are 0-9, but 'digits:5-12' names [10, 11, 12]"]),
    # -- issue 19: a section the backend does not use --------------------------------------
    ("scheduler with backend optuna", _set("scheduler", {"name": "fifo"}),
     ["scheduler: not used by backend: optuna (Ray Tune schedulers apply to backend: ray "
      "only; backend: optuna reads the pruner section); remove the scheduler section, or set "
      "backend: ray."]),
    ("ray section with backend optuna", _set("ray", {"cpus_per_trial": 2}),
     ["ray: not used by backend: optuna"]),
    ("pruner with backend ray", _set("backend", "ray"),
     ["pruner: not used by backend: ray", "remove the pruner section"]),
]


def _write(tmp_path: Path, change: Any, name: str, models: dict) -> Path:
    path = tmp_path / "bad.yaml"
    output = tmp_path / "out"
    if isinstance(change, str):
        low, epochs = ("1e-4", 3) if "1e-4" in name else ("1.0e-4", 3)
        if "1e20" in name:
            epochs = "1e20"
        path.write_text(BASE_YAML.format(output=output, low=low, epochs=epochs, extra=change))
        return path
    config = copy.deepcopy(BASE)
    config["output"] = str(output)
    try:
        change(config, models)
    except TypeError:
        change(config)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("name, change, expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_exits_2_with_one_line_and_writes_nothing(
        name, change, expected, tmp_path, capsys, monkeypatch, models) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, change, name, models)
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ncp-search: error: {path}: "), lines[0]
    for fragment in expected:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in err and "hunter2" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_backend_from_the_command_line_refuses_the_other_backends_section(
        tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, lambda c, m: (c.pop("pruner"), c.update(
        backend="ray", scheduler={"name": "fifo"})), "ray", {})
    assert main(["sweep", str(path), "--backend", "optuna"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"ncp-search: error: {path}: scheduler: not used by backend: optuna "
                     "(from --backend) (Ray Tune schedulers apply to backend: ray only; "
                     "backend: optuna reads the pruner section); remove the scheduler section, "
                     "or run without --backend optuna."]
    assert not (tmp_path / "out").exists()


def test_an_oversized_config_file_is_refused_unread(tmp_path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(BASE_YAML.format(output=tmp_path / "out", low="1.0e-4", epochs=3,
                                     extra=f"description: '{'x' * 1_000_000}'\n"))
    with pytest.raises(ConfigError, match=r"big.yaml: larger than 1,000,000 bytes"):
        load_sweep_config(path)


def test_an_empty_pruner_section_means_the_default(tmp_path) -> None:
    path = _write(tmp_path, "", "plain", {})
    path.write_text(path.read_text() + "pruner:\n")  # a key with nothing after it
    assert load_sweep_config(path).choice.describe() == (
        "ncp_pause (predictor=best, min_resource=1)")


def test_the_base_config_is_valid(tmp_path, models) -> None:
    for change, name in (("", "plain"), (_file("good"), "file")):
        path = _write(tmp_path, change, name, models)
        load_sweep_config(path)


def test_a_relative_source_file_is_read_from_the_config_folder(tmp_path, models,
                                                               monkeypatch) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "mine.keras").write_bytes(models["good"].read_bytes())
    config = {**copy.deepcopy(BASE), "source": {"file": "mine.keras"}}
    path = folder / "x.yaml"
    path.write_text(yaml.safe_dump(config))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory does not matter
    loaded = load_sweep_config(path)
    assert loaded["source"]["file"] == str((folder / "mine.keras").resolve())


def test_overrides_are_validated_and_named(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, lambda c, m: (c.pop("pruner"), c.update(
        backend="ray", scheduler={"name": "ncp", "grace_period": 2})), "ray", {})
    assert main(["sweep", str(path), "--epochs", "1"]) == 2  # grace_period 2 > 1
    err = capsys.readouterr().err
    assert "budget.epochs=1 (from --epochs)" in err and "Traceback" not in err
    from ncp_search.app.sweep.run import run_sweep

    with pytest.raises(ConfigError, match=r"budget.epochs \(from --epochs\): expected an "
                       r"integer in \[1, 10000\].*but got 20000"):
        run_sweep(str(path), epochs=20000)
    optuna = _write(tmp_path, "", "optuna", {})
    with pytest.raises(ConfigError, match=r"--storage: cannot read"):
        run_sweep(str(optuna), storage="nonsense")
    assert not (tmp_path / "out").exists()


def test_an_override_that_idles_the_pruner_is_a_warning(tmp_path) -> None:
    path = _write(tmp_path, _set("pruner.n_startup_trials", 4), "startup", {})
    warnings: list[str] = []
    config = load_sweep_config(path, overrides={"budget.trials": (2, "--trials")},
                               warnings=warnings)
    assert config["budget"]["trials"] == 2
    assert len(warnings) == 1 and "budget.trials is from --trials" in warnings[0]
    # A default that idles it is a warning too; the file setting both is an error.
    warnings.clear()
    validate_sweep_config({**BASE, "pruner": {"name": "ncp_percentile"}}, "x.yaml",
                          warnings=warnings)
    assert "pruner.n_startup_trials is the default" in warnings[0]
    with pytest.raises(ConfigError, match="n_startup_trials"):
        load_sweep_config(path)


def test_the_schema_matches_the_engine_and_the_data() -> None:
    from ncp_search.app.data import load_task
    from ncp_search.engine.finetune import DEFAULTS, OPTIMIZERS, SCHEDULES

    assert set(PARAMS) == set(DEFAULTS) | {"source_model"}
    assert PARAMS["optimizer"].choices == OPTIMIZERS
    assert PARAMS["schedule"].choices == SCHEDULES
    for name, default in DEFAULTS.items():
        assert PARAMS[name].check(default), name
    assert tuple(load_task("digits:5-9").x_train.shape[1:]) == IMAGE_SHAPES["digits"]
