"""The ncp-search command line: its subcommands, demo (the README's main job), examples,
errors."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import ncp_search.app.cli as cli
from ncp_search.app.demo import distrust_reasons

ROOT = Path(__file__).parents[2]


def test_product_subcommands():
    # Research tooling (record, bench) lives in ``python -m research``, not in the product.
    parser = cli.build_parser()
    (commands,) = [a.choices for a in parser._actions if a.dest == "command"]
    assert sorted(commands) == ["demo", "report", "sweep", "zoo"]


# What TensorFlow 2.21 prints on start-up on a CPU machine, whatever TF_CPP_MIN_LOG_LEVEL says.
NATIVE = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796125544.665569    6919 port.cc:153] oneDNN custom operations are on.",
    b"I0000 00:00:1796125544.665901    6919 cudart_stub.cc:31] Could not find cuda drivers on "
    b"your machine, GPU will not be used.",
    b"E0000 00:00:1796125559.473469    6919 cuda_platform.cc:52] failed call to cuInit: "
    b"INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    b"(Trainable pid=4242, ip=10.0.0.1) I0000 00:00:1.5    12 port.cc:153] oneDNN",
]
KEPT = [b"INFO ncp_search.app.zoo: zoo: training mlp",
        b"E0000 00:00:1.5    12 op_kernel.cc:1857] OP_REQUIRES failed: real trouble",
        b"F0000 00:00:1.5    12 a.cc:1] Check failed: fatal"]


def _noisy(args):
    """A subcommand that prints like TensorFlow does: native lines on fd 2 from this
    process and from a child, and a Keras-attributed Python warning."""
    os.write(2, b"\n".join(NATIVE[:2] + KEPT[:1]) + b"\n")
    child = "import os, sys; os.write(2, sys.argv[1].encode() + b'\\n')"
    subprocess.run([sys.executable, "-c", child, NATIVE[3].decode()], check=True)
    subprocess.run([sys.executable, "-c", child, KEPT[1].decode()], check=True)
    os.write(2, b"\n".join(NATIVE[2:3] + NATIVE[4:] + KEPT[2:]) + b"\n")
    warnings.warn_explicit("Do not pass an input_shape", UserWarning, "sequential.py", 1,
                           module="keras.src.models.sequential")
    return 0


def test_tensorflow_start_up_lines_hidden_by_default(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.run_command(argparse.Namespace(verbose=False, func=_noisy), "x") == 0
    err = capfd.readouterr().err.encode()
    assert err.splitlines() == KEPT  # in order, nothing else
    assert not [w for w in caught if "input_shape" in str(w.message)]


def test_verbose_shows_tensorflow_start_up_lines(capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli.run_command(argparse.Namespace(verbose=True, func=_noisy), "x") == 0
    err = capfd.readouterr().err.encode()
    for line in NATIVE + KEPT:
        assert line in err
    assert [w for w in caught if "input_shape" in str(w.message)]


def test_verbose_before_or_after_the_subcommand():
    parse = cli.build_parser().parse_args
    assert parse(["demo"]).verbose is False
    assert parse(["-v", "demo"]).verbose is True
    assert parse(["demo", "--verbose"]).verbose is True
    assert parse(["report", "out", "-v"]).verbose is True
    assert parse(["sweep", "c.yaml", "--verbose"]).verbose is True


def _err_within(capfd, expected: str, seconds: float = 10.0) -> str:
    """What reaches stderr, read until it is ``expected`` or ``seconds`` pass."""
    got = ""
    end = time.monotonic() + seconds
    while got != expected and time.monotonic() < end:
        time.sleep(0.05)
        got += capfd.readouterr().err
    return got


def test_filter_passes_partial_lines_at_once(capfd):
    with cli.NativeLogFilter():
        os.write(2, b"\r[####......] 1/4 trials")  # a progress line: no newline
        assert _err_within(capfd, "\r[####......] 1/4 trials") == "\r[####......] 1/4 trials"
        os.write(2, b"Epoch 1")  # could start a log line: held 0.2 s, then passed
        assert _err_within(capfd, "Epoch 1") == "Epoch 1"
    assert capfd.readouterr().err == ""


def test_demo_flags_predictions_not_to_be_trusted():
    # The README's example: a line through two points, read far from them.
    assert distrust_reasons([5.0, 4.0], [0.40, 0.60], 1.4) == [
        "from 2 epochs only", "outside [0, 1]: not an accuracy",
        "beta_eff = 0 is 4.0x the observed range away"]
    assert distrust_reasons([-0.6, -0.3], [0.82, 0.96], -2.48)[1] == \
        "outside [0, 1]: not an accuracy"
    assert distrust_reasons([0.8, 0.6, 0.4, 0.2], [0.6, 0.7, 0.8, 0.9], 1.0) == []
    assert distrust_reasons([2.0, 2.0, 2.0, 2.0], [0.6, 0.7, 0.8, 0.9], 0.8) == [
        "beta_eff did not vary"]
    assert distrust_reasons([0.8, float("nan"), 0.4, 0.2, 0.1], [0.6, 0.7, 0.8, 0.9, 0.9],
                            0.95) == []  # NaN epochs skipped: 4 points left


@pytest.mark.slow
def test_demo_explains_its_numbers_and_keeps_stderr_clean(tmp_path):
    out = tmp_path / "demo.json"
    done = subprocess.run(
        [sys.executable, "-m", "ncp_search.app.cli", "demo", "--epochs", "3", "--observe",
         "2", "--source-model", "mlp", "--cache-dir", str(tmp_path / "zoo"), "--json",
         str(out)], capture_output=True, text=True, timeout=600,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout
    assert "beta_eff" in printed and "predicted final" in printed
    assert "predicted final = h(0)" in printed and "+- is its predictive std" in printed
    assert "not to be trusted: from 2 epochs only" in printed
    # TensorFlow's start-up lines (absl banner, oneDNN, CUDA) stay hidden.
    assert not re.search(r"absl::InitializeLog|oneDNN|cuda|^[IW]\d{4} ", done.stderr,
                         re.MULTILINE), done.stderr[-2000:]
    summary = json.loads(out.read_text())
    assert [r["epoch"] for r in summary["records"]] == [1, 2, 3]
    assert all(isinstance(r["beta_eff"], float) for r in summary["records"])
    assert summary["records"][0]["predicted_final"] is None  # needs two observations
    assert isinstance(summary["predicted_final_after_observe"], float)
    assert summary["trusted_after_observe"] is False
    assert "from 2 epochs only" in summary["distrust_after_observe"]


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
