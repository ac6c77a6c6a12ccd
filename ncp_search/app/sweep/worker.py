"""One Optuna worker process of ``ncp-search sweep --workers N`` (run with ``-m``).

Also usable by hand to add workers on other machines sharing a PostgreSQL storage::

    python -m ncp_search.app.sweep.worker CONFIG --storage postgresql://... --output DIR
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ncp_search.app.sweep.worker",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--storage", required=True, help="Optuna storage URL")
    parser.add_argument("--output", default=None, help="output folder (models go there)")
    parser.add_argument("--worker", type=int, default=0, help="worker index (sampler seed)")
    parser.add_argument("--deadline", type=float, default=None, help="time.time() to stop at")
    parser.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import optuna

    from ncp_search.app.sweep.config import load_sweep_config
    from ncp_search.app.sweep.optuna_backend import run_worker
    from ncp_search.errors import NCPSearchError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        config = load_sweep_config(args.config)
        output = Path(args.output or config["output"])
        run_worker(config, args.storage, output, worker=args.worker, deadline=args.deadline,
                   cache_dir=args.cache_dir)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, NCPSearchError) as error:
        print(f"ncp-search worker {args.worker}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
