"""Sweep config validation: every kind of bad config names the file, the key path,
what was expected and a fix, and the CLI exits with code 2."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from ncp_search.app.cli import main
from ncp_search.app.sweep.config import (
    ConfigError,
    SweepConfig,
    load_sweep_config,
    validate_sweep_config,
)

GOOD = {
    "name": "t",
    "data": {"target": "digits:5-9"},
    "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
    "search_space": {"learning_rate": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
                     "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]}},
    "budget": {"trials": 4, "epochs": 3},
}


def _with(path: str, value: object) -> dict:
    config = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return config


_DELETE = object()


def test_a_sweep_with_a_deadline_defaults_to_asha() -> None:
    """Pausing completes no trial before its last rung, so a sweep that may stop at
    ``budget.minutes`` gets ncp (ASHA), which completes good trials early; a named
    choice is kept."""
    budget = {**GOOD["budget"], "minutes": 30}
    for backend, section in (("optuna", "pruner"), ("ray", "scheduler")):
        timed = validate_sweep_config({**GOOD, "backend": backend, "budget": budget})
        assert (timed[section]["name"], timed[section]["rule"]) == ("ncp", "asha")
        named = validate_sweep_config({**GOOD, "backend": backend, "budget": budget,
                                       section: {"name": "ncp_pause"}})
        assert named[section]["name"] == "ncp_pause"
        empty = validate_sweep_config({**GOOD, "backend": backend, "budget": budget,
                                       section: {"predictor": "pow3"}})
        assert (empty[section]["name"], empty[section]["predictor"]) == ("ncp", "pow3")
        # named with a deadline: kept, with a warning that says what the deadline risks
        warnings: list[str] = []
        validate_sweep_config({**GOOD, "backend": backend, "budget": budget,
                               section: {"name": "ncp_pause"}}, "t.yaml", warnings=warnings)
        assert len(warnings) == 1 and warnings[0].startswith(
            f"t.yaml: {section}.name: ncp_pause with budget.minutes=30: pausing completes "
            "no trial before its last rung")
        quiet: list[str] = []
        validate_sweep_config({**GOOD, "backend": backend, section: {"name": "ncp_pause"}},
                              warnings=quiet)
        assert quiet == []


@pytest.mark.parametrize("section, settings, key", [
    ("pruner", {"reduction_factor": 3}, "reduction_factor"),
    ("scheduler", {"grace_period": 2, "reduction_factor": 3}, "reduction_factor"),
])
def test_a_config_with_asha_settings_and_no_name_says_to_name_ncp(section, settings,
                                                                   key) -> None:
    """Written for 0.2's default (no name: ncp), it now means ncp_pause; the error said
    only 'unknown key (not used by this choice)'."""
    backend = "ray" if section == "scheduler" else "optuna"
    with pytest.raises(ConfigError, match=rf"{section}.{key}: not used by ncp_pause, which a "
                       rf"{section} without a name runs since 0.3 \(it ran ncp, ASHA\); to "
                       r"keep ASHA, add name: ncp"):
        validate_sweep_config({**GOOD, "backend": backend, section: settings})
    named = validate_sweep_config({**GOOD, "backend": backend,
                                   section: {"name": "ncp", **settings}})
    assert named.choice.name == "ncp"
    with pytest.raises(ConfigError, match=r"such as 'best' or 'pow3' \(ncp_pause is the "
                       rf"default of a {section} without a name; add name: ncp for ASHA\)"):
        validate_sweep_config({**GOOD, "backend": backend,
                               section: {"predictor": "xtrial_ncp"}})


def test_a_stored_config_that_names_no_pruner_reads_as_ncp() -> None:
    """Sweeps of 0.1-0.3 without a name in their stored config ran ncp (ASHA): reading
    them back (a report, --resume) must not turn them into pausing sweeps."""
    stored = validate_sweep_config({**GOOD, "pruner": {"name": "ncp"}}).to_dict()
    del stored["pruner"]["name"], stored["pruner"]["rule"]
    read = SweepConfig.from_dict(stored).choice
    assert (read.name, read.rule, read.settings["reduction_factor"]) == ("ncp", "asha", 3)


def test_good_config_gets_defaults() -> None:
    config = validate_sweep_config(GOOD, "good.yaml")
    assert config["backend"] == "optuna"
    # no pruner named: the pausing policy, the pausing benchmark's pick
    assert config["pruner"]["name"] == "ncp_pause" and config["pruner"]["predictor"] == "best"
    assert config["pruner"]["rule"] == "pause" and "scheduler" not in config
    assert config.pruner is not None and config.pruner.settings == {
        "predictor": "best", "min_resource": 1}  # only what ncp_pause reads
    ray = validate_sweep_config({**GOOD, "backend": "ray"}, "good.yaml")
    assert ray["scheduler"]["rule"] == "pause" and ray.choice.settings["grace_period"] == 1
    assert "pruner" not in ray
    assert config["output"].endswith("t")
    assert config["probe"]["hidden"] == [64, 64, 64]
    assert config["budget"]["minutes"] is None


@pytest.mark.parametrize("path, value, expected", [
    ("budjet", {"trials": 1}, ["budjet: unknown key", "did you mean 'budget'?"]),
    ("pruner", {"name": "ncp_percentile", "percentil": 30},
     ["pruner.percentil: unknown key", "did you mean 'percentile'?"]),
    ("pruner", {"name": "hyperband", "percentile": 10},
     ["pruner.percentile: unknown key (not used by this choice)"]),
    ("pruner.name", "medain", ["pruner.name: expected one of", "did you mean 'median'?"]),
    ("budget.trials", "ten", ["budget.trials: expected an integer in [1, 100000]",
                              "'ten' (str)"]),
    ("budget.trials", 0, ["budget.trials: expected an integer in [1, 100000] (each trial "
                          "trains a model; more is a typo), but got 0 (int)"]),
    ("budget.epochs", True, ["budget.epochs: expected an integer in [1, 10000]",
                             "True (bool)"]),
    ("budget.epochs", _DELETE, ["budget.epochs: missing; expected an integer in [1, 10000]"]),
    ("data", _DELETE, ["data: missing"]),
    ("data.target", "cifar:0-4", ["data.target: expected a task spec"]),
    ("pruner", {"name": "ncp_percentile", "percentile": 120},
     ["pruner.percentile: expected a number in [0, 100]", "got 120 (int)"]),
    ("pruner.predictor", "bset", ["pruner.predictor: expected a predictor name"]),
    ("probe.hidden", [64, 64], ["probe.hidden: expected a list of 3 to 32 integers"]),
    ("source.zoo", "resnet50", ["source.zoo: expected a model-zoo architecture"]),
    ("source.file", "missing.keras", ["source: give one of zoo, file or application"]),
    ("source", {"task": "digits:0-4"}, ["source: missing; expected source.zoo"]),
    ("source", {"application": "MobileNetV9"},
     ["source.application: unknown keras.applications model", "did you mean"]),
    ("source", {"application": "MobileNetV2", "input_shape": [8, 8, 3]},
     ["source.input_shape: height and width must be >= 32"]),
    ("search_space.learning_rte", {"type": "float", "low": 0.1, "high": 1.0},
     ["search_space.learning_rte: not a trial setting", "did you mean 'learning_rate'?"]),
    ("search_space.learning_rate", {"type": "float", "low": 0.1, "high": 0.01},
     ["search_space.learning_rate: low must be <= high"]),
    ("search_space.learning_rate", {"type": "float", "low": 0.0, "high": 0.1, "log": True},
     ["search_space.learning_rate.low: expected a number in (0, 1000]", "but got 0.0"]),
    ("search_space.weight_decay", {"type": "float", "low": 0.0, "high": 0.1, "log": True},
     ["search_space.weight_decay.low: a log scale needs low > 0"]),
    ("search_space.optimizer", {"type": "categorical", "choices": ["adamw"]},
     ["search_space.optimizer.choices[0]: expected one of", "did you mean 'adam'?"]),
    ("search_space.dropout", {"type": "beta", "low": 0, "high": 1},
     ["search_space.dropout.type: expected one of ['float', 'int', 'categorical']"]),
    ("search_space", {}, ["search_space: expected a non-empty mapping"]),
    ("backend", "dask", ["backend: expected one of ['optuna', 'ray'], but got 'dask'"]),
    ("ray", {"gpus_per_trial": -1}, ["ray: not used by backend: optuna",
                                     "remove the ray section, or set backend: ray"]),
    ("optuna", {"sampler": "cmaes"}, ["optuna.sampler: expected one of ['tpe', 'random']"]),
    ("budget.minutes", float("nan"), ["budget.minutes: expected a number in (0, 525600] "
                                      "or null"]),
    ("name", "my sweep", ["name: expected a name of letters"]),
    ("data.n_train", 500, ["data.n_train: not available for digits"]),
])
def test_bad_config_names_key_path_and_fix(path: str, value: object, expected: list[str],
                                           tmp_path, capsys) -> None:
    config = _with(path, value)
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(config), encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_sweep_config(file)
    message = str(error.value)
    assert message.startswith(f"{file}: ")
    for part in expected:
        assert part in message, message
    # The CLI prints the same message and exits with code 2 before anything runs.
    assert main(["sweep", str(file)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_yaml_errors_and_missing_file(tmp_path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: t\ndata: {target: digits:5-9\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line \d+"):
        load_sweep_config(broken)
    with pytest.raises(ConfigError, match="no such config file"):
        load_sweep_config(tmp_path / "nope.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping at the top level"):
        load_sweep_config(listed)


def test_yaml_is_read_with_the_safe_loader(tmp_path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_sweep_config(evil)


def test_shipped_configs_are_valid() -> None:
    import glob

    shipped = sorted(glob.glob("configs/*.yaml"))
    sweeps = [p for p in shipped if not p.split("/")[-1].startswith("record_")]
    assert len(sweeps) >= 4, sweeps
    for path in sweeps:
        config = load_sweep_config(path)
        assert config["budget"]["trials"] >= 1


@pytest.mark.parametrize("section, settings, key", [
    ("pruner", {"name": "ncp", "percentile": 50, "n_startup_trials": 3}, "n_startup_trials"),
    ("pruner", {"name": "ncp", "kappa": 1.0}, "kappa"),
    ("scheduler", {"name": "ncp", "percentile": 30}, "percentile"),
    ("scheduler", {"name": "ncp_asha", "percentile": 30}, "percentile"),
])
def test_a_01_percentile_config_says_how_to_keep_its_rule(section, settings, key) -> None:
    # 0.1's "ncp" was the percentile rule; 0.2's is ASHA: its settings are refused with
    # the way to keep the old rule, not silently ignored.
    raw = {**GOOD, section: settings, "backend": "ray" if section == "scheduler" else "optuna"}
    with pytest.raises(ConfigError) as error:
        validate_sweep_config(raw, "old.yaml")
    text = str(error.value)
    assert f"{section}.{key}" in text and "ncp_percentile" in text and "ASHA" in text


def test_ncp_names_pick_their_rule_and_the_pruner_it_builds() -> None:
    from ncp_search.app.sweep.optuna_backend import make_pruner

    asha = validate_sweep_config({**GOOD, "pruner": {"name": "ncp", "reduction_factor": 2}},
                                 "a.yaml")
    old = validate_sweep_config({**GOOD, "pruner": {"name": "ncp_percentile",
                                                    "percentile": 30,
                                                    "n_startup_trials": 2}}, "p.yaml")
    assert (asha["pruner"]["rule"], old["pruner"]["rule"]) == ("asha", "percentile")
    built = make_pruner(asha)
    assert (built.rule, built.reduction_factor, built.min_resource, built.max_step) == (
        "asha", 2.0, 1, 2)
    built = make_pruner(old)
    assert (built.rule, built.percentile, built.n_startup_trials) == ("percentile", 30.0, 2)


def test_the_typed_config_reads_as_attributes_and_as_the_stored_mapping() -> None:
    config = validate_sweep_config({**GOOD, "probe": {"hidden": [8, 8, 8]}}, "t.yaml")
    assert (config.budget.epochs, config.probe.hidden, config.choice.name) == (
        3, (8, 8, 8), "ncp_pause")
    stored = config.to_dict()  # what sweep.json and the study hold: plain JSON values
    assert stored == dict(config) and stored["probe"]["hidden"] == [8, 8, 8]
    assert json.loads(json.dumps(stored)) == stored
    assert SweepConfig.from_dict(stored) == config


def test_a_config_stored_by_0_1_or_0_2_reads_back() -> None:
    from ncp_search.app.sweep.optuna_backend import describe_pruner, make_pruner

    # 0.2 stored every section and every setting of both choices, with the rule.
    old = validate_sweep_config(GOOD, "t.yaml").to_dict()
    old["pruner"] = {"name": "ncp_percentile", "predictor": "best", "percentile": 30,
                     "n_startup_trials": 2, "n_warmup_steps": 1, "kappa": 0.0,
                     "reduction_factor": 3, "rule": "percentile"}
    old["scheduler"] = {"name": "ncp", "predictor": "best", "percentile": 50.0,
                        "grace_period": 1, "reduction_factor": 3, "rule": "asha"}
    config = SweepConfig.from_dict(old)
    assert config.scheduler is None and config.choice.settings == {
        "predictor": "best", "percentile": 30, "n_startup_trials": 2, "n_warmup_steps": 1,
        "kappa": 0.0}
    assert describe_pruner(old) == ("ncp_percentile (predictor=best, percentile=30, "
                                    "n_startup_trials=2, n_warmup_steps=1, kappa=0.0)")
    assert make_pruner(old).settings()["percentile"] == 30.0
    # The keys a resume compares are the same in the old and the new form.
    for key in ("data", "source", "probe", "mode", "search_space", "backend"):
        assert config[key] == old[key], key
