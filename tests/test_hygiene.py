"""The test suite's own rules: shared code lives in helper modules and conftest.py, tests
that start real Ray are marked slow, and the project cites no file outside itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"


def _test_modules() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def _imported_modules(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_no_test_module_imports_another_test_module():
    offenders = []
    for path in _test_modules():
        for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            if name.startswith("tests.") and name.rsplit(".", 1)[-1].startswith("test_"):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "move shared helpers to a helper module or tests/conftest.py: " + (
        "; ".join(offenders))


def _is_slow(decorators: list[ast.expr]) -> bool:
    return any("mark.slow" in ast.unparse(d) for d in decorators)


def _starts_ray(node: ast.AST) -> bool:
    """Calls ``ray.init``, or builds or restores a ``Tuner`` (whose ``fit`` starts Ray)."""
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        text = ast.unparse(call.func)
        if text in ("ray.init", "Tuner", "Tuner.restore") or text.endswith(
            (".Tuner", ".Tuner.restore")
        ):
            return True
    return False


def _tests_that_start_ray_unmarked(source: str) -> list[str]:
    tree = ast.parse(source)
    if any(
        isinstance(n, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)
        and "mark.slow" in ast.unparse(n.value)
        for n in tree.body
    ):
        return []
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    starts: dict[str, bool] = {"ray_session": True}  # the fixture in tests/conftest.py

    def starts_ray(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in starts:
            return starts[name]
        node = functions.get(name)
        if node is None or name in seen:
            return False
        requested = [a.arg for a in node.args.args]
        called = [c.func.id for c in ast.walk(node)
                  if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)]
        result = _starts_ray(node) or any(
            starts_ray(other, seen | {name}) for other in requested + called
        )
        starts[name] = result
        return result

    return [name for name, node in functions.items()
            if name.startswith("test_") and not _is_slow(node.decorator_list)
            and starts_ray(name)]


def test_the_checker_finds_an_unmarked_ray_test():
    source = '''
import pytest

@pytest.fixture(scope="module")
def replayed(ray_session):
    return 1

def helper():
    ray.init(num_cpus=2)

def test_through_a_fixture(replayed):
    pass

def test_through_a_helper():
    helper()

def test_tuner(tmp_path):
    tune.Tuner(trainable).fit()

@pytest.mark.slow
def test_marked(ray_session):
    pass

def test_plain():
    pass
'''
    assert _tests_that_start_ray_unmarked(source) == [
        "test_through_a_fixture", "test_through_a_helper", "test_tuner"]


def test_tests_that_start_real_ray_are_marked_slow():
    offenders = [f"{path.relative_to(ROOT)}::{name}" for path in _test_modules()
                 for name in _tests_that_start_ray_unmarked(path.read_text(encoding="utf-8"))]
    assert not offenders, f"start real Ray but are not marked @pytest.mark.slow: {offenders}"


def test_the_project_cites_no_file_outside_itself():
    needles = ("METHOD" + ".md", "../" + "shared")
    offenders = []
    for folder in ("ncp_search", "research", "benchmarks", "docs", "examples", "tests",
                   "configs", ".ci"):
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix not in {".py", ".md", ".sh", ".yaml", ".txt",
                                                         ".toml", ""}:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in needles if n in text]
    for name in ("README.md", "pyproject.toml"):
        text = (ROOT / name).read_text(encoding="utf-8")
        offenders += [f"{name}: {n}" for n in needles if n in text]
    assert not offenders, offenders
