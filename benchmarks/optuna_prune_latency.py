"""prune() latency of NCPPruner against MedianPruner, same SQLite study, same run.

For N completed trials (10 intermediate values and a beta_eff history each) in an
SQLite (RDB) storage, one running trial with 5 reports is judged repeatedly by
MedianPruner and by NCPPruner (its default ASHA rule at and off a rung, and the
percentile rule with several predictors), interleaved; the script prints median
latencies and the ratio to MedianPruner, and each pruner's first call. Each pruner
object is reused from call to call, as in a study: what NCPPruner learns about finished
trials it keeps, so its first call on a study (which indexes them) costs more.

Run:  python benchmarks/optuna_prune_latency.py [--sizes 100 1000 10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna

from ncp_search.integrations.optuna.pruner import BETA_ATTR, NCPPruner

STEPS = 10


def build_study(n: int, folder: Path) -> tuple[optuna.study.Study, optuna.trial.FrozenTrial]:
    rng = np.random.default_rng(0)
    study = optuna.create_study(storage=f"sqlite:///{folder / f'lat{n}.db'}",
                                direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    trials = []
    for _ in range(n):
        quality = float(rng.random())
        values = {s: 0.5 + 0.4 * quality * (1 - np.exp(-(s + 1) / 3)) for s in range(STEPS)}
        trials.append(optuna.trial.create_trial(
            params={"x": quality}, distributions=dist, value=values[STEPS - 1],
            intermediate_values=values,
            user_attrs={BETA_ATTR: {str(s): 1.0 / (s + 1) + quality for s in range(STEPS)}},
        ))
    study.add_trials(trials)
    trial = study.ask()
    for s in range(5):
        trial.report(0.6, s)
    trial.set_user_attr(BETA_ATTR, {str(s): 1.0 for s in range(5)})
    frozen = [t for t in study.get_trials(deepcopy=False) if t.number == trial.number][0]
    return study, frozen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {
        "median": optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
        # the default rule (ASHA on predictions), judged at a rung (min_resource 5: with
        # epochs reported from 0, the rung is step 4, the running trial's latest) ...
        "asha:best at a rung": NCPPruner(max_step=STEPS - 1, min_resource=5),
        # ... and between rungs (rungs at steps 0, 2, 8: step 4 decides nothing)
        "asha:best off a rung": NCPPruner(max_step=STEPS - 1),
        **{f"percentile:{p}": NCPPruner(max_step=STEPS - 1, predictor=p, rule="percentile")
           for p in ("best", "ncp_raw", "xtrial_ncp")},
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            started = time.perf_counter()
            study, frozen = build_study(n, Path(tmp))
            print(f"N={n}: study built in {time.perf_counter() - started:.0f} s", flush=True)
            times: dict[str, list[float]] = {name: [] for name in pruners}
            for _ in range(args.repeats):
                for name, pruner in pruners.items():
                    t0 = time.perf_counter()
                    pruner.prune(study, frozen)
                    times[name].append(time.perf_counter() - t0)
            med = {name: statistics.median(v) for name, v in times.items()}
            first = {name: v[0] for name, v in times.items()}
            row = {"n_trials": n, "median_seconds": med,
                   "ratio_to_median": {k: v / med["median"] for k, v in med.items()},
                   "first_call_seconds": first}
            rows.append(row)
            print("  " + ", ".join(
                f"{k} {v * 1e3:.1f} ms ({row['ratio_to_median'][k]:.2f}x)" for k, v in med.items()
            ), flush=True)
            # NCPPruner's first call on a study indexes its finished trials once
            print("  first call: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in first.items()),
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
