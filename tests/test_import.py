"""Importing ncp_search is silent and cheap: no TensorFlow, Optuna or Ray, no env changes;
``ncp-search --help`` imports none of the heavy frameworks either."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Modules that must not come in with ``import ncp_search`` (sklearn and scipy are
# imported lazily, inside the functions that fit or test).
HEAVY = ("sklearn", "tensorflow", "keras", "optuna", "ray", "matplotlib", "scipy")
# Modules the product CLI may import only inside its subcommand functions.
CLI_HEAVY = ("tensorflow", "keras", "optuna", "ray", "sklearn")

SILENT = """
import os, sys
before = dict(os.environ)
import ncp_search
assert dict(os.environ) == before, "environment changed"
print("OK", ncp_search.__version__)
"""

LIGHT = """
import sys
import ncp_search
print(" ".join(m for m in {heavy!r} if m in sys.modules))
"""

CLI_HELP = """
import contextlib, io, sys
from ncp_search.app.cli import main
out = io.StringIO()
try:
    with contextlib.redirect_stdout(out):
        main({argv!r})
except SystemExit as stop:
    code = stop.code
else:
    code = "no SystemExit"
assert code == 0, code
assert out.getvalue().startswith("usage: ncp-search"), out.getvalue()
print(" ".join(m for m in {heavy!r} if m in sys.modules))
"""


def _run(script: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def test_import_is_silent():
    done = _run(SILENT)
    assert done.stdout.startswith("OK ")
    assert done.stderr == ""


def test_import_is_light():
    imported = _run(LIGHT.format(heavy=HEAVY)).stdout.split()
    assert imported == [], f"`import ncp_search` imported {imported}"


@pytest.mark.parametrize("argv", [["--help"], ["sweep", "--help"]], ids=["help", "sweep-help"])
def test_cli_help_exits_0_without_heavy_imports(argv):
    imported = _run(CLI_HELP.format(argv=argv, heavy=CLI_HEAVY)).stdout.split()
    assert imported == [], f"`ncp-search {' '.join(argv)}` imported {imported}"
