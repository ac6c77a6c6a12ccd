"""CPU cost per epoch of the pruning callbacks, side by side: does the default
NCPCallback cost more than Optuna's own ``KerasPruningCallback``?

Workload (the user's own model of issue 19): a Fashion-MNIST MLP (784-128-10, Adam,
batch 64) on ``--train`` training samples, validated on ``--val``, fit for ``--epochs``
epochs; probe batch of 256 training samples, observer probe 64-64-64-10. Each
variant runs in a fresh Python process (so each pays what it costs once per
process: attaching the probe, tracing the meter), in interleaved order, ``--repeats``
times; a variant's figure is the median over its repeats of the process CPU time
(``time.process_time``, all threads) of ``model.fit`` divided by the epochs. The
study is in memory and holds ``--completed`` completed trials with low curves, so
the pruner decides on a real pool every epoch and never stops the measured trial.
The CPU time of the callbacks' own hooks (``on_train_begin``, ``on_epoch_end``,
``on_train_end``) is also measured, per epoch: it isolates what a callback adds from
the fit-to-fit variation of training itself.

Variants:

- ``plain fit``: ``model.fit`` with no callback;
- ``KerasPruningCallback``: optuna-integration's callback, with ``NCPPruner()``
  (when optuna-integration is not installed, a minimal callback that does what it
  does: ``trial.report`` then ``trial.should_prune`` each epoch, named so);
- ``NCPCallback default``: ``NCPCallback(trial, x_probe, y_probe)`` with
  ``NCPPruner()`` (predictor ``best``: ``measure="auto"`` measures nothing);
- ``NCPCallback ncp_raw``: the same with ``NCPPruner(predictor="ncp_raw")``, which
  reads ``beta_eff``, so it is measured every epoch.

TensorFlow runs with ``--threads`` intra- and inter-op threads (default 1, so CPU
seconds do not include other threads' spinning; the ratios are what matter).

Run:  python benchmarks/probe_cpu.py [--repeats 5] [--epochs 10] [--train 10000]
          [--val 2000] [--completed 8] [--threads 1] [--text docs/cost/probe_cpu.txt]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

VARIANTS = ("plain", "keras_pruning", "ncp_default", "ncp_raw")
LABELS = {"plain": "plain fit", "keras_pruning": "KerasPruningCallback",
          "ncp_default": "NCPCallback default", "ncp_raw": "NCPCallback ncp_raw"}
ROOT = Path(__file__).resolve().parent.parent


def run_variant(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One repeat of ``variant`` in this process (the child side)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import time

    import keras
    import optuna
    import tensorflow as tf

    import ncp_search
    from ncp_search.app.data import load_fashion_mnist

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = load_fashion_mnist(n_train=args.train, n_val=args.val, seed=0)
    x_train = task.x_train.reshape(len(task.x_train), -1)
    x_val = task.x_val.reshape(len(task.x_val), -1)
    x_probe, y_probe = ncp_search.probe_batch(x_train, task.y_train, n=256, seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])

    callbacks: list[Any] = []
    reference = "optuna-integration"
    if variant != "plain":
        pruner = ncp_search.NCPPruner(
            predictor="ncp_raw" if variant == "ncp_raw" else "best", max_step=args.epochs - 1)
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for number in range(args.completed):  # a pool the pruner decides on, all below
            curve = {step: 0.05 + 0.001 * (number + step) for step in range(args.epochs)}
            study.add_trial(optuna.trial.create_trial(
                value=curve[args.epochs - 1], intermediate_values=curve,
                user_attrs={"ncp_beta_eff": {str(s): 1.0 for s in curve}}))
        trial = study.ask()
        if variant == "keras_pruning":
            callback, reference = keras_pruning_callback(trial, optuna)
            callbacks.append(callback)
        else:
            callbacks.append(ncp_search.NCPCallback(trial, x_probe, y_probe))
    hooks = {"cpu_s": 0.0}
    for callback in callbacks:  # the callbacks' own CPU time, apart from training's
        for name in ("on_train_begin", "on_epoch_end", "on_train_end"):
            setattr(callback, name, _timed(getattr(callback, name), hooks, time.process_time))
    started = time.process_time()
    history = model.fit(x_train, task.y_train, validation_data=(x_val, task.y_val),
                        epochs=args.epochs, batch_size=64, verbose=0, callbacks=callbacks)
    cpu = time.process_time() - started
    epochs = len(history.history["val_accuracy"])
    measured = bool(getattr(callbacks[0], "measuring", False)) if callbacks else False
    return {"variant": variant, "cpu_s": cpu, "hooks_cpu_s": hooks["cpu_s"], "epochs": epochs,
            "measured": measured, "reference": reference}


def _timed(hook: Any, total: dict[str, float], clock: Any) -> Any:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        try:
            return hook(*args, **kwargs)
        finally:
            total["cpu_s"] += clock() - started

    return timed


def keras_pruning_callback(trial: Any, optuna: Any) -> tuple[Any, str]:
    """optuna-integration's KerasPruningCallback, or the minimal stand-in."""
    try:
        from optuna_integration import KerasPruningCallback
    except ImportError:
        import keras

        class ReportPerEpoch(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                trial.report(float((logs or {})["val_accuracy"]), step=epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"Trial was pruned at epoch {epoch}.")

        return ReportPerEpoch(), "minimal report-per-epoch stand-in"
    return KerasPruningCallback(trial, "val_accuracy"), "optuna-integration"


def child(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one repeat of ``variant`` in a fresh process; its JSON line."""
    command = [sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs),
               "--train", str(args.train), "--val", str(args.val),
               "--completed", str(args.completed), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    per_epoch = {v: [r["cpu_s"] / r["epochs"] for r in rows if r["variant"] == v]
                 for v in VARIANTS}
    median = {v: statistics.median(values) for v, values in per_epoch.items()}
    hooks = {v: statistics.median([1000 * r["hooks_cpu_s"] / r["epochs"] for r in rows
                                   if r["variant"] == v]) for v in VARIANTS}
    reference = next((r["reference"] for r in rows if r["variant"] == "keras_pruning"), "")
    options = ("repeats", "epochs", "train", "val", "completed", "threads")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        "# python benchmarks/probe_cpu.py " + " ".join(
            f"--{k} {getattr(args, k)}" for k in options),
        f"# {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs (load average at the end: {load}); "
        f"KerasPruningCallback: {reference}",
        f"# Fashion-MNIST MLP 784-128-10, {args.train} training samples, {args.epochs} "
        f"epochs per fit, fresh process per fit, median of {args.repeats} fits",
        "",
        f"{'variant':<24} {'CPU s/epoch':>11} {'min':>8} {'max':>8} {'measured':>9} "
        f"{'/plain':>7} {'/KerasPruning':>13} {'callback ms/epoch':>17}",
    ]
    for v in VARIANTS:
        measured = any(r["measured"] for r in rows if r["variant"] == v)
        lines.append(
            f"{LABELS[v]:<24} {median[v]:>11.4f} {min(per_epoch[v]):>8.4f} "
            f"{max(per_epoch[v]):>8.4f} {'yes' if measured else 'no':>9} "
            f"{median[v] / median['plain']:>7.3f} {median[v] / median['keras_pruning']:>13.3f} "
            f"{hooks[v]:>17.2f}")
    ratio = median["ncp_default"] / median["keras_pruning"]
    extra = (hooks["ncp_default"] - hooks["keras_pruning"]) / 1000 / median["plain"]
    lines += [
        "",
        f"NCPCallback default / KerasPruningCallback: {ratio:.3f} ({100 * (ratio - 1):+.1f}%; "
        f"target within +5%: {'met' if ratio <= 1.05 else 'NOT met'})",
        f"NCPCallback ncp_raw / NCPCallback default: "
        f"{median['ncp_raw'] / median['ncp_default']:.3f} (the cost of measuring beta_eff "
        "each epoch, one-off tracing included)",
        f"The callbacks' own CPU per epoch (their hooks): NCPCallback default "
        f"{hooks['ncp_default']:.2f} ms against KerasPruningCallback "
        f"{hooks['keras_pruning']:.2f} ms, {100 * extra:+.2f}% of a plain epoch; NCPCallback "
        f"ncp_raw {hooks['ncp_raw']:.1f} ms. Whole fits vary more than that from one to the "
        "next on a shared machine (min and max above).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train", type=int, default=10000)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--completed", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--text", default=None, help="also write the table here")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, args)))
        return
    rows = []
    for repeat in range(args.repeats):
        order = VARIANTS[repeat % len(VARIANTS):] + VARIANTS[:repeat % len(VARIANTS)]
        for variant in order:
            rows.append(child(variant, args))
            print(f"repeat {repeat + 1}/{args.repeats} {LABELS[variant]}: "
                  f"{rows[-1]['cpu_s'] / rows[-1]['epochs']:.4f} CPU s/epoch", file=sys.stderr)
    text = report(rows, args)
    print(text, end="")
    if args.text:
        Path(args.text).parent.mkdir(parents=True, exist_ok=True)
        Path(args.text).write_text(text)


if __name__ == "__main__":
    main()
