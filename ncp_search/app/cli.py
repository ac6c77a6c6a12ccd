"""The ``ncp-search`` command line.

Subcommands:
    demo   fine-tune a probed zoo model on digits and print beta_eff per epoch and the
           predicted final accuracy (the embedded default job).
    zoo    pre-train and cache the source models of the local model zoo.
    sweep  run a config-driven sweep (Optuna or Ray Tune) with pruning.
    report write the HTML report of a sweep's output folder.

Only the standard library is imported at module level (besides ``ncp_search.errors``):
each subcommand imports what it needs (TensorFlow, Optuna, Ray, matplotlib) inside
its function, so ``ncp-search --help`` and argument errors stay fast.

Quiet by default: TensorFlow's start-up lines (``oneDNN custom operations are on``,
``Could not find cuda drivers``, ``failed call to cuInit``, the absl
``All log messages before absl::InitializeLog()`` banner) and its and Keras'
Python warnings are hidden; ``--verbose`` (before or after the subcommand) shows
them, with debug logging. TensorFlow 2.21 writes those lines from C++ through absl
before any log level applies (``TF_CPP_MIN_LOG_LEVEL`` no longer hides them), so
while a command runs the CLI passes file descriptor 2 through a filter that drops
exactly those lines (:class:`NativeLogFilter`); everything else reaches stderr
unchanged, at once.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import select
import sys
import threading
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from ncp_search.errors import NCPSearchError

if TYPE_CHECKING:
    from pathlib import Path

    from ncp_search.app.zoo import PlannedModel

# absl / TensorFlow C++ log lines: "I0000 00:00:1796125544.665569    6919 port.cc:153] ...",
# possibly behind a Ray worker prefix "(pid=123) " or "(Trainable pid=123, ip=...) ".
_PREFIX = rb"(?:\([^)\n]*pid=\d+[^)\n]*\)\s*)?"
_NATIVE_LINE = re.compile(_PREFIX + rb"(?:[IW]\d{4} \d[\d:.]* +\d+ [^\s\]]+:\d+\] "
                          rb"|E\d{4} \d[\d:.]* +\d+ [^\s\]]+:\d+\] .*"
                          rb"(?:cuda|cuInit|cuDNN|cuFFT|cuBLAS|TensorRT|GPU)"
                          rb"|WARNING: All log messages before absl::InitializeLog\(\))")
# A partial line starting so may be a log line: held until its end (at most 0.2 s).
_MAYBE_NATIVE = re.compile(rb"[(IWE]")


class NativeLogFilter:
    """While active, drop TensorFlow's native start-up log lines from file
    descriptor 2 (and so from the processes started meanwhile, which inherit it).

    Info and warning lines in absl's format, error lines about CUDA, cuDNN and
    GPUs on a machine without them, and absl's pre-initialisation banner are
    dropped; every other byte is copied to the real stderr as soon as it is
    written (a partial line that may be the start of a log line waits at most
    0.2 s). A fatal line (``F...``) and any other error line pass.

    NaN and edge cases:
        If the pipe cannot be set up, nothing is filtered. A child process still
        holding the pipe at exit keeps it open: the copier is then left to run
        (a daemon thread) instead of blocking the exit.
    """

    def __init__(self) -> None:
        self._saved: int | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> NativeLogFilter:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
            read_end, write_end = os.pipe()
        except (OSError, ValueError, AttributeError):
            return self
        os.dup2(write_end, 2)
        os.close(write_end)
        self._saved = saved
        self._thread = threading.Thread(target=self._copy, args=(read_end, saved),
                                        name="ncp-search-stderr-filter", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._saved is None:
            return
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(self._saved, 2)  # closes this process' write end of the pipe
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._saved = None

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        while data:
            try:
                written = os.write(fd, data)
            except OSError:
                return  # the real stderr is gone: drop, never block the writers
            data = data[written:]

    @classmethod
    def keep(cls, line: bytes) -> bool:
        """Whether a complete line (without its newline) passes the filter."""
        return _NATIVE_LINE.match(line.lstrip(b"\r")) is None

    def _copy(self, read_end: int, target: int) -> None:
        pending = b""
        try:
            while True:
                ready, _, _ = select.select([read_end], [], [], 0.2)
                if not ready:
                    if pending:
                        self._write(target, pending)
                        pending = b""
                    continue
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out = b"".join(line + b"\n" for line in lines if self.keep(line))
                if pending and not _MAYBE_NATIVE.match(pending.rsplit(b"\r", 1)[-1]):
                    out, pending = out + pending, b""
                if out:
                    self._write(target, out)
            if pending and self.keep(pending):
                self._write(target, pending)
        except Exception:  # noqa: BLE001 - never leave the writers blocked on a full pipe
            while True:
                try:
                    chunk = os.read(read_end, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self._write(target, chunk)
        finally:
            os.close(read_end)
            os.close(target)


def _quiet_tensorflow(verbose: bool = False) -> None:
    """TensorFlow's and Keras' start-up chatter off (unless ``verbose``).

    The CLI is an application: it may choose TensorFlow's C++ log level (the
    library never touches the environment); an explicit user setting wins.
    """
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow < 2.18 honours it
    # One BetaEffMeter per trial means one trace per trial: expected, not a leak.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


def _ignore_tensorflow_warnings() -> None:
    """Python warnings raised inside TensorFlow, Keras and their helpers: ignored
    (call inside ``warnings.catch_warnings()``)."""
    for module in ("tensorflow", "keras", "tf_keras", "absl", "google.protobuf", "h5py"):
        warnings.filterwarnings("ignore", module=rf"{re.escape(module)}(\.|$)")


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
    from ncp_search.app.jsonio import write_json

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


def _about(seconds: float) -> str:
    return f"about {seconds:.0f} s" if seconds < 90 else f"about {seconds / 60:.0f} min"


def _zoo_plan_lines(plan: Sequence[PlannedModel], source: str, epochs: int, folder: Path,
                    listing: bool) -> list[str]:
    """What ``ncp-search zoo`` will do (or, with ``--list``, would do)."""
    todo = [m for m in plan if m.train]
    basis = ("from models trained here" if all(m.measured for m in todo)
             else "from reference times on a 2-core CPU; yours may differ several fold")
    lines = [f"zoo: cache folder {folder}"]
    if listing:
        for m in plan:
            state = f"to train, {_about(m.seconds)}" if m.train else "cached"
            lines.append(f"  {m.name:<12} {state:<24} {m.path}")
    cached = [m.name for m in plan if not m.train]
    if not todo:
        return [*lines, f"zoo: all {len(plan)} model(s) are cached; nothing to train"]
    verb = "would train" if listing else "will train"
    lines.append(f"zoo: {verb} {len(todo)} model(s) ({', '.join(m.name for m in todo)}) on "
                 f"{source} for {epochs} epoch(s): {_about(sum(m.seconds for m in todo))} "
                 f"({basis})" + (f"; cached: {', '.join(cached)}" if cached else ""))
    return lines


def _cmd_zoo(args: argparse.Namespace) -> int:
    from ncp_search.app.zoo import available_models, build_zoo, cache_folder, plan_zoo

    names = args.names or available_models()
    # The plan and the build read the same arguments, so the plan says what the build does.
    request = {"source": args.source, "epochs": args.epochs, "seed": args.seed,
               "cache_dir": args.cache_dir, "retrain": args.retrain}
    plan = plan_zoo(names, **request)
    for line in _zoo_plan_lines(plan, args.source, args.epochs, cache_folder(args.cache_dir),
                                args.list):
        print(line, flush=True)
    if args.list:
        return 0
    infos = build_zoo(names, progress=lambda line: print(line, flush=True), **request)
    print(f"{'model':<14} {'source':<18} {'epochs':>6} {'val_acc':>8} {'train_s':>8}")
    for name, info in infos.items():
        print(
            f"{name:<14} {info.get('source', ''):<18} {info.get('epochs', ''):>6} "
            f"{info.get('val_accuracy', float('nan')):>8.4f} "
            f"{info.get('train_seconds', float('nan')):>8.1f}"
        )
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ncp_search.app.sweep.results import format_summary
    from ncp_search.app.sweep.run import run_sweep

    if args.verbose:
        logging.getLogger("ncp_search").setLevel(logging.DEBUG)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose
                                 else optuna.logging.WARNING)
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
    from ncp_search.app.sweep.folder import refuse_symlinks
    from ncp_search.app.sweep.results import load_trials

    refuse_symlinks(args.output, ("report", "report.html"))
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


class _DefaultsHelp(argparse.HelpFormatter):
    """Help that ends each option's line with its default, unless the line says it or
    there is none (None, a flag that is off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "(default" in text or default is None or default is False or default == [] \
                or default == argparse.SUPPRESS:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ncp-search",
        description=("Early stopping for Keras hyperparameter search: trials judged by "
                     "their predicted final value; a sweep pauses the losers of each rung "
                     "and resumes the ones promoted later."),
    )
    verbose_help = ("debug logging, and TensorFlow's start-up lines and warnings (hidden "
                    "by default)")
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    common = argparse.ArgumentParser(add_help=False)  # --verbose after the subcommand too
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help=verbose_help)
    sub = parser.add_subparsers(dest="command", required=True)

    from ncp_search.app.zoo import ZooKey, available_models  # standard library only at import

    zoo_names = ", ".join(available_models())
    cache_help = ("model-zoo cache folder (default: $NCP_SEARCH_CACHE/zoo, else "
                  "~/.cache/ncp_search/zoo)")
    demo = sub.add_parser("demo", parents=[common],
                          formatter_class=_DefaultsHelp,
                          help="embedded default job: probe, beta_eff, prediction",
                          description="Fine-tune a probed zoo model on a target task and "
                          "print beta_eff per epoch and the predicted final accuracy.")
    demo.add_argument("--source-model", default="cnn_small",
                      help=f"zoo architecture, one of: {zoo_names}")
    demo.add_argument("--source", default="digits:0-4", help="source task of the zoo model")
    demo.add_argument("--target", default="digits:5-9", help="target task to fine-tune on")
    demo.add_argument("--epochs", type=int, default=15, help="fine-tuning epochs")
    demo.add_argument("--observe", type=int, default=4, help="epochs seen by the prediction")
    demo.add_argument("--hidden", type=_hidden, default=(64, 64, 64),
                      help="probe widths, comma-separated (default: 64,64,64)")
    demo.add_argument("--probe-samples", type=int, default=256, help="probe batch size")
    demo.add_argument("--learning-rate", type=float, default=1e-3, help="fine-tuning rate")
    demo.add_argument("--seed", type=int, default=0, help="seed of data, weights and probe")
    demo.add_argument("--cache-dir", default=None, help=cache_help)
    demo.add_argument("--json", default=None, help="also write the figures to this JSON file")
    demo.set_defaults(func=_cmd_demo)

    zoo = sub.add_parser("zoo", parents=[common],
                         formatter_class=_DefaultsHelp,
                         help="pre-train and cache the model zoo",
                         description="Pre-train the zoo's source models and cache them. It "
                         "first says which models it will train, where, and roughly how "
                         "long that takes (minutes on a CPU for all of them); --list stops "
                         "there.")
    zoo.add_argument("names", nargs="*", metavar="NAME",
                     help=f"architectures to train, of: {zoo_names} (default: all)")
    zoo.add_argument("--source", default=ZooKey.source, help="source task")
    zoo.add_argument("--epochs", type=int, default=ZooKey.epochs, help="training epochs")
    zoo.add_argument("--seed", type=int, default=ZooKey.seed, help="seed of data and weights")
    zoo.add_argument("--cache-dir", default=None, help=cache_help)
    zoo.add_argument("--retrain", action="store_true", help="ignore cached models")
    zoo.add_argument("--list", action="store_true",
                     help="list the models, whether each is cached and the estimated "
                     "training time, and train nothing")
    zoo.set_defaults(func=_cmd_zoo)

    swp = sub.add_parser("sweep", parents=[common],
                         help="run a config-driven sweep (it pauses and resumes trials by "
                         "default; or prunes them, with the pruner the config names)")
    swp.add_argument("config", help="sweep config (YAML), e.g. configs/quick.yaml")
    swp.add_argument("--backend", choices=["optuna", "ray"], default=None,
                     help="default: the config's backend (optuna)")
    swp.add_argument("--storage", default=None,
                     help="Optuna storage URL (default: SQLite in the output folder, or "
                     "$NCP_SEARCH_STORAGE, which keeps a password off the command line), "
                     "e.g. postgresql+psycopg2://user@host/db; Ray: the experiment "
                     "storage path")
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

    rep = sub.add_parser("report", parents=[common],
                         help="HTML report (and PNGs) of a sweep's output folder")
    rep.add_argument("output", help="the sweep's output folder")
    rep.add_argument("--storage", default=None,
                     help="Optuna storage URL when sweep.json hides its password (or "
                     "$NCP_SEARCH_STORAGE)")
    rep.set_defaults(func=_cmd_report)

    return parser


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run a parsed subcommand (``args.func``): logging set up, TensorFlow quiet
    unless ``args.verbose``, and bad input, file errors and Ctrl-C turned into one
    line and an exit code (2, 130)."""
    verbose = bool(getattr(args, "verbose", False))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    _quiet_tensorflow(verbose)
    try:
        if verbose:
            return int(args.func(args))
        with NativeLogFilter(), warnings.catch_warnings():
            _ignore_tensorflow_warnings()
            return int(args.func(args))
    except (ValueError, OSError, NCPSearchError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


# What the subcommands import beyond the base install (module: its distribution); the
# ``app`` extra installs them.
APP_MODULES = {"tensorflow": "tensorflow", "keras": "keras", "optuna": "optuna",
               "matplotlib": "matplotlib", "yaml": "pyyaml"}


def missing_app_distributions() -> list[str]:
    """The distributions of :data:`APP_MODULES` that cannot be imported (found without
    importing them)."""
    missing = []
    for module, distribution in APP_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(distribution)
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ncp-search`` console script: ``--help`` always works; a
    subcommand with a dependency of the ``app`` extra missing is one line and exit 2."""
    args = build_parser().parse_args(argv)
    missing = missing_app_distributions()
    if missing:
        print(f"ncp-search: error: the command line needs {', '.join(missing)}, which "
              f"{'is' if len(missing) == 1 else 'are'} not installed: "
              "pip install 'ncp-search[app]'", file=sys.stderr)
        return 2
    return run_command(args, "ncp-search")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
