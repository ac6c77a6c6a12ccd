"""The ``ncp-search`` command line.

Subcommands:
    demo   fine-tune a probed zoo model on digits and print beta_eff per epoch and the
           predicted final accuracy (the embedded default job).
    zoo    pre-train and cache the source models of the local model zoo.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from ncp_search.errors import NCPSearchError


def _quiet_tensorflow() -> None:
    # The CLI is an application: it may choose TensorFlow's C++ log level (the
    # library never touches the environment). An explicit user setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 64,64,64, but got {text!r}"
        ) from None
    return widths


def _cmd_demo(args: argparse.Namespace) -> int:
    from ncp_search.demo import jsonable, run_demo

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
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(jsonable(summary), handle, indent=2)
        print(f"wrote {args.json}")
    return 0


def _cmd_zoo(args: argparse.Namespace) -> int:
    from ncp_search.zoo import available_models, build_zoo

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
