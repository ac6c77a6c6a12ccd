"""Time between trials of an Optuna sweep, as the number of trials grows.

Runs ``ncp-search sweep``'s driver and worker loop (budget lock, stale-trial checks,
storage writes, progress line, ``study.optimize`` per trial) on the embedded SQLite
storage with a trivial trial body in place of training (``run_trial`` replaced by
a stand-in that reports its epochs at once), with TensorFlow and Keras imported so
that the heap is the size a real sweep has. The wall time of a trial is then all
overhead. Printed: the median over the ten trials up to trial 10, 100 and 1,000
of the wall time and of the process' CPU time from one trial's end to the next's
(CPU time is what the sweep machinery spends; wall time also holds what other
processes on a busy machine take).

    python benchmarks/sweep_overhead.py            # the sweep as it is
    python benchmarks/sweep_overhead.py --gc-after-trial --trials 100   # 0.2's behaviour
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

MARKS = (10, 100, 1000)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--gc-after-trial", action="store_true",
                        help="collect garbage after each trial (what 0.2 did)")
    args = parser.parse_args(argv)

    import keras  # noqa: F401 - the heap of a real sweep
    import optuna
    import tensorflow  # noqa: F401

    import ncp_search.app.sweep.optuna_backend as sweep_optuna
    import ncp_search.app.sweep.trial as sweep_trial
    from ncp_search.app.sweep.run import run_sweep

    ends: list[tuple[float, float]] = []

    def run_trial(config, params, data, on_epoch, *, trial_seed, model_path=None,
                  cache_dir=None):
        info = sweep_trial.EpochInfo(seconds=0.0, train_loss=1.0, val_loss=1.0, diverged=None)
        values = [0.5, 0.6]
        for epoch, value in enumerate(values):
            on_epoch(epoch, value, 1.0, {}, info)
        ends.append((time.perf_counter(), time.process_time()))
        return {"val_accuracy": values, "beta_eff": [1.0, 1.0], "seconds": 0.0,
                "epoch_seconds": [0.0, 0.0], "diverged": None, "model_path": None,
                "epochs": 2}

    sweep_optuna.run_trial = run_trial
    sweep_trial.load_data = lambda *a, **k: None
    # the end-of-sweep report is not per-trial machinery (and draws 1,000 curves)
    import ncp_search.app.report.html as report_html

    report_html.write_report = lambda meta, trials, out_dir: Path(out_dir) / "report.html"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep_optuna.GC_AFTER_TRIAL = args.gc_after_trial
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "overhead.yaml"
        config.write_text(yaml.safe_dump({
            "name": "overhead", "output": str(Path(folder) / "out"),
            "data": {"target": "digits:5-9"},
            "source": {"zoo": "mlp", "task": "digits:0-4", "epochs": 10},
            "search_space": {"learning_rate": {"type": "float", "low": 1e-3, "high": 0.1}},
            "budget": {"trials": args.trials, "epochs": 2}, "pruner": {"name": "nop"},
            "optuna": {"sampler": "random"},
        }))
        started = time.perf_counter()
        run_sweep(str(config), stream=io.StringIO())
        total = time.perf_counter() - started
    walls = [b[0] - a[0] for a, b in zip(ends, ends[1:])]
    cpus = [b[1] - a[1] for a, b in zip(ends, ends[1:])]
    print(f"sweep overhead, gc_after_trial={args.gc_after_trial}, {len(ends)} trials "
          f"in {total:.1f} s wall (Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.1f} at the end)")
    print(f"{'trial':>6} {'wall s per trial':>17} {'CPU s per trial':>16}   "
          "(medians of the 10 trials before)")
    for mark in MARKS:
        if mark - 1 <= len(walls):
            window = slice(max(0, mark - 11), mark - 1)
            print(f"{mark:>6} {statistics.median(walls[window]):>17.3f} "
                  f"{statistics.median(cpus[window]):>16.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
