"""The one table of pruner and scheduler names: what each name builds, accepts and is
called, and that the config, the report and the research replays read it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ncp_search.integrations import registry
from ncp_search.integrations.registry import PRUNERS, SCHEDULERS, SETTINGS


def test_ncp_means_asha_on_both_hosts_and_ncp_percentile_the_percentile_rule() -> None:
    for host in registry.HOSTS:
        assert registry.ncp_rule(host, "ncp") == "asha"
        assert registry.ncp_rule(host, "ncp_percentile") == "percentile"
        assert registry.ncp_names(host, "percentile") == ["ncp_percentile"]
    assert registry.ncp_rule(registry.RAY, "ncp_asha") == "asha"  # its name before 0.2
    assert registry.ncp_rule(registry.OPTUNA, "median") is None


def test_every_default_passes_its_own_bound() -> None:
    for setting in SETTINGS.values():
        assert setting.check(setting.default), setting.name
    for entry in (*PRUNERS.values(), *SCHEDULERS.values()):
        assert set(entry.settings) <= set(SETTINGS), entry.name
        assert entry.complete({}) == entry.defaults()


@pytest.mark.parametrize("name", list(PRUNERS))
def test_every_pruner_name_builds_its_optuna_class(name: str) -> None:
    entry = PRUNERS[name]
    if entry.rule == "pause":  # the policy the sweep's ask-and-tell driver follows
        policy = entry.make(entry.defaults(), 6, n_trials=8)
        assert type(policy).__name__ == "PausingPolicy" and policy.n_trials == 8
        return
    pruner = entry.make(entry.defaults(), 6)
    expected = "NCPPruner" if entry.is_ncp else entry.label.split("'s ")[-1].rstrip(")")
    assert type(pruner).__name__ == expected
    if entry.is_ncp:  # built through NCPPruner's public keyword arguments
        settings = pruner.settings()
        assert (settings["rule"], settings["predictor"]) == (entry.rule, "best")


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_name_builds_its_tune_class(name: str, tmp_path) -> None:
    pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")
    entry = SCHEDULERS[name]
    scheduler = entry.make(entry.defaults(), 6, tmp_path / "state.jsonl", n_trials=8)
    expected = "NCPScheduler" if entry.is_ncp else entry.label.split("'s ")[-1].rstrip(")")
    assert type(scheduler).__name__ == expected
    if entry.is_ncp:
        assert scheduler.settings()["rule"] == entry.rule


def test_unknown_names_get_the_closest_known_one() -> None:
    with pytest.raises(ValueError, match=r"pruner must be one of .*'medain'; did you mean "
                       r"'median'\?"):
        registry.get(registry.OPTUNA, "medain")
    with pytest.raises(ValueError, match="host must be one of"):
        registry.get("dask", "ncp")


def test_describe_lists_the_settings_the_name_reads() -> None:
    assert PRUNERS["ncp"].describe({"predictor": "pow3", "percentile": 10}) == (
        "ncp (predictor=pow3, reduction_factor=3)")
    assert SCHEDULERS["fifo"].describe({"grace_period": 3}) == "fifo"


def test_a_score_or_an_unfed_predictor_is_refused_with_the_reason() -> None:
    check = SETTINGS["predictor"]
    assert check.check("best") and not check.check("tse")
    assert not check.check("ncp_two_batch")
    assert "beta_eff_batch2" in check.problem("ncp_two_batch")
    assert check.problem("no_such_predictor") == ""  # the generic message says it


def test_the_config_accepts_exactly_the_registry_settings() -> None:
    from ncp_search.app.sweep.config import ConfigError, validate_sweep_config

    base = {"name": "r", "data": {"target": "digits:5-9"},
            "source": {"zoo": "mlp", "task": "digits:0-4"},
            "search_space": {"learning_rate": 0.01}, "budget": {"trials": 20, "epochs": 6}}
    for host, table in registry.HOSTS.items():
        section = registry.SECTIONS[host]
        for name, entry in table.items():
            config = validate_sweep_config({**base, "backend": host, section: {"name": name}})
            assert config.choice.entry is entry
            assert dict(config.choice.settings) == entry.defaults()
            others = sorted(set(SETTINGS) - set(entry.settings))
            if others:
                with pytest.raises(ConfigError, match=rf"{section}\.{others[0]}: "):
                    validate_sweep_config({**base, "backend": host,
                                           section: {"name": name, others[0]: 1}})


def test_the_report_reads_labels_and_rules_from_the_registry() -> None:
    from ncp_search.app.report.decider import describe

    for host, table in registry.HOSTS.items():
        for name, entry in table.items():
            meta = {"backend": host, "config": {registry.SECTIONS[host]: {
                "name": name, "rule": entry.rule, **entry.defaults()}}}
            decider = describe(meta)
            assert (decider.host, decider.rule, decider.stops) == (
                entry.label, entry.rule, entry.stops)


def test_importing_the_registry_imports_no_host() -> None:
    code = ("import sys; import ncp_search.integrations.registry; "
            "print([m for m in ('optuna', 'ray') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_research_replays_use_the_registry_names() -> None:
    from research import budget_bench, optuna_replay

    research_only = {"patient"}  # PatientPruner: a research baseline, not a sweep choice
    assert set(optuna_replay.BUILT_IN) - research_only <= set(PRUNERS)
    assert budget_bench.ncp_rule(budget_bench.parse_spec(budget_bench.TODAY)) == "percentile"
    assert all(budget_bench.ncp_rule(budget_bench.parse_spec(name)) == "asha"
               for name in budget_bench.NCP if name != budget_bench.TODAY)
    pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")
    from research import ray_replay

    assert set(ray_replay.BUILT_IN) <= set(SCHEDULERS)
