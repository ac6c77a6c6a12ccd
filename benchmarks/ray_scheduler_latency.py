"""on_trial_result latency: NCPScheduler against AsyncHyperBandScheduler, same run.

With N concurrent trials (trial stubs, 10 results each already seen), every trial's
next result goes through each scheduler's on_trial_result; the script prints the
median time per call and the ratio to AsyncHyperBandScheduler. Tune warns when a
scheduler call takes over 0.5 s.

Run:  python benchmarks/ray_scheduler_latency.py [--sizes 10 100 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from ray.tune.schedulers import AsyncHyperBandScheduler

from ncp_search.integrations.ray.scheduler import NCPScheduler


class Trial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


def schedulers() -> dict:
    common = {"metric": "val_accuracy", "mode": "max"}
    return {
        "async_hyperband": AsyncHyperBandScheduler(max_t=20, grace_period=1, **common),
        "ncp:best": NCPScheduler(max_t=20, predictor="best", **common),
        "ncp:ncp_raw": NCPScheduler(max_t=20, predictor="ncp_raw", **common),
        "ncp:best asha": NCPScheduler(max_t=20, predictor="best", rule="asha", **common),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in args.sizes:
        quality = rng.random(n)
        trials = [Trial(f"t{i}") for i in range(n)]
        timings: dict[str, list[float]] = {}
        for name, scheduler in schedulers().items():
            for trial in trials:
                scheduler.on_trial_add(None, trial)
            for step in range(1, 11):  # histories of 10 results each (not timed)
                for trial, q in zip(trials, quality):
                    scheduler.on_trial_result(None, trial, {
                        "training_iteration": step, "val_accuracy": q * (1 - 0.8 ** step),
                        "beta_eff": 1.0 / step})
            times = []
            for trial, q in zip(trials, quality):
                result = {"training_iteration": 11, "val_accuracy": q * (1 - 0.8 ** 11),
                          "beta_eff": 1.0 / 11}
                start = time.perf_counter()
                scheduler.on_trial_result(None, trial, result)
                times.append(time.perf_counter() - start)
            timings[name] = times
        med = {k: statistics.median(v) for k, v in timings.items()}
        worst = {k: max(v) for k, v in timings.items()}
        row = {"n_trials": n, "median_seconds": med, "max_seconds": worst,
               "ratio_to_async_hyperband": {k: v / med["async_hyperband"] for k, v in med.items()}}
        rows.append(row)
        print(f"N={n}: " + ", ".join(
            f"{k} {v * 1e6:.0f} us ({row['ratio_to_async_hyperband'][k]:.1f}x, max "
            f"{worst[k] * 1e3:.1f} ms)" for k, v in med.items()), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)


if __name__ == "__main__":
    main()
