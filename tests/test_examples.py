"""The own-model examples run on their smallest setting, and the documented snippets are
exactly their code (docs/own-model.md; README.md too where it has that section)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLES = {"own_model_optuna": ROOT / "examples" / "own_model_optuna.py",
            "own_model_ray": ROOT / "examples" / "own_model_ray.py"}
HEADING = "# Your own model"  # the page's title, or a README section


def snippet(name: str) -> str:
    text = EXAMPLES[name].read_text()
    found = re.search(rf"# \[snippet: {name}\]\n(.*?)# \[end snippet\]\n", text, re.S)
    assert found, f"no snippet markers for {name!r} in {EXAMPLES[name]}"
    return found.group(1).strip("\n")


def code_blocks(markdown: str) -> list[str]:
    return [block.strip("\n") for block in re.findall(r"```python\n(.*?)```", markdown, re.S)]


def documents() -> list[Path]:
    candidates = [ROOT / "README.md", ROOT / "docs" / "own-model.md"]
    return [path for path in candidates if path.is_file() and HEADING in path.read_text()]


def test_the_own_model_section_exists_somewhere():
    assert documents(), f"no document has the {HEADING!r} section"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_documented_snippets_are_the_examples_code(name):
    code = snippet(name)
    for path in documents():
        blocks = code_blocks(path.read_text())
        assert any(code in block for block in blocks), (
            f"{path.relative_to(ROOT)} does not show the code of {EXAMPLES[name].name} "
            f"between its snippet markers; copy it from there.")


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(EXAMPLES[name]), *args], capture_output=True,
                          text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_own_model_optuna_example_runs():
    done = run_example("own_model_optuna", "--trials", "3", "--epochs", "2")
    assert re.search(r"^3 trials, \d+ pruned; best val_accuracy 0\.\d+", done.stdout, re.M)
    # the one-time line naming what decides
    assert "NCPPruner decides with rule='asha'" in done.stderr
    assert "does not use beta_eff" in done.stderr


@pytest.mark.slow
def test_own_model_ray_example_runs():
    done = run_example("own_model_ray", "--trials", "2", "--epochs", "2")
    assert re.search(r"^2 trials, \d+ stopped early; best val_accuracy 0\.\d+.*beta_eff "
                     r"reported: -?[\d.e+-]+$", done.stdout, re.M), done.stdout[-2000:]
