"""The ncp-search command line: its subcommands, demo (the README's main job), examples,
errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ncp_search.app.cli as cli

ROOT = Path(__file__).parents[2]


def test_product_subcommands():
    # Research tooling (record, bench) lives in ``python -m research``, not in the product.
    parser = cli.build_parser()
    (commands,) = [a.choices for a in parser._actions if a.dest == "command"]
    assert sorted(commands) == ["demo", "report", "sweep", "zoo"]


@pytest.mark.slow
def test_demo_prints_beta_eff_and_prediction(tmp_path, capsys):
    out = tmp_path / "demo.json"
    code = cli.main(["demo", "--epochs", "3", "--observe", "2", "--source-model", "mlp",
                     "--cache-dir", str(tmp_path / "zoo"), "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "beta_eff" in printed and "predicted final" in printed
    summary = json.loads(out.read_text())
    assert [r["epoch"] for r in summary["records"]] == [1, 2, 3]
    assert all(isinstance(r["beta_eff"], float) for r in summary["records"])
    assert summary["records"][0]["predicted_final"] is None  # needs two observations
    assert isinstance(summary["predicted_final_after_observe"], float)


def test_demo_rejects_bad_epochs(capsys):
    assert cli.main(["demo", "--epochs", "3", "--observe", "5"]) == 2
    assert "observe" in capsys.readouterr().err


def test_unknown_zoo_model_is_a_clean_error(capsys):
    assert cli.main(["demo", "--source-model", "vgg16"]) == 2
    assert "available" in capsys.readouterr().err


def test_bad_hidden_argument():
    with pytest.raises(SystemExit):
        cli.main(["demo", "--hidden", "64,x"])


@pytest.mark.slow
def test_engine_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "engine_quickstart.py"), "--epochs", "2",
         "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "predicted final accuracy h(0)" in done.stdout


@pytest.mark.slow
def test_optuna_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "optuna_digits.py"), "--trials", "7",
         "--epochs", "4", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "7 trials" in done.stdout and "best" in done.stdout


@pytest.mark.slow
def test_ray_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ray_digits.py"), "--trials", "3",
         "--epochs", "3", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 trials" in done.stdout and "best val_accuracy" in done.stdout


@pytest.mark.slow
def test_cli_sweep_example_runs(tmp_path):
    # The smallest setting of the README's main job: 2 trials x 2 epochs of configs/quick.yaml.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", str(ROOT / "examples" / "cli_sweep.sh"), str(ROOT / "configs" / "quick.yaml"),
         str(tmp_path / "out"), "--trials", "2", "--epochs", "2", "--cache-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "best: trial" in done.stdout
    assert (tmp_path / "out" / "report.html").is_file()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["complete"] + summary["pruned"] == 2
