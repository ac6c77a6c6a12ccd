"""Replay recorded-run tables through real Ray Tune runs: NCPScheduler against the built-ins.

For each table (observer-mode runs), every scheduler runs one Tune experiment per seed
(seed = order of the runs; one trial per run, replayed epoch by epoch; see
research/ray_replay.py). Prints per table: epochs consumed (and the share of
FIFO's, and the ratio to the best built-in: lowest mean final regret, then fewest
epochs), trials stopped, final regret of the best completed trial in accuracy points
below the table's best (mean and max over seeds), epochs until within --tolerance
points, seconds per Tune run; and the issue's targets for each NCP scheduler.

Run from the repository root (with ``-m``, so that ``research`` is importable):
    python -m benchmarks.ray_replay --table benchmarks/tables/fashion_select.jsonl \\
        --seeds 10 --json out.json --plot out/
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import research.ray_replay as ray_replay
from ncp_search.app.jsonio import write_json
from research.recorder import read_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", nargs="+", required=True, help="recorded-run tables (.jsonl)")
    parser.add_argument("--schedulers", nargs="+", default=list(ray_replay.DEFAULT_SCHEDULERS),
                        help="fifo, async_hyperband, hyperband, median_stopping, "
                             "ncp:<predictor>, ncp_asha:<predictor>, ncp_pause, ncp (the "
                             "registry's defaults)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (run orders)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="accuracy points")
    parser.add_argument("--concurrency", type=int, default=4, help="trials running at once")
    parser.add_argument("--limit", choices=["cpus", "trials"], default="cpus",
                        help="limit concurrency by CPUs per trial or max_concurrent_trials")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs for ray.init")
    parser.add_argument("--mode", choices=["observer", "probe_head"], default="observer")
    parser.add_argument("--json", default=None, help="write the reports here")
    parser.add_argument("--plot", default=None, help="folder for ray_<table>.png")
    args = parser.parse_args(argv)

    for name in args.schedulers:
        ray_replay.make_scheduler(name, 20, n_trials=20)  # unknown names fail before Ray
    tables = {}
    for table in args.table:
        runs = [r for r in read_table(table)
                if r.get("config", {}).get("mode", "observer") == args.mode]
        if len(runs) < 6:
            raise SystemExit(f"{table}: needs at least 6 runs of mode {args.mode!r}.")
        tables[Path(table).stem] = runs

    import ray

    started = time.perf_counter()
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    reports = {}
    try:
        for name, runs in tables.items():
            def progress(message: str, name: str = name) -> None:
                print(f"[{name}] {message} ({time.perf_counter() - started:.0f} s in all)",
                      file=sys.stderr, flush=True)

            report = ray_replay.compare(
                runs, schedulers=args.schedulers, seeds=range(args.seeds),
                tolerance=args.tolerance, concurrency=args.concurrency,
                num_cpus=args.num_cpus, limit=args.limit, progress=progress)
            reports[name] = report
            print(f"\n== {name} [{args.mode}]: {len(runs)} trials, {args.seeds} seeds, "
                  f"{args.concurrency} concurrent ({args.limit}) ==")
            print(ray_replay.format_summary(report), flush=True)
            if args.plot:
                Path(args.plot).mkdir(parents=True, exist_ok=True)
                path = Path(args.plot) / f"ray_{name}.png"
                ray_replay.plot(report, str(path), title=f"{name}: Ray Tune replay, "
                                f"{args.seeds} seeds")
                print(f"wrote {path}", file=sys.stderr)
            if args.json:  # after every table, so that a cut-short run keeps what it did
                write_json(reports, args.json)
    finally:
        ray.shutdown()
    print(f"\nwall time: {time.perf_counter() - started:.0f} s", flush=True)
    if args.json:
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
