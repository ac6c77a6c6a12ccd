"""on_trial_result latency: NCPScheduler (with and without state_path) against
AsyncHyperBandScheduler, side by side in one run.

For each size N, the schedulers get the same stream of results from trial stubs:
``N_DONE`` (= n_startup_trials) trials that run their ``--results`` results and
complete first, so the percentile rule compares from the first measured result on,
then N trials that report in lockstep, round by round, ``--results`` results each
(time_attr 1..results = max_t). Every result goes through every variant in turn, in
an order that rotates from one result to the next, so machine noise and cache
effects fall on all variants alike; each call is timed on its own, in wall-clock time
(what Tune's controller waits) and in the thread's CPU time (the scheduler's own
work, which other jobs on a shared machine do not inflate). A STOP is counted
but the stub keeps reporting, so every variant handles the same N x results calls
(in a real sweep a stopped trial reports no more: these are the costs of N live
trials with histories growing to ``--results``). Untimed: on_trial_add, the
completed trials' results, on_trial_complete.

With state_path, the journal is written to a temporary folder; after the run the
script reports its size and the time to restore it: a fresh NCPScheduler with the
same state_path and one on_trial_add (which replays the journal), checked to give
the same state as the live scheduler.

Run:  nice -n 10 python benchmarks/ray_scheduler_latency.py \
          [--sizes 10 100 1000] [--results 100] [--out docs/ray/scheduler_latency]
      python benchmarks/ray_scheduler_latency.py --profile ncp_raw   # cProfile, 1,000 trials
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import ray
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from ncp_search.integrations.ray.scheduler import NCPScheduler

TARGET_SECONDS = 1e-3  # on_trial_result at 1,000 trials, with state_path
TARGET_TRIALS = 1000
FULL_RESULTS = 100
N_DONE = 5  # NCPScheduler's n_startup_trials
RESTORE_REPEATS = 3
PREDICTORS = ("best", "ncp_raw")


class Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


RULE = {"name": "asha"}  # --rule: NCPScheduler's rule (asha, the default, or percentile)


def ncp_kwargs(predictor: str, results: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"metric": "val_accuracy", "mode": "max", "max_t": results,
                              "predictor": predictor, "rule": RULE["name"]}
    if RULE["name"] == "percentile":
        kwargs["n_startup_trials"] = N_DONE
    return kwargs


def make_variants(results: int, folder: str, n: int) -> tuple[dict[str, Any], dict[str, str]]:
    """The schedulers by name, and the journal path of those with state_path."""
    paths = {f"ncp:{p} +state_path": os.path.join(folder, f"n{n}_{p}.jsonl")
             for p in PREDICTORS}
    variants: dict[str, Any] = {
        "async_hyperband": AsyncHyperBandScheduler(
            metric="val_accuracy", mode="max", max_t=results, grace_period=1),
    }
    for predictor in PREDICTORS:
        variants[f"ncp:{predictor}"] = NCPScheduler(**ncp_kwargs(predictor, results))
        variants[f"ncp:{predictor} +state_path"] = NCPScheduler(
            **ncp_kwargs(predictor, results), state_path=paths[f"ncp:{predictor} +state_path"])
    return variants, paths


def result(q: float, rate: float, noise: float, step: int) -> dict[str, float]:
    return {"training_iteration": step,
            "val_accuracy": q * (1 - rate ** step) + noise,
            "beta_eff": 1.0 / step + 0.1 * noise}


def curves(n: int, results: int, rng: np.random.Generator) -> list[list[dict[str, float]]]:
    quality = rng.uniform(0.5, 1.0, n)
    rate = rng.uniform(0.7, 0.95, n)
    noise = rng.normal(0.0, 0.005, (n, results))
    return [[result(quality[i], rate[i], noise[i, s - 1], s) for s in range(1, results + 1)]
            for i in range(n)]


def run_size(n: int, results: int, folder: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    variants, paths = make_variants(results, folder, n)
    names = list(variants)
    done = [Trial(f"done{i}") for i in range(N_DONE)]
    trials = [Trial(f"t{i}") for i in range(n)]
    done_curves = curves(N_DONE, results, rng)
    live_curves = curves(n, results, rng)

    for trial, curve in zip(done, done_curves):  # untimed: the completed trials
        for scheduler in variants.values():
            scheduler.on_trial_add(None, trial)
            for item in curve:
                scheduler.on_trial_result(None, trial, item)
            scheduler.on_trial_complete(None, trial, curve[-1])
    for trial in trials:
        for scheduler in variants.values():
            scheduler.on_trial_add(None, trial)

    timings = {name: np.empty(n * results, dtype=np.int64) for name in names}
    cpu = {name: np.empty(n * results, dtype=np.int64) for name in names}
    stops = dict.fromkeys(names, 0)
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    k = 0
    started = time.perf_counter()
    for step in range(results):
        for trial, curve in zip(trials, live_curves):
            item = curve[step]
            shift = k % len(names)
            for name in names[shift:] + names[:shift]:
                call = variants[name].on_trial_result
                cpu_start = cpu_clock()
                start = clock()
                answer = call(None, trial, item)
                timings[name][k] = clock() - start
                cpu[name][k] = cpu_clock() - cpu_start
                stops[name] += answer == TrialScheduler.STOP
            k += 1
    elapsed = time.perf_counter() - started
    for trial, curve in zip(trials, live_curves):
        for scheduler in variants.values():
            scheduler.on_trial_complete(None, trial, curve[-1])

    def us(values: np.ndarray, q: float) -> float:
        return float(np.percentile(values, q)) / 1e3

    # calls in step order: row s holds the N calls whose time_attr is s + 1
    latency = {name: {"median_us": us(t, 50), "p95_us": us(t, 95), "max_us": us(t, 100),
                      "mean_us": float(t.mean()) / 1e3, "calls": int(t.size),
                      "stop_answers": stops[name],
                      "cpu_median_us": us(cpu[name], 50), "cpu_p95_us": us(cpu[name], 95),
                      "cpu_max_us": us(cpu[name], 100),
                      "median_us_by_step": [float(v) / 1e3 for v in
                                            np.median(t.reshape(results, n), axis=1)]}
               for name, t in timings.items()}
    reference = latency["async_hyperband"]["median_us"]
    for figures in latency.values():
        figures["median_ratio_to_async_hyperband"] = figures["median_us"] / reference
    for predictor in PREDICTORS:  # a journal must not change a decision
        plain, journaled = f"ncp:{predictor}", f"ncp:{predictor} +state_path"
        assert stops[plain] == stops[journaled], (plain, stops)
    return {"n_trials": n, "n_completed_first": N_DONE, "results_per_trial": results,
            "measured_seconds": elapsed, "latency": latency,
            "restore": restore_figures(variants, paths, results)}


def restore_figures(
    variants: dict[str, Any], paths: dict[str, str], results: int
) -> dict[str, Any]:
    """Journal size, and the time of one on_trial_add on a fresh scheduler (replay)."""
    figures: dict[str, Any] = {}
    times: dict[str, list[float]] = {p: [] for p in PREDICTORS}
    for _ in range(RESTORE_REPEATS):  # interleaved, as the calls above
        for predictor in PREDICTORS:
            name = f"ncp:{predictor} +state_path"
            live = variants[name]
            fresh = NCPScheduler(**ncp_kwargs(predictor, results), state_path=paths[name])
            start = time.perf_counter()
            fresh.on_trial_add(None, Trial("t0"))
            times[predictor].append(time.perf_counter() - start)
            same = json.dumps(fresh.state(), sort_keys=True) == json.dumps(
                live.state(), sort_keys=True)
            if not same:
                raise RuntimeError(f"the journal of {name} did not restore its state")
    for predictor in PREDICTORS:
        path = paths[f"ncp:{predictor} +state_path"]
        with open(path, "rb") as handle:
            lines = sum(1 for _ in handle)
        figures[f"ncp:{predictor} +state_path"] = {
            "journal_bytes": os.path.getsize(path), "journal_lines": lines,
            "restore_seconds": sorted(times[predictor]),
            "restore_median_seconds": float(np.median(times[predictor])),
            "state_identical": True,
        }
    return figures


def provenance() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True,
                                  check=False).stdout.strip()
        except OSError:
            return "unknown"

    return {"git_commit": git("rev-parse", "--short", "HEAD"),
            "scheduler_uncommitted_changes": bool(git(
                "status", "--porcelain", "--", "ncp_search")),
            "python": platform.python_version(), "ray": ray.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
            "niceness": os.nice(0)}


def report(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    results = meta["results_per_trial"]
    lines = [
        f"NCPScheduler(rule={RULE['name']!r}).on_trial_result latency against "
        "AsyncHyperBandScheduler (grace 1), one run (benchmarks/ray_scheduler_latency.py)",
        f"N trials x {results} results each, reported in lockstep, after {N_DONE} trials "
        "that completed first; every result goes through every variant, order rotated "
        "per result; microseconds per call (wall clock unless marked CPU). STOPs: "
        "answers STOP out of N x results calls (the stubs keep reporting). The step "
        "before the last shows the cost with the longest histories (at the last step, "
        "max_t, no decision is made).",
    ]
    if results < FULL_RESULTS:
        lines.append(f"NOTE: {results} results per trial, reduced from {FULL_RESULTS}: "
                     f"{meta['reduced_because']}")
    lines += [
        f"git {meta['git_commit']}"
        + (" (ncp_search/ has uncommitted changes)" if meta["scheduler_uncommitted_changes"]
           else "")
        + f"; Python {meta['python']}, Ray {meta['ray']}, {meta['machine']}, "
        f"nice {meta['niceness']}, load average at start {meta['load_average_at_start']}; "
        f"total {meta['total_seconds']:.0f} s",
        "",
        f"{'':34}{'wall clock':-^28}{'':36}{'CPU time':-^18}",
        f"{'trials':>6}  {'variant':<26}{'median':>9}{'p95':>9}{'max':>10}"
        f"{'x AHB median':>14}{'STOPs':>8}{f'median at step {results - 1}':>22}"
        f"{'median':>9}{'p95':>9}",
    ]
    for row in rows:
        for name, f in row["latency"].items():
            lines.append(f"{row['n_trials']:>6}  {name:<26}{f['median_us']:>9.1f}"
                         f"{f['p95_us']:>9.1f}{f['max_us']:>10.1f}"
                         f"{f['median_ratio_to_async_hyperband']:>13.0f}x"
                         f"{f['stop_answers']:>8}{f['median_us_by_step'][-2]:>22.1f}"
                         f"{f['cpu_median_us']:>9.1f}{f['cpu_p95_us']:>9.1f}")
        lines.append("")
    lines.append("journal on disk and restore (fresh NCPScheduler, same state_path, one "
                 f"on_trial_add; median of {RESTORE_REPEATS}, state checked identical):")
    for row in rows:
        for name, f in row["restore"].items():
            lines.append(f"{row['n_trials']:>6}  {name:<26}{f['journal_bytes'] / 1e6:>8.2f} MB"
                         f"{f['journal_lines']:>9} lines   restore "
                         f"{f['restore_median_seconds'] * 1e3:>8.1f} ms")
    target = [row for row in rows if row["n_trials"] == TARGET_TRIALS]
    lines.append("")
    if not target:
        lines.append(f"target not checked: no run at {TARGET_TRIALS} trials")
    for row in target:
        for predictor in PREDICTORS:
            f = row["latency"][f"ncp:{predictor} +state_path"]
            def verdict(figures: tuple[tuple[str, float], ...]) -> str:
                return ", ".join(f"{label} {value / 1e3:.3f} ms "
                                 f"{'PASS' if value <= TARGET_SECONDS * 1e6 else 'FAIL'}"
                                 for label, value in figures)

            wall = verdict((("median", f["median_us"]), ("p95", f["p95_us"]),
                            (f"median at step {results - 1}", f["median_us_by_step"][-2])))
            cpu = verdict((("median", f["cpu_median_us"]), ("p95", f["cpu_p95_us"])))
            lines.append(f"target on_trial_result <= {TARGET_SECONDS * 1e3:g} ms at "
                         f"{TARGET_TRIALS:,} trials with state_path, ncp:{predictor}:\n"
                         f"    wall clock: {wall} (max {f['max_us'] / 1e3:.2f} ms)\n"
                         f"    CPU time:   {cpu}")
    return "\n".join(lines) + "\n"


def profile(predictor: str, n: int, results: int, top: int) -> None:
    """cProfile of the measured calls of one variant with state_path (not interleaved)."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        scheduler = NCPScheduler(**ncp_kwargs(predictor, results),
                                 state_path=os.path.join(folder, "journal.jsonl"))
        done = [Trial(f"done{i}") for i in range(N_DONE)]
        for trial, curve in zip(done, curves(N_DONE, results, rng)):
            scheduler.on_trial_add(None, trial)
            for item in curve:
                scheduler.on_trial_result(None, trial, item)
            scheduler.on_trial_complete(None, trial, curve[-1])
        trials = [Trial(f"t{i}") for i in range(n)]
        live = curves(n, results, rng)
        for trial in trials:
            scheduler.on_trial_add(None, trial)
        call: Callable[..., str] = scheduler.on_trial_result
        profiler = cProfile.Profile()
        profiler.enable()
        for step in range(results):
            for trial, curve in zip(trials, live):
                call(None, trial, curve[step])
        profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(f"ncp:{predictor} +state_path, {n} trials x {results} results "
          f"({n * results} calls):\n{stream.getvalue()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--results", type=int, default=FULL_RESULTS,
                        help="results per trial (also max_t)")
    parser.add_argument("--reduced-because", default="",
                        help="why --results is below 100 (printed with the figures)")
    parser.add_argument("--out", default=None,
                        help="write OUT.txt and OUT.json (e.g. docs/ray/scheduler_latency)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rule", choices=("asha", "percentile"), default="asha",
                        help="NCPScheduler's rule (default asha, the scheduler's default)")
    parser.add_argument("--profile", choices=PREDICTORS, default=None,
                        help="instead: cProfile one variant with state_path at the "
                             "largest size")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    RULE["name"] = args.rule
    if args.results < 3:
        parser.error(f"--results must be >= 3, but got --results={args.results}.")
    if args.results < FULL_RESULTS and not args.reduced_because and not args.profile:
        parser.error("--results below 100 needs --reduced-because '...' (said in the output)")
    if args.profile:
        profile(args.profile, max(args.sizes), args.results, args.top)
        return
    meta = provenance()
    meta.update(results_per_trial=args.results, reduced_because=args.reduced_because,
                seed=args.seed, target_seconds=TARGET_SECONDS, rule=args.rule)
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n in args.sizes:
            rows.append(run_size(n, args.results, folder, args.seed + n))
            print(f"N={n}: measured in {rows[-1]['measured_seconds']:.0f} s", flush=True,
                  file=sys.stderr)
    meta["total_seconds"] = time.perf_counter() - started
    text = report(rows, meta)
    print(text, end="")
    if args.out:
        with open(f"{args.out}.txt", "w", encoding="utf-8") as handle:
            handle.write(text)
        with open(f"{args.out}.json", "w", encoding="utf-8") as handle:
            json.dump({"meta": meta, "rows": rows}, handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    main()
