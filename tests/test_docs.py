"""The documentation cannot drift: every code block of README.md and the site's pages runs.

- Every fenced ``python`` block of README.md and docs/*.md is executed, each in a fresh
  interpreter in an empty folder (small settings: scikit-learn's digits, seconds on 2 CPU
  cores, no download). A block preceded by ``<!-- slow: reason -->`` runs in a test marked
  ``slow`` (it starts Ray); one preceded by ``<!-- skip: reason -->`` is not run here, and
  the reason must name the test that runs the same code. Skips are listed in SKIPPED below,
  so a new one fails this module until it is added there: none is silent.
- Every command of a ``bash`` block (README.md, docs/*.md and docs/*/*.md) names a real
  ``ncp-search`` / ``python -m research`` subcommand and options, a script or module of
  the repository with the options it parses, an extra of pyproject.toml, or a file of the
  repository.
- The architecture page names only paths that exist, and every package folder.
- The two set-up commands of the README are those .ci/run runs.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
EXCLUDED = {"drafts", "_ext"}  # not part of the site (mkdocs.yml: exclude_docs)
# Top-level pages whose python blocks run; docs/*/*.md are the benchmarks' own notes.
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
NOTES = sorted(p for p in DOCS.glob("*/*.md") if p.parent.name not in EXCLUDED)

# Every block that is not executed here, by page and the first words of its reason.
SKIPPED = {
    ("docs/own-model.md", "the same code runs as examples/own_model_optuna.py"),
    ("docs/own-model.md", "the same code runs as examples/own_model_ray.py"),
}
# Python blocks of the benchmarks' notes that cannot run here, and why.
NOT_RUN_IN_NOTES = {
    "docs/ray/cluster.md": "needs a Ray cluster with shared storage (a real cluster is "
                           "tested by tests/integrations/test_ray_cluster.py)",
}
# Programs a bash block may name beside the repository's own.
EXTERNAL = {"cd", "ray", "export", "mkdocs", "chromium", "open", "kill"}
REPO_DIRS = ("configs/", "examples/", "benchmarks/", "docs/", "research/", "tests/",
             "ncp_search/", ".ci/")

FENCE = re.compile(r"^(?P<marker><!--\s*(?P<kind>skip|slow):\s*(?P<reason>.*?)\s*-->\n)?"
                   r"```(?P<lang>[\w-]*)\n(?P<code>.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    kind: str | None  # None (run), "slow" or "skip"
    reason: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start("lang")) + 1
        found.append(Block(str(path.relative_to(ROOT)), line, match["lang"], match["code"],
                           match["kind"], match["reason"] or ""))
    return found


def python_blocks(kind: str | None) -> list[Block]:
    """The python blocks of the pages with this marker; a block whose code another page
    already shows (README.md quotes the guides) is run once, at its first place."""
    found, seen = [], set()
    for page in PAGES:
        for block in blocks(page):
            if block.lang == "python" and block.kind == kind and block.code not in seen:
                seen.add(block.code)
                found.append(block)
    return found


def run_block(block: Block, tmp_path: Path, timeout: int) -> None:
    script = tmp_path / "block.py"
    script.write_text(block.code, encoding="utf-8")
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(tmp_path / ".keras")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"the python block at {block.id} failed (exit {done.returncode}):\n"
        f"{done.stderr[-3000:]}")


def test_there_are_blocks_to_run():
    assert len(python_blocks(None)) >= 4
    assert python_blocks("slow")


@pytest.mark.parametrize("block", python_blocks(None), ids=lambda b: b.id)
def test_python_block_runs(block, tmp_path):
    run_block(block, tmp_path, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("block", python_blocks("slow"), ids=lambda b: b.id)
def test_slow_python_block_runs(block, tmp_path):
    run_block(block, tmp_path, timeout=900)


def test_every_skipped_block_is_listed_with_a_reason():
    skipped = python_blocks("skip")
    listed = set()
    for block in skipped:
        match = [key for key in SKIPPED
                 if key[0] == block.page and block.reason.startswith(key[1])]
        assert match, (f"{block.id} is skipped ({block.reason!r}) but not listed in "
                       "tests/test_docs.py SKIPPED; list it there, or let it run.")
        listed.update(match)
        assert "tests/" in block.reason, (
            f"{block.id}: a skip must name the test that runs the same code, "
            f"but got {block.reason!r}.")
    assert listed == SKIPPED, f"listed but not skipped any more: {SKIPPED - listed}"


def test_markers_sit_on_python_blocks_only():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        marked = len(re.findall(r"<!--\s*(?:skip|slow):", text))
        honoured = sum(1 for b in blocks(page) if b.kind and b.lang == "python")
        assert marked == honoured, (
            f"{page.relative_to(ROOT)}: {marked} skip/slow markers but {honoured} python "
            "blocks right below one; put each marker on the line just above the fence.")


def test_python_blocks_of_the_notes_are_accounted_for():
    for page in NOTES:
        name = str(page.relative_to(ROOT))
        if any(b.lang == "python" for b in blocks(page)):
            assert name in NOT_RUN_IN_NOTES, (
                f"{name} has python blocks that no test runs; run them from "
                "tests/test_docs.py or say in NOT_RUN_IN_NOTES why they cannot run.")


# --- bash blocks -----------------------------------------------------------------


def commands(code: str) -> list[list[str]]:
    """The commands of a bash block as argument lists: continuations joined, comments
    dropped, split at ``&&``, ``||``, ``;`` and ``|`` outside quotes."""
    found: list[list[str]] = []
    for line in re.sub(r"\\\n\s*", " ", code).splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in lexer:
            if set(token) <= set(";&|"):
                found.append(current)
                current = []
            else:
                current.append(token)
        found.append(current)
    return [command for command in found if command]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser] | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return None


def check_options(parser: argparse.ArgumentParser, args: list[str], where: str) -> None:
    options = set(parser._option_string_actions)
    for arg in args:
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]
            assert option in options, (
                f"{where}: {parser.prog} has no option {option}; it has "
                f"{sorted(o for o in options if o.startswith('--'))}.")


def check_argparse(parser: argparse.ArgumentParser, args: list[str], where: str) -> None:
    """Each subcommand level names a real subcommand, and every ``--option`` belongs to
    the parser at its level."""
    while (choices := subcommands(parser)) is not None:
        index = next((i for i, arg in enumerate(args) if not arg.startswith("-")), None)
        named = args[index] if index is not None else None
        assert named in choices, (
            f"{where}: no subcommand {named!r} in {parser.prog!r}; it has {sorted(choices)}.")
        check_options(parser, args[:index], where)
        parser, args = choices[named], args[index + 1:]
    check_options(parser, args, where)


def check_paths(tokens: list[str], where: str) -> None:
    for token in tokens:
        value = token.split("=", 1)[1] if "=" in token and not token.startswith("-") else token
        if value.startswith(REPO_DIRS) and "<" not in value:
            assert glob.glob(str(ROOT / value)), f"{where}: no file {value} in the repository"


def check_script(path: str, args: list[str], where: str) -> None:
    script = ROOT / path
    assert script.is_file(), f"{where}: no script {path} in the repository"
    text = script.read_text(encoding="utf-8")
    for arg in args:
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]
            assert f'"{option}"' in text or f"'{option}'" in text, (
                f"{where}: {path} does not parse {option}")


def check_command(command: str, where: str) -> None:
    for tokens in commands(command):
        check_tokens(tokens, where)


def optional_dependencies() -> set[str]:
    """The extras of pyproject.toml (read by hand: tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^([\w-]+)\s*=", section, re.M))


def check_tokens(tokens: list[str], where: str) -> None:
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        check_paths([tokens[0]], where)
        tokens = tokens[1:]
    while tokens and tokens[0] in ("nice", "time", "timeout"):
        tokens = tokens[3:] if tokens[:2] == ["nice", "-n"] else tokens[1:]
        if tokens and tokens[0].isdigit():  # timeout SECONDS
            tokens = tokens[1:]
    assert tokens, f"{where}: an environment assignment with no command"
    program, args = tokens[0], tokens[1:]
    check_paths(args, where)
    if program == "ncp-search":
        from ncp_search.app.cli import build_parser

        check_argparse(build_parser(), args, where)
    elif program in ("python", "python3"):
        if args[:1] == ["-m"]:
            module = args[1]
            if module == "research":
                from research.cli import build_parser as research_parser

                check_argparse(research_parser(), args[2:], where)
            elif module == "pytest":
                pass
            else:
                assert importlib.util.find_spec(module) is not None, (
                    f"{where}: no module {module}")
        elif args[:1] != ["-c"]:
            check_script(args[0], args[1:], where)
    elif program == "bash":
        check_script(args[0], args[1:], where)
    elif program == "pip":
        extras = optional_dependencies()
        for arg in args:
            for named in re.findall(r"\[([\w,-]+)\]", arg):
                if arg.startswith((".", "ncp-search")):
                    missing = set(named.split(",")) - extras
                    assert not missing, f"{where}: pyproject.toml has no extra {missing}"
    else:
        assert program in EXTERNAL, (
            f"{where}: {program!r} is neither a command of this repository nor one of "
            f"{sorted(EXTERNAL)}; add it to EXTERNAL in tests/test_docs.py if it is real.")


BASH = [b for page in PAGES + NOTES for b in blocks(page) if b.lang in ("bash", "sh", "shell")]


@pytest.mark.parametrize("block", BASH, ids=lambda b: b.id)
def test_bash_block_names_real_commands(block):
    for tokens in commands(block.code):
        check_tokens(tokens, f"{block.id}: {shlex.join(tokens)!r}")


@pytest.mark.parametrize("command, message", [
    ("ncp-search sweep configs/quick.yaml --trails 2", "no option --trails"),
    ("ncp-search sweeep configs/quick.yaml", "no subcommand 'sweeep'"),
    ("ncp-search --verbose", "no subcommand None"),
    ("ncp-search sweep configs/nothing.yaml", "no file configs/nothing.yaml"),
    ('pip install -e ".[tests]"', "no extra"),
    ("python -m research bench budgit", "no subcommand 'budgit'"),
    ("python -m research.no_such_module", "no module"),
    ("cd docs && ncp-search sweep x.yaml --trails 2", "no option --trails"),
    ("python benchmarks/optuna_prune_latency.py --size 10", "does not parse --size"),
    ("frobnicate --all", "neither a command"),
])
def test_the_bash_check_catches_drift(command, message):
    with pytest.raises(AssertionError, match=message):
        check_command(command, "example")


# --- the architecture page and the set-up commands ---------------------------------


def test_the_architecture_page_matches_the_tree():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:ncp_search|tests|research|docs|\.ci)/[\w./-]*)`", text))
    for path in named:
        assert (ROOT / path).exists(), f"docs/architecture.md names {path}, which is not there"
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    for init in sorted((ROOT / "ncp_search").rglob("*/__init__.py")):
        folder = init.parent.relative_to(ROOT).as_posix()
        assert f"`{folder}/`" in text or f"`{init.parent.name}/`" in text, (
            f"docs/architecture.md does not name the package folder {folder}/")


def test_the_readme_set_up_commands_are_those_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = 'pip install -e ".[test]" && python -m pytest -q'
    assert test_command in ci
    bash = [b.code.strip() for b in blocks(ROOT / "README.md") if b.lang == "bash"]
    assert test_command in bash, "the README's test command is not the one .ci/run runs"
    main_job = [code for code in bash if "ncp-search sweep configs/quick.yaml" in code]
    assert main_job and main_job[0].startswith("pip install -e "), main_job
    # the base install is the core alone; the CLI needs the app extra
    extras = re.findall(r"\.\[([\w,-]+)\]", main_job[0])
    assert extras and "app" in extras[0].split(","), main_job[0]
    assert "mkdocs build --strict" in ci


def slug(heading: str) -> str:
    """The anchor Python-Markdown's toc extension gives a heading (as mkdocs does)."""
    text = re.sub(r"[`*]", "", heading)
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def test_the_readme_links_point_to_pages_and_headings_that_exist():
    # mkdocs --strict checks the site's own links; the README is not part of the site.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", readme)
    assert links
    for path, anchor in links:
        if "://" in path:
            continue
        target = ROOT / path
        assert target.exists(), f"README.md links to {path}, which is not there"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            assert anchor in {slug(h) for h in headings}, (
                f"README.md links to {path}#{anchor}, but {path} has no such heading")
