"""The pausing policy on real Ray Tune runs beside the pausing simulator, same trials.

For each seed the recorded table's runs are taken in the order of the budget and
pausing benchmarks (``research.budget_bench.study_trials``: every observer run, in
``default_rng(seed).permutation``'s order). Two rules run on those trials both ways:

- ``ncp_pause``: a real Tune run (``research.ray_replay``: one trial per run, created in
  that order, each reporting its recorded curve with a checkpoint of its epoch index;
  NCPScheduler with the registry's PausingPolicy: rf 3, min_resource 1, keep_min
  ``auto_keep_min(n_trials)``, one bracket of all trials), beside the simulator's
  ``pause,rf=3,keep=auto,bracket=all`` (``research.pausing_bench.simulate``);
- ``ncp``: the registry's default (ASHA on the predicted best, rf 3, grace period 1) on
  Tune, beside the simulator's ``default`` (the same ``AshaPolicy``).

Printed per rule and seed, Tune beside the simulator: epochs (share of no pruning's),
final regret (accuracy points below the best final of the trials), pauses (PAUSE
answers; the simulator counts one at every arrival at a rung, Tune's hooks answer
the arrival that closes a rung with CONTINUE or STOP instead: ``closers`` is the
difference, one per rung), resumes (restarts of paused trials from a checkpoint),
whether every trial trained the same epochs both ways, and whether the results came
in the same order. Nothing is trained; the simulator charges no checkpoint seconds.

Run from the repository root (docs/budget/pausing_tune.txt; it prints its wall time):
    python -m benchmarks.pausing_tune_check --table benchmarks/tables/digits_mlp.jsonl \\
        benchmarks/tables/fashion_cnn.jsonl benchmarks/tables/fashion_select.jsonl \\
        --seeds 5 --concurrency 1 2 4 --text docs/budget/pausing_tune.txt
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

import research.ray_replay as ray_replay
from research.budget_bench import Workload, load_workload, study_trials
from research.pausing_bench import DEFAULT, make_host, simulate

# (Tune replay scheduler, simulator rule): the same decision rule on both
PAIRS = (("ncp_pause", "pause,rf=3,keep=auto,bracket=all"), ("ncp", DEFAULT))


def same_rule(workload: Workload, tune_name: str, sim_name: str) -> bool:
    """Whether the Tune scheduler's policy has the simulator rule's settings."""
    n = len(workload.finals)
    tune = ray_replay.make_scheduler(tune_name, workload.n_steps, n_trials=n)
    host: Any = make_host(sim_name, n, workload.n_steps, workload.sign)
    return bool(tune.policy.settings() == host.policy.settings())  # type: ignore[attr-defined]


def epochs_per_trial(pairs: list[tuple[int, int]]) -> Counter[int]:
    """Results per run index (start markers, epoch -1, left out)."""
    return Counter(run for run, epoch in pairs if epoch > 0)


def phases(results: list[tuple[int, int]], milestones: list[float]
           ) -> list[list[tuple[int, int]]]:
    """Results split by the rung they lead to (epochs up to the first milestone, then
    up to each next one), each part in the order received."""
    parts: list[list[tuple[int, int]]] = [[] for _ in milestones]
    for run, epoch in results:
        parts[next(k for k, m in enumerate(milestones) if epoch <= m)].append((run, epoch))
    return parts


def resume_orders(tune: list[tuple[int, int]], sim: list[tuple[int, int]],
                  milestones: list[float]) -> tuple[int, int, int]:
    """Per rung after the first: whether Tune and the simulator ran the same results
    (in any order), and whether the promoted trials started in the same order (the
    simulator's: best prediction first), the trial that closed the rung left out
    (Tune runs it on at once, the simulator pauses and resumes it by its rank).
    Returns (rungs with the same results, rungs with the same start order, rungs)."""
    same_set = same_start = 0
    tune_parts, sim_parts = phases(tune, milestones), phases(sim, milestones)
    for k in range(1, len(milestones)):
        same_set += sorted(tune_parts[k]) == sorted(sim_parts[k])
        closer = tune_parts[k - 1][-1][0] if tune_parts[k - 1] else None
        starts = [[run for run in dict.fromkeys(r for r, _ in part) if run != closer]
                  for part in (tune_parts[k], sim_parts[k])]
        same_start += starts[0] == starts[1]
    return same_set, same_start, len(milestones) - 1


def compare_one(workload: Workload, tune_name: str, sim_name: str, seed: int,
                concurrency: int, num_cpus: float) -> dict[str, Any]:
    """One seed of one rule, Tune and simulator, on the same trials and order."""
    order = [int(i) for i in study_trials(workload, seed)]
    tune = ray_replay.replay(workload.runs, tune_name, seed, concurrency=concurrency,
                             num_cpus=num_cpus, order=order, trace=True)
    sim = simulate(workload, sim_name, np.array(order), concurrency=concurrency, seed=seed)
    tune_results = [(run, epoch) for run, epoch in tune["trace"] if epoch > 0]
    sim_results = [(order[position], epoch) for position, epoch, _ in sim["trace"]]
    all_epochs = len(order) * workload.n_steps
    tune_epochs, sim_epochs = epochs_per_trial(tune_results), epochs_per_trial(sim_results)
    policy = ray_replay.make_scheduler(tune_name, workload.n_steps, n_trials=len(order)).policy
    milestones = list(getattr(policy, "milestones", [workload.n_steps]))
    return {
        "rule": tune_name, "seed": seed, "concurrency": concurrency,
        "tune": {"epochs": tune["epochs"], "epochs_share": tune["epochs"] / all_epochs,
                 "final_regret": tune["final_regret"], "pauses": tune["pauses"],
                 "resumes": tune["resumes"], "restarts": tune["restarts"],
                 "epochs_tune": tune["epochs_tune"], "seconds": tune["seconds"]},
        "sim": {"epochs": sim["epochs"], "epochs_share": sim["epochs_share"],
                "final_regret": sim["final_regret"], "pauses": sim["pauses"],
                "resumes": sim["resumes"]},
        "trials_differing": sum(tune_epochs[run] != sim_epochs[run] for run in order),
        "same_order": tune_results == sim_results,
        "rungs": resume_orders(tune_results, sim_results, milestones),
        "tune_results": tune_results, "sim_results": sim_results,
    }


def format_rows(rows: list[dict[str, Any]]) -> list[str]:
    head = (f"{'rule':<10} {'seed':>4} | {'epochs share':^15} | {'final regret':^13} | "
            f"{'pauses':^9} {'closers':>7} | {'resumes':^9} | {'trials with':>11} "
            f"{'same order':>10} {'rungs: same':>11} {'same':>5} {'Tune':>5}")
    sub = (f"{'':<10} {'':>4} | {'Tune':>7} {'sim':>7} | {'Tune':>6} {'sim':>6} | "
           f"{'Tune':>4} {'sim':>4} {'':>7} | {'Tune':>4} {'sim':>4} | "
           f"{'other epochs':>11} {'of results':>10} {'results':>11} {'start':>5} {'s':>5}")
    lines = [head, sub]
    for rule in dict.fromkeys(r["rule"] for r in rows):
        mine = [r for r in rows if r["rule"] == rule]
        for r in mine:
            t, s = r["tune"], r["sim"]
            same_set, same_start, n_rungs = r["rungs"]
            lines.append(
                f"{rule:<10} {r['seed']:>4} | {t['epochs_share']:>7.4f} "
                f"{s['epochs_share']:>7.4f} | {t['final_regret']:>6.2f} "
                f"{s['final_regret']:>6.2f} | {t['pauses']:>4} {s['pauses']:>4} "
                f"{s['pauses'] - t['pauses']:>7} | {t['resumes']:>4} {s['resumes']:>4} | "
                f"{r['trials_differing']:>11} {'yes' if r['same_order'] else 'no':>10} "
                f"{f'{same_set}/{n_rungs}':>11} {f'{same_start}/{n_rungs}':>5} "
                f"{t['seconds']:>5.0f}")
        mean = {side: {k: float(np.mean([r[side][k] for r in mine]))
                       for k in ("epochs_share", "final_regret", "pauses", "resumes")}
                for side in ("tune", "sim")}
        t, s = mean["tune"], mean["sim"]
        lines.append(
            f"{rule:<10} {'mean':>4} | {t['epochs_share']:>7.4f} {s['epochs_share']:>7.4f} | "
            f"{t['final_regret']:>6.2f} {s['final_regret']:>6.2f} | {t['pauses']:>4.1f} "
            f"{s['pauses']:>4.1f} {s['pauses'] - t['pauses']:>7.1f} | {t['resumes']:>4.1f} "
            f"{s['resumes']:>4.1f} |")
    return lines


def check_rules(table: str, seeds: int, num_cpus: int) -> tuple[Workload, list[str]]:
    """The table's workload and its header: the same curves and settings both ways."""
    workload = load_workload({"kind": "table", "path": table, "tolerance": 0.5})
    data = ray_replay.slim(workload.runs)  # what the Tune trials report
    if not (np.array([d["val_accuracy"] for d in data]) == workload.values).all():
        raise SystemExit(f"{table}: the Tune replay and the simulator read different curves.")
    lines = [
        f"\n== {workload.name}: {len(workload.finals)} trials x {workload.n_steps} epochs, "
        f"seeds 0-{seeds - 1}; Tune (research.ray_replay, {num_cpus} CPUs) beside the "
        "simulator (research.pausing_bench.simulate) on the same trials and order ==",
    ]
    for tune_name, sim_name in PAIRS:
        lines.append(f"{tune_name} on Tune vs the simulator's {sim_name!r}: the same settings: "
                     f"{'yes' if same_rule(workload, tune_name, sim_name) else 'NO'}")
    return workload, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", nargs="+", default=["benchmarks/tables/digits_mlp.jsonl"],
                        help="recorded-run tables (.jsonl)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (trial orders)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1],
                        help="trials running at once (Tune) / workers (simulator)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs for ray.init")
    parser.add_argument("--text", default=None, help="also write the printed text here")
    args = parser.parse_args(argv)

    tables = [check_rules(table, args.seeds, args.num_cpus) for table in args.table]
    import ray

    started = time.perf_counter()
    lines: list[str] = []
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    try:
        for workload, header in tables:
            lines += header
            print("\n".join(header), flush=True)
            for concurrency in args.concurrency:
                rows = []
                for seed in range(args.seeds):
                    for tune_name, sim_name in PAIRS:
                        rows.append(compare_one(workload, tune_name, sim_name, seed,
                                                concurrency, args.num_cpus))
                        print(f"[{workload.name} {tune_name} seed {seed}, concurrency "
                              f"{concurrency}: {time.perf_counter() - started:.0f} s in all]",
                              file=sys.stderr, flush=True)
                block = [f"\n-- {workload.name}, concurrency {concurrency} --",
                         *format_rows(rows)]
                bad = [r for r in rows if r["tune"]["restarts"]
                       or r["tune"]["epochs"] != r["tune"]["epochs_tune"]]
                block.append(f"restarts (an epoch replayed) or Tune's training_iteration "
                             f"count off the results counted: {len(bad)} of {len(rows)} runs")
                lines += block
                print("\n".join(block), flush=True)
    finally:
        ray.shutdown()
    tail = [
        "",
        "epochs share: epochs trained / (trials x epochs); final regret: accuracy points "
        "below the best final of the trials; pauses: PAUSE answers (simulator: one per "
        "arrival at a rung; closers = simulator - Tune, the arrivals that closed a rung, "
        "which Tune's hooks continue or stop instead of pausing); resumes: paused trials "
        "restarted from their checkpoint (simulator - Tune: the closers that were promoted, "
        "which Tune runs on at once); trials with other epochs: trials that trained a "
        "different number of epochs on Tune than in the simulator; same order of results: "
        "the sequence (trial, epoch) of all results is identical; rungs: same results: "
        "rungs after the first whose results (the epochs trained towards that rung) are "
        "the same both ways, in any order; same start: whose promoted trials started in "
        "the same order (the simulator's: best prediction first; the trial that closed the "
        "previous rung left out). ncp (ASHA) has no rungs of that kind: 0/0.",
        f"wall time: {time.perf_counter() - started:.0f} s",
    ]
    lines += tail
    print("\n".join(tail), flush=True)
    if args.text:
        Path(args.text).parent.mkdir(parents=True, exist_ok=True)
        Path(args.text).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {args.text}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
