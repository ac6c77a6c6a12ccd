"""The research command line: ``python -m research`` lists record and the benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import research.cli as cli

ROOT = Path(__file__).parents[2]


def _subcommands(parser):
    (action,) = [a for a in parser._actions if a.dest in ("command", "bench")]
    return action.choices


def test_subcommands():
    commands = _subcommands(cli.build_parser())
    assert sorted(commands) == ["bench", "record", "taskset"]
    assert sorted(_subcommands(commands["bench"])) == ["budget", "optuna", "pausing", "predict",
                                                           "sampler"]


def test_python_m_research_help_runs_from_the_repository_root():
    done = subprocess.run([sys.executable, "-m", "research", "bench", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m research bench")
    assert "predict" in done.stdout and "sampler" in done.stdout


def test_missing_table_is_a_clean_error(tmp_path, capsys):
    assert cli.main(["bench", "predict", "--table", str(tmp_path / "none.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m research: error: ")
    assert "record some with `python -m research record`" in err


def test_record_requires_a_config():
    with pytest.raises(SystemExit):
        cli.main(["record"])
