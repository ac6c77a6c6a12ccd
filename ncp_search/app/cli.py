"""The ``ncp-search`` command line.

Subcommands:
    demo   fine-tune a probed zoo model on digits and print beta_eff per epoch and the
           predicted final accuracy (the embedded default job).
    zoo    pre-train and cache the source models of the local model zoo.
    record record complete trials of a workload as a table of runs (JSON lines).
    sweep  run a config-driven sweep (Optuna or Ray Tune) with pruning.
    report write the HTML report of a sweep's output folder.
    bench  benchmarks on recorded tables (predict, optuna, sampler).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from ncp_search.app.jsonio import write_json
from ncp_search.errors import NCPSearchError


def _quiet_tensorflow() -> None:
    # The CLI is an application: it may choose TensorFlow's C++ log level (the
    # library never touches the environment). An explicit user setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # One BetaEffMeter per trial means one trace per trial: expected, not a leak.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 64,64,64, but got {text!r}"
        ) from None
    return widths


def _cmd_demo(args: argparse.Namespace) -> int:
    from ncp_search.app.demo import run_demo

    summary = run_demo(
        source_model=args.source_model,
        source=args.source,
        target=args.target,
        epochs=args.epochs,
        observe=args.observe,
        hidden=args.hidden,
        probe_samples=args.probe_samples,
        learning_rate=args.learning_rate,
        seed=args.seed,
        cache_dir=args.cache_dir,
        out=lambda line: print(line, flush=True),
    )
    if args.json:
        write_json(summary, args.json, indent=2)
        print(f"wrote {args.json}")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from ncp_search.app.zoo import available_models, build_zoo

    names = args.names or available_models()
    infos = build_zoo(
        names,
        source=args.source,
        epochs=args.epochs,
        seed=args.seed,
        cache_dir=args.cache_dir,
        retrain=args.retrain,
        progress=lambda line: print(line, flush=True),
    )
    print(f"{'model':<14} {'source':<18} {'epochs':>6} {'val_acc':>8} {'train_s':>8}")
    for name, info in infos.items():
        print(
            f"{name:<14} {info.get('source', ''):<18} {info.get('epochs', ''):>6} "
            f"{info.get('val_accuracy', float('nan')):>8.4f} "
            f"{info.get('train_seconds', float('nan')):>8.1f}"
        )
    return 0


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
            raise ValueError(f"{table}: no runs (record some with `ncp-search record`).")
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


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ncp_search.app.sweep.results import format_summary
    from ncp_search.app.sweep.run import run_sweep

    if args.verbose:
        logging.getLogger("ncp_search").setLevel(logging.DEBUG)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summary = run_sweep(args.config, backend=args.backend, storage=args.storage,
                            workers=args.workers, resume=args.resume, address=args.address,
                            cache_dir=args.cache_dir, output=args.output,
                            trials=args.trials, epochs=args.epochs)
    except KeyboardInterrupt:
        print("ncp-search: interrupted; finished trials are kept. Continue with: ncp-search "
              f"sweep {args.config} --resume", file=sys.stderr)
        return 130
    print(format_summary(summary, summary["output"]))
    print(f"report: {summary['report']} (rebuild with `ncp-search report "
          f"{summary['output']}`)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from ncp_search.app.report.html import write_report
    from ncp_search.app.sweep.results import load_trials

    meta, trials = load_trials(args.output, storage=args.storage)
    path = write_report(meta, trials, args.output)
    print(f"wrote {path}")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, but got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncp-search",
        description="Hyperparameter-search pruning from the neural capacitance beta_eff.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="embedded default job: probe, beta_eff, prediction")
    demo.add_argument("--source-model", default="cnn_small", help="zoo architecture")
    demo.add_argument("--source", default="digits:0-4", help="source task of the zoo model")
    demo.add_argument("--target", default="digits:5-9", help="target task to fine-tune on")
    demo.add_argument("--epochs", type=int, default=15)
    demo.add_argument("--observe", type=int, default=4, help="epochs seen by the prediction")
    demo.add_argument("--hidden", type=_hidden, default=(64, 64, 64), help="probe widths")
    demo.add_argument("--probe-samples", type=int, default=256)
    demo.add_argument("--learning-rate", type=float, default=1e-3)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    demo.add_argument("--json", default=None, help="also write the figures to this JSON file")
    demo.set_defaults(func=_cmd_demo)

    zoo = sub.add_parser("zoo", help="pre-train and cache the model zoo")
    zoo.add_argument("names", nargs="*", help="architectures (default: all)")
    zoo.add_argument("--source", default="fashion_mnist:0-4", help="source task")
    zoo.add_argument("--epochs", type=int, default=3)
    zoo.add_argument("--seed", type=int, default=0)
    zoo.add_argument("--cache-dir", default=None)
    zoo.add_argument("--retrain", action="store_true", help="ignore cached models")
    zoo.set_defaults(func=_cmd_zoo)

    rec = sub.add_parser("record", help="record complete trials of a workload (JSON lines)")
    rec.add_argument("config", help="workload config (YAML), e.g. configs/record_digits_mlp.yaml")
    rec.add_argument("--out", default=None, help="table file (default runs/<name>.jsonl)")
    rec.add_argument("--trials", type=int, default=None, help="record only the first N trials")
    rec.add_argument("--epochs", type=int, default=None, help="override the epochs")
    rec.add_argument("--modes", nargs="+", choices=["observer", "probe_head"], default=None)
    rec.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    rec.set_defaults(func=_cmd_record)

    swp = sub.add_parser("sweep", help="run a config-driven sweep with pruning")
    swp.add_argument("config", help="sweep config (YAML), e.g. configs/quick.yaml")
    swp.add_argument("--backend", choices=["optuna", "ray"], default=None,
                     help="default: the config's backend (optuna)")
    swp.add_argument("--storage", default=None,
                     help="Optuna storage URL (default: SQLite in the output folder), e.g. "
                     "postgresql://user@host/db; Ray: the experiment storage path")
    swp.add_argument("--workers", type=_positive, default=1,
                     help="parallel trials (Optuna worker processes / Ray concurrent trials)")
    swp.add_argument("--resume", action="store_true",
                     help="continue the sweep in the output folder (finished trials are kept)")
    swp.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    swp.add_argument("--output", default=None, help="output folder (default: the config's)")
    swp.add_argument("--trials", type=_positive, default=None, help="override budget.trials")
    swp.add_argument("--epochs", type=_positive, default=None, help="override budget.epochs")
    swp.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    swp.set_defaults(func=_cmd_sweep)

    rep = sub.add_parser("report", help="HTML report (and PNGs) of a sweep's output folder")
    rep.add_argument("output", help="the sweep's output folder")
    rep.add_argument("--storage", default=None,
                     help="Optuna storage URL when sweep.json hides its password")
    rep.set_defaults(func=_cmd_report)

    bench = sub.add_parser("bench", help="benchmarks")
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
                     help="built-in names or ncp:<predictor> (default: all built-ins and "
                     "several NCP predictors)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ncp-search`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _quiet_tensorflow()
    try:
        return int(args.func(args))
    except (ValueError, OSError, NCPSearchError) as error:
        print(f"ncp-search: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ncp-search: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
