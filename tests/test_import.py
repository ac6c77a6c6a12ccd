"""Importing ncp_search is silent and cheap: no TensorFlow, Optuna or Ray, no env changes."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os, sys
before = dict(os.environ)
import ncp_search
heavy = [m for m in ("tensorflow", "keras", "optuna", "ray") if m in sys.modules]
assert not heavy, heavy
assert dict(os.environ) == before, "environment changed"
print("OK", ncp_search.__version__)
"""


def test_import_is_silent_and_light():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK ")
    assert done.stderr == ""
