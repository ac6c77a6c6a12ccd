"""Package boundaries: what the base install (numpy, scikit-learn, scipy) runs, and the
install hint each optional part gives when its extra is missing."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ncp_search.app import cli

tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads pyproject.toml")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
EXTRAS = PYPROJECT["project"]["optional-dependencies"]

# Everything a Python process may import that the base install does not provide.
NOT_IN_BASE = ("tensorflow", "keras", "optuna", "ray", "matplotlib", "yaml", "sqlalchemy",
               "psycopg2")

# Runs in a fresh interpreter in which the modules above cannot be imported, as after
# `pip install ncp-search` alone.
BASE_ONLY = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
"""


def _base_only(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BASE_ONLY + code, ",".join(NOT_IN_BASE)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_the_base_dependencies_are_numpy_scikit_learn_and_scipy():
    names = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0] for d in PYPROJECT["project"]["dependencies"]}
    assert names == {"numpy", "scikit-learn", "scipy"}


def test_the_core_runs_on_the_base_install():
    done = _base_only("""
import ncp_search
from ncp_search import AccuracyPredictor, Decision, TrialHistory, predict_final
from ncp_search.core import history, predictors, regression, rules

trial = TrialHistory.from_reports({1: 0.5, 2: 0.6, 3: 0.65, 4: 0.68},
                                  series={"beta_eff": {1: 4.0, 2: 3.0, 3: 2.5, 4: 2.2}})
for name in ["best", "pow3", "ncp_raw"]:  # numpy, scipy's curve_fit, BayesianRidge
    print(name, predict_final(name, trial, horizon=10))
print(AccuracyPredictor().fit([4.1, 3.0, 2.2], [0.61, 0.70, 0.74]).predict_final().mean)
print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
""")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("name, extra", [
    ("attach_probe", "keras"),
    ("beta_eff", "keras"),
    ("BetaEffLogger", "keras"),
    ("NCPPruner", "optuna"),
    ("NCPCallback", "optuna"),
    ("report_beta_eff", "optuna"),
    ("NCPScheduler", "ray"),
    ("report_beta_eff_to_tune", "ray"),
])
def test_an_optional_part_names_its_extra_when_missing(name, extra):
    done = _base_only(f"""
import ncp_search
try:
    getattr(ncp_search, {name!r})
except ImportError as error:
    print(error)
else:
    print("imported")
""")
    assert done.returncode == 0, done.stderr
    assert f"pip install 'ncp-search[{extra}]'" in done.stdout, done.stdout


def test_every_install_hint_names_an_extra_that_exists():
    hints = []
    for path in sorted((ROOT / "ncp_search").rglob("*.py")):
        hints += [(path.name, h) for h in re.findall(r"pip install ([^\s\"`)]+)",
                                                   path.read_text(encoding="utf-8"))]
    assert hints
    for name, hint in hints:
        match = re.fullmatch(r"'ncp-search\[(\w+)\]'", hint)
        assert match, f"{name}: {hint} is not an extra of ncp-search"
        assert match.group(1) in EXTRAS, f"{name}: no extra {match.group(1)!r}"


def test_the_app_extra_installs_what_the_cli_checks_for():
    app = " ".join(EXTRAS["app"] + EXTRAS["keras"] + EXTRAS["optuna"])
    for distribution in cli.APP_MODULES.values():
        assert distribution in app, distribution
    assert "ncp-search[keras,optuna]" in app


def test_the_cli_without_an_app_dependency_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert cli.main(["report", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("ncp-search: error: the command line needs matplotlib, which is "
                            "not installed: pip install 'ncp-search[app]'\n")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit) as exit_info:  # --help needs none of them
        cli.main(["--help"])
    assert exit_info.value.code == 0


def test_the_cli_on_the_base_install_names_the_app_extra():
    done = _base_only("""
from ncp_search.app.cli import main
sys.exit(main(["sweep", "configs/quick.yaml"]))
""")
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "ncp-search: error: the command line needs tensorflow, keras, optuna, matplotlib, "
        "pyyaml, which are not installed: pip install 'ncp-search[app]'"]
