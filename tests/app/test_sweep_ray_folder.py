"""A Ray sweep folder moved or copied after a kill resumes on its own experiment and
its own scheduler journal; one whose experiment belongs to another sweep is refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install ray[tune]")

from ncp_search.app.cli import main  # noqa: E402
from ncp_search.app.sweep.folder import RAY_ID_FILE, read_meta  # noqa: E402

ROOT = Path(__file__).parents[2]
SWEEP_YAML = """\
name: rayfolder
backend: ray
seed: 0
output: {output}
data: {{target: 'digits:5-9'}}
source: {{zoo: mlp, task: 'digits:0-4', epochs: 10}}
probe: {{hidden: [32, 32, 32], batch: 64}}
search_space:
  learning_rate: {{type: float, low: 0.001, high: 0.3, log: true}}
budget: {{trials: 3, epochs: 2}}
scheduler: {{name: ncp, grace_period: 1}}
ray: {{max_concurrent_trials: 1}}
"""
DRIVER = """\
import sys
from ncp_search.app.sweep.run import run_sweep

run_sweep(sys.argv[1], cache_dir=sys.argv[2])
"""


def _records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "trials.jsonl").read_text().splitlines()]


def _journal_lines(output: Path) -> int:
    return len((output / "ncp_scheduler.jsonl").read_text().splitlines())


@pytest.mark.slow
def test_a_moved_and_a_copied_ray_folder_resume_on_their_own_journal(tmp_path) -> None:
    from ncp_search.app.zoo import load_source_model

    cache = str(tmp_path / "zoo")
    load_source_model("mlp", source="digits:0-4", epochs=10, cache_dir=cache)
    first = tmp_path / "first"
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_YAML.format(output=first))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(config), cache],
                              cwd=str(ROOT), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600  # a bound on a broken run, not a window the test needs
    finished: list = []
    try:
        while not finished and time.time() < deadline and driver.poll() is None:
            time.sleep(0.3)
            try:
                finished = [r for r in _records(first) if r["state"] in ("COMPLETE", "PRUNED")]
            except (FileNotFoundError, json.JSONDecodeError):
                continue
        assert finished, "the sweep finished no trial"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started
        driver.wait()
    assert (first / "ray" / "rayfolder" / RAY_ID_FILE).is_file()
    meta = read_meta(first / "sweep.json")
    assert meta["storage"] is None and meta["id"]
    copy, moved = tmp_path / "copy", tmp_path / "moved"
    shutil.copytree(first, copy)
    shutil.move(str(first), str(moved))
    copy_files = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    lines_before = _journal_lines(moved)

    stream = io.StringIO()
    from ncp_search.app.sweep.run import run_sweep

    summary = run_sweep(str(config), output=str(moved), resume=True, cache_dir=cache,
                        stream=stream)
    assert summary["trials"] == 3 and summary["running"] == 0, stream.getvalue()
    assert not first.exists()  # the old folder is not recreated
    assert _journal_lines(moved) > lines_before  # the scheduler wrote its own journal
    assert {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*")
            if p.is_file()} == copy_files  # the copy is untouched

    # A tuner.pkl that is not the one the sweep wrote is never unpickled.
    assert read_meta(moved / "sweep.json")["tuner_sha256"]
    pickle = moved / "ray" / "rayfolder" / "tuner.pkl"
    pickle.write_bytes(b"planted" + pickle.read_bytes())
    before = (moved / "sweep.json").read_bytes()
    assert main(["sweep", str(config), "--output", str(moved), "--resume"]) == 2
    assert (moved / "sweep.json").read_bytes() == before

    # An experiment that records another sweep id is refused before anything runs.
    id_file = copy / "ray" / "rayfolder" / RAY_ID_FILE
    id_file.write_text(json.dumps({"id": "another-sweep", "name": "rayfolder"}))
    assert main(["sweep", str(config), "--output", str(copy), "--resume"]) == 2
    assert {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*")
            if p.is_file() and p != id_file} == {
                k: v for k, v in copy_files.items() if copy / k != id_file}
