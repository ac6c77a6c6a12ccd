"""``benchmarks/sweep_pausing.py`` runs a config as the user's file has it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _bench(monkeypatch: Any) -> Any:
    spec = importlib.util.spec_from_file_location(
        "sweep_pausing_bench", ROOT / "benchmarks" / "sweep_pausing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # for its dataclasses
    spec.loader.exec_module(module)
    return module


def test_each_row_keeps_the_search_space_keys_in_the_configs_order(tmp_path, monkeypatch) -> None:
    # the order of search_space's keys draws the configurations: a row whose keys were
    # sorted sampled other trials than `ncp-search sweep` of the same file
    bench = _bench(monkeypatch)
    config = yaml.safe_load((ROOT / "configs" / "pause.yaml").read_text(encoding="utf-8"))
    order = list(config["search_space"])
    assert order != sorted(order)  # else this test could not tell
    written: dict[str, Any] = {}

    def run(command: list[str], **_: Any) -> None:
        path = Path(command[command.index("sweep") + 1])
        written["text"] = path.read_text(encoding="utf-8")
        output = Path(yaml.safe_load(written["text"])["output"])
        output.mkdir(parents=True)
        (output / "summary.json").write_text(json.dumps({"epochs_used": 1}))

    monkeypatch.setattr(bench.subprocess, "run", run)
    summary, _, _ = bench.sweep(config, tmp_path, "ncp")
    assert summary == {"epochs_used": 1}
    assert list(yaml.safe_load(written["text"])["search_space"]) == order


def test_the_beta_eff_scaling_benchmark_runs_its_children_as_documented(tmp_path,
                                                                        monkeypatch) -> None:
    # `python benchmarks/beta_eff_scaling.py` (as docs/benchmarks.md runs it) started
    # children that could not import tests.reference: every row read "exit 1"
    spec = importlib.util.spec_from_file_location(
        "beta_eff_scaling_bench", ROOT / "benchmarks" / "beta_eff_scaling.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.chdir(tmp_path)
    import subprocess

    found = subprocess.run([sys.executable, "-c", "import tests.reference"],
                           env=module.child_env(), capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
