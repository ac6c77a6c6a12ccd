"""The research command line (``python -m research``): tooling outside the product.

Run from the repository root (``research/`` is not part of the ``ncp-search`` wheel).

Subcommands:
    record         record complete trials of a workload as a table of runs (JSON lines).
    bench predict  rank recorded runs by each predictor after K observed epochs.
    bench optuna   replay recorded runs through Optuna pruners.
    bench sampler  TPE on a recorded-table surrogate: what the sampler sees of pruned trials.
    bench budget   every stop rule against every built-in: epochs, seconds, regret, prune
                   rates, on recorded tables and public Taskset curves (Optuna and Ray).
    bench pausing  pause-and-resume halving against the default and Tune's HyperBand.
    taskset        convert the public Taskset curves into tables of recorded runs.

Example::

    python -m research record configs/record_digits_mlp.yaml --out runs/digits_mlp.jsonl
    python -m research bench predict --table runs/digits_mlp.jsonl --k 3 25%
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ncp_search.app.cli import run_command
from ncp_search.app.jsonio import write_json

PROG = "python -m research"


def _cmd_record(args: argparse.Namespace) -> int:
    from research.recorder import load_workload, record

    workload = load_workload(args.config)
    out = args.out or f"runs/{workload['name']}.jsonl"
    print(f"recording {workload['name']!r} into {out} (trials already there are skipped)")
    runs = record(
        args.config,
        out,
        trials=args.trials,
        epochs=args.epochs,
        modes=args.modes,
        cache_dir=args.cache_dir,
        progress=lambda line: print(line, flush=True),
    )
    print(f"{len(runs)} runs in {out}")
    return 0


def _cmd_bench_predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    import research.prediction_bench as bench
    from research.recorder import read_table

    report: dict = {}
    for table in args.table:
        runs = read_table(table)
        if not runs:
            raise ValueError(f"{table}: no runs (record some with `python -m research record`).")
        name = Path(table).stem
        per_mode = bench.evaluate_table(
            runs, ks=args.k, predictors=args.predictors or bench.DEFAULT_PREDICTORS,
            mode=args.mode, target=args.target, n_boot=args.boot,
        )
        for label, results in per_mode.items():
            print(
                f"\n== {name} [{label}]: {results['n_runs']} runs, {results['epochs']} epochs, "
                f"{100 * results['curves_cross']:.0f}% of run pairs cross =="
            )
            print(bench.format_table(results))
            if args.plot:
                folder = Path(args.plot)
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{name}_{label.replace(' ', '_').replace('>', '')}.png"
                bench.plot(results, str(path), title=f"{name} [{label}]")
                print(f"wrote {path}")
        transfer = bench.transfer_summary(runs)
        if transfer:
            print(
                f"\n{name}: probe-as-head finals vs ordinary fine-tuning (observer) finals of "
                f"the same {transfer['n_configs']} configurations: Kendall tau "
                f"{transfer['kendall_tau']:.3f}, Spearman {transfer['spearman_rho']:.3f}; best "
                f"configuration {'the same' if transfer['same_best'] else 'different'} (the "
                f"probe-head winner reaches {100 * transfer['regret_of_probe_winner']:.2f} "
                "points below the ordinary best)"
            )
        report[name] = {"modes": per_mode, "transfer": transfer}
    if len(report) > 1:
        print("\n" + bench.format_summary(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def _cmd_bench_optuna(args: argparse.Namespace) -> int:
    from pathlib import Path

    import optuna

    import research.optuna_replay as replay
    from research.recorder import read_table

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    report = {}
    for table in args.table:
        runs = [r for r in read_table(table)
                if r.get("config", {}).get("mode", "observer") == args.mode]
        if len(runs) < 6:
            raise ValueError(f"{table}: needs at least 6 runs of mode {args.mode!r}.")
        name = Path(table).stem
        result = replay.compare(
            runs, pruners=args.pruners or replay.DEFAULT_PRUNERS, seeds=range(args.seeds),
            tolerance=args.tolerance, progress=lambda line: print(line, flush=True),
        )
        print(f"\n== {name} [{args.mode}]: {len(runs)} trials, {args.seeds} seeds ==")
        print(replay.format_summary(result))
        report[name] = result
        if args.plot:
            Path(args.plot).mkdir(parents=True, exist_ok=True)
            path = Path(args.plot) / f"optuna_{name}.png"
            replay.plot(result, str(path), title=f"{name}: Optuna pruners replayed")
            print(f"wrote {path}")
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def _cmd_bench_sampler(args: argparse.Namespace) -> int:
    import optuna

    from research.recorder import load_workload, read_table
    from research.sampler_bench import compare_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_workload(args.config)["search_space"]
    runs = [r for r in read_table(args.table)
            if r.get("config", {}).get("mode", "observer") == "observer"]
    if len(runs) < 6:
        raise ValueError(f"{args.table}: needs at least 6 observer runs.")
    result = compare_sampler(runs, space, seeds=range(args.seeds), n_trials=args.trials,
                             progress=lambda line: print(line, flush=True))
    print(f"\n{'variant':<40} {'regret (points)':>16} {'epochs':>8}")
    for label, row in result.items():
        print(f"{label:<40} {row['regret_points']:>9.2f} +- {row['regret_sd']:<4.2f} "
              f"{row['epochs']:>8.0f}")
    if args.json:
        write_json(result, args.json)
    return 0


def _cmd_bench_budget(args: argparse.Namespace) -> int:
    import optuna

    from research.budget_bench import command

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return command(args)


def _cmd_bench_pausing(args: argparse.Namespace) -> int:
    from research.pausing_bench import command

    return command(args)


def _cmd_taskset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from research.taskset import convert, diverged, task_files, taskset_folder, write_table

    folder = Path(args.folder) if args.folder else taskset_folder()
    if folder is None or not task_files(folder):
        raise ValueError("no Taskset files (*.json.gz): pass --folder or set "
                         "NCP_SEARCH_TASKSET to the folder that holds them.")
    for path in task_files(folder):
        rows = convert(path)
        out = Path(args.out) / f"{rows[0]['workload']}.jsonl"
        write_table(rows, out)
        print(f"{path.name}: {len(rows)} runs ({diverged(rows)} diverged) -> {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Research tooling of ncp_search: recorded runs and benchmarks on them.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    rec = sub.add_parser("record", help="record complete trials of a workload (JSON lines)")
    rec.add_argument("config", help="workload config (YAML), e.g. configs/record_digits_mlp.yaml")
    rec.add_argument("--out", default=None, help="table file (default runs/<name>.jsonl)")
    rec.add_argument("--trials", type=int, default=None, help="record only the first N trials")
    rec.add_argument("--epochs", type=int, default=None, help="override the epochs")
    rec.add_argument("--modes", nargs="+", choices=["observer", "probe_head"], default=None)
    rec.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    rec.set_defaults(func=_cmd_record)

    bench = sub.add_parser("bench", help="benchmarks on recorded tables")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    pred = bench_sub.add_parser("predict", help="rank recorded runs by each predictor")
    pred.add_argument("--table", required=True, nargs="+",
                      help="JSON-lines tables of recorded runs (one per workload)")
    pred.add_argument("--k", nargs="+", default=["2", "3", "25%", "50%"],
                      help="observed epochs: integers, fractions (0.25) or percentages (25%%)")
    pred.add_argument("--predictors", nargs="+", default=None, help="names (default: all)")
    pred.add_argument("--mode", choices=["observer", "probe_head"], default=None)
    pred.add_argument("--target", choices=["own", "observer"], default="own",
                      help="'observer': score probe_head runs against the observer final of "
                      "the same configuration (how well a probe phase transfers)")
    pred.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    pred.add_argument("--json", default=None)
    pred.add_argument("--plot", default=None, help="folder for the PNG plots")
    pred.set_defaults(func=_cmd_bench_predict)

    opt = bench_sub.add_parser("optuna", help="replay recorded runs through Optuna pruners")
    opt.add_argument("--table", required=True, nargs="+")
    opt.add_argument("--mode", choices=["observer", "probe_head"], default="observer")
    opt.add_argument("--pruners", nargs="+", default=None,
                     help="built-in names, ncp:<predictor> (ASHA) or "
                     "ncp_percentile:<predictor> (default: all built-ins and several NCP "
                     "predictors)")
    opt.add_argument("--seeds", type=int, default=10)
    opt.add_argument("--tolerance", type=float, default=0.5, help="accuracy points")
    opt.add_argument("--json", default=None)
    opt.add_argument("--plot", default=None, help="folder for the PNG plots")
    opt.set_defaults(func=_cmd_bench_optuna)

    smp = bench_sub.add_parser(
        "sampler", help="TPE on a recorded-table surrogate: raw vs predicted values of "
        "pruned trials for the sampler")
    smp.add_argument("--table", required=True)
    smp.add_argument("--config", required=True, help="the workload config (search space)")
    smp.add_argument("--seeds", type=int, default=10)
    smp.add_argument("--trials", type=int, default=40)
    smp.add_argument("--json", default=None)
    smp.set_defaults(func=_cmd_bench_sampler)

    bud = bench_sub.add_parser(
        "budget", help="every stop rule against every built-in in real Optuna studies (and "
        "Tune runs): epochs and seconds shares, regret, prune rates, the issue's targets")
    bud.add_argument("--table", nargs="*", default=[
        "benchmarks/tables/digits_mlp.jsonl", "benchmarks/tables/fashion_cnn.jsonl",
        "benchmarks/tables/fashion_select.jsonl"], help="recorded-run tables (accuracy)")
    bud.add_argument("--taskset", default=None,
                     help="Taskset folder (default $NCP_SEARCH_TASKSET); 'none' leaves "
                     "Taskset out")
    bud.add_argument("--tasks", type=int, default=None, help="only the first N Taskset tasks")
    bud.add_argument("--draw", type=int, default=100, help="Taskset configurations per study")
    bud.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (trial orders)")
    bud.add_argument("--taskset-seeds", type=int, default=None,
                     help="seeds for Taskset studies (default --seeds)")
    bud.add_argument("--concurrency", type=int, nargs="+", default=[1, 4],
                     help="trials in flight (1: sequential)")
    bud.add_argument("--rules", nargs="+", default=None, help="rule names (default: all)")
    bud.add_argument("--beta-rules", nargs="+", default=None,
                     help="beta_eff rules for tables that carry beta_eff (default: all)")
    bud.add_argument("--no-beta", action="store_true", help="leave the beta_eff rules out")
    bud.add_argument("--tolerance", type=float, default=0.5, help="accuracy points")
    bud.add_argument("--loss-tolerance", type=float, default=0.01, help="loss units (Taskset)")
    bud.add_argument("--ray-seeds", type=int, default=0,
                     help="seeds of real Tune runs on the recorded tables (0: none)")
    bud.add_argument("--ray-from", default=None, metavar="JSON",
                     help="take the Tune runs from an earlier report's JSON instead of "
                     "running them (said in the report's scoped notes)")
    bud.add_argument("--ray-alpha", type=float, default=0.3,
                     help="incumbent_alpha of the NCPScheduler variant with the test")
    bud.add_argument("--processes", type=int, default=1, help="worker processes (Optuna part)")
    bud.add_argument("--scoped", nargs="*", default=None,
                     help="notes on what was scoped down, printed and kept in the JSON")
    bud.add_argument("--json", default=None)
    bud.add_argument("--plot", default=None, help="folder for the Pareto PNGs")
    bud.add_argument("--replot", default=None, metavar="JSON",
                     help="only draw the Pareto PNGs again from a report's JSON")
    bud.set_defaults(func=_cmd_bench_budget)

    pau = bench_sub.add_parser(
        "pausing", help="PausingPolicy (synchronous halving, pause and resume) against the "
        "default ASHA and Tune's HyperBand schedulers, simulated on the budget studies")
    pau.add_argument("--table", nargs="*", default=bud.get_default("table"))
    pau.add_argument("--taskset", default=None, help="as for bench budget")
    pau.add_argument("--tasks", type=int, default=None, help="only the first N Taskset tasks")
    pau.add_argument("--draw", type=int, default=100, help="Taskset configurations per study")
    pau.add_argument("--seeds", type=int, default=20, help="seeds 0..N-1 (trial orders)")
    pau.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    pau.add_argument("--rules", nargs="+", default=None, help="rule names (default: all)")
    pau.add_argument("--no-small", action="store_true",
                     help="leave out the small studies (16-24 trials)")
    pau.add_argument("--tolerance", type=float, default=0.5, help="accuracy points")
    pau.add_argument("--loss-tolerance", type=float, default=0.01, help="loss units (Taskset)")
    pau.add_argument("--measure-checkpoints", type=int, default=0, metavar="N",
                     help="time save + load of N Keras models per recorded table (0: no)")
    pau.add_argument("--checkpoints-from", default=None, metavar="JSON",
                     help="take the checkpoint seconds from an earlier report")
    pau.add_argument("--checkpoint-epochs", type=float, nargs=2, default=None,
                     metavar=("SAVE", "RESTORE"),
                     help="charge a save and a restore as these fractions of each "
                     "workload's median epoch (a what-if, instead of measured seconds)")
    pau.add_argument("--resumes", choices=["checkpoint", "memory"], default="checkpoint",
                     help="with measured checkpoints, charge a resume as built again from "
                     "its checkpoint (Tune; a sweep worker that did not pause it) or as "
                     "trained on from the model its worker kept in memory (the sweep's "
                     "default)")
    pau.add_argument("--budget-json", default="docs/budget/budget.json",
                     help="the budget report the default's replay is checked against")
    pau.add_argument("--processes", type=int, default=1)
    pau.add_argument("--json", default=None)
    pau.add_argument("--text", default=None, help="write the tables to this file")
    pau.add_argument("--plot", default=None, help="folder for the anytime PNGs")
    pau.set_defaults(func=_cmd_bench_pausing)

    tsk = sub.add_parser("taskset", help="convert the public Taskset curves into tables")
    tsk.add_argument("--folder", default=None, help="default: $NCP_SEARCH_TASKSET")
    tsk.add_argument("--out", default="runs/taskset", help="folder for <task>.jsonl")
    tsk.set_defaults(func=_cmd_taskset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m research``."""
    return run_command(build_parser().parse_args(argv), PROG)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
