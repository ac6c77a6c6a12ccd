"""Time between trials of a Ray sweep, with and without actor reuse.

Runs the sweep of CONFIG on Ray Tune with 2 workers (its ``pruner`` section dropped,
``scheduler`` NCPScheduler's defaults unless it names one) twice in this process
(``reuse_actors=False``, then the sweep's own ``reuse_actors=True``) and prints, per
run, the wall clock and the mean gap between a trial's end and the start of the next
trial Tune gives that worker slot (Tune's ``on_trial_start`` / ``on_trial_complete``
as the sweep's records see them). Without reuse the gap is a new Ray actor per trial:
a Python process, Ray's worker start-up and the TensorFlow import.

    python benchmarks/ray_trial_overhead.py configs/quick.yaml
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _run(config: str, reuse: bool) -> tuple[float, list[float]]:
    import ray
    from ray import tune

    import ncp_search.app.sweep.ray_backend as ray_backend
    from ncp_search.app.sweep.run import run_sweep

    events: list[tuple[float, str]] = []
    start, end = ray_backend._Session.start, ray_backend._Session.end
    original_config = tune.TuneConfig

    def on_start(session: Any, trial: Any) -> None:
        events.append((time.perf_counter(), "start"))
        start(session, trial)

    def on_end(session: Any, trial: Any, failed: bool) -> None:
        events.append((time.perf_counter(), "end"))
        end(session, trial, failed)

    def tune_config(*args: Any, **kwargs: Any) -> Any:
        kwargs["reuse_actors"] = reuse
        return original_config(*args, **kwargs)

    setattr(ray_backend._Session, "start", on_start)  # noqa: B010
    setattr(ray_backend._Session, "end", on_end)  # noqa: B010
    setattr(ray_backend.tune, "TuneConfig", tune_config)  # noqa: B010
    try:
        with tempfile.TemporaryDirectory() as folder:
            began = time.perf_counter()
            run_sweep(config, backend="ray", workers=2, output=str(Path(folder) / "out"),
                      stream=io.StringIO())
            wall = time.perf_counter() - began
    finally:
        setattr(ray_backend._Session, "start", start)  # noqa: B010
        setattr(ray_backend._Session, "end", end)  # noqa: B010
        setattr(ray_backend.tune, "TuneConfig", original_config)  # noqa: B010
        if ray.is_initialized():
            ray.shutdown()
    gaps, ended = [], []
    for moment, kind in events:
        if kind == "end":
            ended.append(moment)
        elif ended:  # a slot freed by the latest trial to end
            gaps.append(moment - ended.pop())
    return wall, gaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a sweep config (run on Ray whatever its backend)")
    args = parser.parse_args(argv)
    import yaml

    raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    raw.pop("pruner", None)
    raw["backend"] = "ray"
    raw.setdefault("scheduler", {"name": "ncp"})
    config = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)  # noqa: SIM115
    with config:
        yaml.safe_dump(raw, config)
    print(f"{'reuse_actors':<13} {'wall_s':>7} {'gap_mean_s':>10} {'gap_max_s':>9} {'gaps':>5}")
    for reuse in (False, True):
        wall, gaps = _run(config.name, reuse)
        mean = statistics.mean(gaps) if gaps else float("nan")
        print(f"{reuse!s:<13} {wall:>7.1f} {mean:>10.1f} {max(gaps, default=float('nan')):>9.1f} "
              f"{len(gaps):>5}", flush=True)
    Path(config.name).unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
