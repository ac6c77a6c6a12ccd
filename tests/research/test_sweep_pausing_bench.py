"""``benchmarks/sweep_pausing.py`` runs a config as the user's file has it."""

from __future__ import annotations

import importlib.util
import json
import os
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
    seen: dict[str, Any] = {}

    def run(command: list[str], **kwargs: Any) -> Any:  # measure() hands it to its child
        seen.update(kwargs)
        return subprocess.CompletedProcess(command, 0, stdout='{"seconds": 1.0}\n',
                                           stderr="")

    monkeypatch.setattr(module.subprocess, "run", run)
    assert module.measure("hvp", 16, 1, 60.0) == {"seconds": 1.0}
    assert seen["env"]["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)


def test_the_machines_speed_per_row_is_taken_on_the_same_configurations(monkeypatch) -> None:
    bench = _bench(monkeypatch)

    def row(name: str, steady: dict[str, list[float]]) -> Any:
        return bench.Row(name, {}, 0.0, 0.0, 0.0, 0, 0.0, 0, 0, steady)

    nop = row("nop", {"a": [1.0, 1.0, 1.2], "b": [2.0, 2.0], "c": [3.0], "d": []})
    # b ran 1.5x slower, a 1.2x; c is not in this row, d trained no steady epoch
    busy = row("ncp", {"a": [1.2, 1.2], "b": [3.0], "d": [9.0], "e": [5.0]})
    factor, shared = bench.speed(busy, nop)
    assert shared == 2 and abs(factor - (1.2 + 1.5) / 2) < 1e-12
    assert bench.speed(row("x", {"e": [1.0]}), nop)[1] == 0
    assert bench.speed(nop, nop) == (1.0, 3)
