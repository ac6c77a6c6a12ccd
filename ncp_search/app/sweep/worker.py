"""One Optuna worker process of ``ncp-search sweep --workers N`` (run with ``-m``).

A worker takes its settings (the config with the driver's command-line overrides,
the output folder, the time budget) from the study, where the sweep's driver
stored them, and never re-reads the YAML. Also usable by hand, to add workers on
other machines sharing a PostgreSQL storage; pass the URL in the environment (or
a file only you can read), not on the command line, where ``ps`` shows it::

    NCP_SEARCH_STORAGE=postgresql://user:password@host/db \\
        python -m ncp_search.app.sweep.worker CONFIG --output DIR

``CONFIG`` (or ``--study NAME``) only names the study. Started by the driver
(``--parent PID``), a worker stops at the end of its current epoch when the
driver dies (the running trial is marked FAIL with its curve kept; finished
trials stay in the study), so ``--resume`` continues the sweep.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

PARENT_POLL_S = 1.0


def _storage_url(args: argparse.Namespace) -> str:
    from ncp_search.app.sweep.secrets import STORAGE_ENV, read_storage_file

    if args.storage_file:
        return read_storage_file(args.storage_file)
    if args.storage:
        logging.getLogger(__name__).warning(
            "--storage puts the storage URL on the command line, where other users see it "
            "(ps); pass it in the environment variable %s or with --storage-file instead",
            STORAGE_ENV)
        return str(args.storage)
    url = os.environ.get(STORAGE_ENV)
    if not url:
        raise ValueError(f"no storage URL: set the environment variable {STORAGE_ENV} (or "
                         "pass --storage-file FILE, a file only you can read).")
    return url


def watch_parent(parent: int) -> None:
    """End this process cleanly (SIGTERM: stop at the end of the epoch) when
    ``parent`` dies: at once through Linux's parent-death signal, and by polling
    the parent pid elsewhere (and in case the parent died before this ran)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass

    def poll() -> None:
        while True:
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(PARENT_POLL_S)

    threading.Thread(target=poll, name="ncp-watch-parent", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ncp_search.app.sweep.worker",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("config", nargs="?", default=None,
                        help="the sweep config (names the study; settings come from it)")
    parser.add_argument("--study", default=None, help="study name (instead of CONFIG)")
    parser.add_argument("--storage", default=None,
                        help="storage URL (visible in ps: prefer $NCP_SEARCH_STORAGE)")
    parser.add_argument("--storage-file", default=None,
                        help="a file (chmod 600) whose first line is the storage URL")
    parser.add_argument("--output", default=None,
                        help="output folder for models (default: the driver's)")
    parser.add_argument("--worker", type=int, default=0, help="worker index (sampler seed)")
    parser.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    parser.add_argument("--parent", type=int, default=None,
                        help="stop when this process (the driver) dies")
    args = parser.parse_args(argv)
    if args.parent is not None:
        watch_parent(args.parent)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ncp_search.app.sweep.secrets import hide, masked_logs, secrets_of
    from ncp_search.errors import NCPSearchError

    url = None
    try:
        url = _storage_url(args)
        with masked_logs(url):
            return _run(args, url)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, NCPSearchError) as error:
        print(f"ncp-search worker {args.worker}: error: {hide(str(error), secrets_of(url))}",
              file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - unexpected: its traceback, the password masked
        import traceback

        print(hide(traceback.format_exc(), secrets_of(url)), file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, url: str) -> int:
    import optuna

    from ncp_search.app.sweep.optuna_backend import read_run, run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.study:
        name = args.study
    elif args.config:
        from ncp_search.app.sweep.config import load_sweep_config

        config = load_sweep_config(args.config)
        name = config["optuna"]["study_name"] or config["name"]
    else:
        raise ValueError("name the study: pass the sweep's CONFIG or --study NAME.")
    run = read_run(url, name)
    output = Path(args.output or run["output"])
    run_worker(run["config"], url, output, worker=args.worker, deadline=run["deadline"],
               cache_dir=args.cache_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
