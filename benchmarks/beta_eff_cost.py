"""Cost of one beta_eff measurement: as a fraction of one training epoch, and the
first call of each new trial against a steady call.

Reference workload (engine issue): Fashion-MNIST classes 5-9, 4,000 training
samples, the zoo's small CNN pre-trained on classes 0-4, probe 64-64-64-5, probe
batch 256. Measured side by side, interleaved, in one process:

- ``epoch``: one ``model.fit`` epoch over the 4,000 samples (Keras default batch
  size 32, and 128 for comparison), warm;
- ``meter``: ncp_search's compiled fast path (:class:`ncp_search.BetaEffMeter`:
  bottom forward pass on the batch + Hessian-vector products, float32);
- ``eager``: the same maths run eagerly (features by an eager forward pass, then
  ``beta_eff_terms_from_weights(..., compiled=False)``), i.e. a straightforward
  prototype.

First call of a trial (the issue "your own model"): every trial of a search builds
a new model, so a new meter. For ``--trials`` trials of one architecture, in one
process, before anything else is measured, each trial builds its model (a clone of
the source with a new probe), then, side by side on the same model:

- ``shared``: ``BetaEffMeter(...)`` as shipped (one compiled function per
  architecture and process, the weights passed as arguments): its construction,
  first call and steady calls; the first trial's first call traces (``cold``);
- ``per meter``: ``BetaEffMeter(..., share_trace=False)``, the behaviour before
  (each meter traces its own function on its first call).

The same is measured on the user's own model of ``examples/own_model_optuna.py``
(a Sequential MLP on scikit-learn's digits, 64 flat inputs, 64 hidden units,
observer probe 64-64-64-10), which needs no data download or pre-training.

Run:  python benchmarks/beta_eff_cost.py [--rounds 7] [--trials 6]
          [--json docs/cost/beta_eff_cost.json] [--text docs/cost/beta_eff_cost.txt]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any


def _timed(fn, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def _clocked(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def first_calls(new_probed: Callable[[], Any], x: Any, y: Any, trials: int,
                calls: int) -> dict[str, Any]:
    """Construction, first and steady calls of the shared and per-meter paths on
    ``trials`` new models of one architecture (``new_probed()`` builds one).

    Each figure is taken in wall-clock time and in CPU time of this process: on a
    machine shared with other jobs a single call (a first call is one sample) is
    often preempted, which inflates its wall time but not its CPU time; the steady
    figure is the median of ``calls`` single calls, so both are the same statistic.
    The garbage collector runs before each trial, so that a collection of the
    previous trial's objects is not counted against its first call."""
    from ncp_search import BetaEffMeter

    rows = []
    for trial in range(trials):
        probed = new_probed()
        gc.collect()
        row: dict[str, Any] = {"trial": trial}
        for name, share in (("shared", True), ("per_meter", False)):
            wall, cpu = time.perf_counter(), time.process_time()
            meter = BetaEffMeter(probed, x, y, share_trace=share)
            row[f"{name}_build_wall"] = time.perf_counter() - wall
            row[f"{name}_build_cpu"] = time.process_time() - cpu
            for clock, value in zip(("wall", "cpu"), _clocked(meter)):
                row[f"{name}_first_{clock}"] = value
            steady = [_clocked(meter) for _ in range(calls)]
            row[f"{name}_steady_wall"] = statistics.median(w for w, _ in steady)
            row[f"{name}_steady_cpu"] = statistics.median(c for _, c in steady)
            row[f"{name}_traces"] = meter.traces
        rows.append(row)
        print(f"  trial {trial}: " + ", ".join(
            f"{k[:-5]} {v * 1e3:.1f} ms" for k, v in row.items() if k.endswith("_wall")),
            flush=True)
    later = rows[1:]

    def med(key: str, among: list[dict[str, Any]]) -> float:
        return statistics.median(r[key] for r in among)

    summary: dict[str, Any] = {"trials": trials,
                               "shared_traces_after_all_trials": rows[-1]["shared_traces"]}
    for clock in ("wall", "cpu"):
        summary[clock] = {
            "cold_first": rows[0][f"shared_first_{clock}"],
            "shared_first": med(f"shared_first_{clock}", later),
            "shared_steady": med(f"shared_steady_{clock}", rows),
            "shared_build": med(f"shared_build_{clock}", later),
            "per_meter_first": med(f"per_meter_first_{clock}", rows),
            "per_meter_steady": med(f"per_meter_steady_{clock}", rows),
            "per_meter_build": med(f"per_meter_build_{clock}", rows),
        }
        figures = summary[clock]
        figures["shared_first_over_steady"] = figures["shared_first"] / figures["shared_steady"]
        figures["per_meter_first_over_steady"] = (figures["per_meter_first"]
                                                  / figures["per_meter_steady"])
    summary["rows"] = rows
    return summary


def first_call_lines(title: str, s: dict[str, Any]) -> list[str]:
    lines = [f"{title} ({s['trials']} trials, one process; medians over trials "
             f"2..{s['trials']}; traced {s['shared_traces_after_all_trials']}x in all):"]
    for clock, label in (("cpu", "CPU time"), ("wall", "wall time")):
        f = s[clock]
        lines += [
            f"  {label}: shared trace (shipped): first call {f['shared_first'] * 1e3:.1f} ms, "
            f"steady {f['shared_steady'] * 1e3:.1f} ms, ratio "
            f"{f['shared_first_over_steady']:.2f} (target <= 2); meter construction "
            f"{f['shared_build'] * 1e3:.1f} ms",
            f"  {label}: first trial in the process (cold, traces once): "
            f"{f['cold_first'] * 1e3:.0f} ms",
            f"  {label}: per-meter trace (before): first call "
            f"{f['per_meter_first'] * 1e3:.0f} ms, steady {f['per_meter_steady'] * 1e3:.1f} ms, "
            f"ratio {f['per_meter_first_over_steady']:.0f}",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20, help="beta_eff calls per round")
    parser.add_argument("--trials", type=int, default=6,
                        help="new models per first-call measurement (>= 2)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--text", default=None, help="write the printed summary here too")
    args = parser.parse_args()
    if args.trials < 2:
        parser.error("--trials must be >= 2 (the first trial is the cold one)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    from ncp_search import BetaEffMeter, attach_probe, observer_probe, probe_batch, split_probe
    from ncp_search.app.data import load_fashion_mnist
    from ncp_search.app.zoo import load_source_model
    from ncp_search.engine.capacitance import beta_eff_terms_from_weights

    source = load_source_model("cnn_small", source="fashion_mnist:0-4", progress=print)
    task = load_fashion_mnist(classes=(5, 6, 7, 8, 9), n_train=4000, seed=0)
    keras.utils.set_random_seed(0)
    x_probe, y_probe = task.probe_batch(256, seed=0)

    # First calls before anything else traces, so that trial 1 is really cold.
    print("first calls, reference workload (cnn_small, Fashion-MNIST 5-9):", flush=True)
    cnn = first_calls(lambda: attach_probe(source, num_classes=5, hidden=(64, 64, 64),
                                           clone=True),
                      x_probe, y_probe, args.trials, args.calls)

    from sklearn.datasets import load_digits

    digits_x, digits_y = load_digits(return_X_y=True)
    digits_x = (digits_x / 16.0).astype("float32")
    mlp_probe = probe_batch(digits_x, digits_y, n=256, seed=0)

    def own_mlp() -> Any:
        model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        return observer_probe(model)

    print("first calls, own model (digits MLP, observer probe):", flush=True)
    mlp = first_calls(own_mlp, *mlp_probe, args.trials, args.calls)

    probed = attach_probe(source, num_classes=5, hidden=(64, 64, 64), clone=True)
    probed.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    meter = BetaEffMeter(probed, x_probe, y_probe)
    parts = split_probe(probed)

    def epoch(batch_size):
        return lambda: probed.fit(
            task.x_train, task.y_train, epochs=1, batch_size=batch_size, verbose=0
        )

    def eager():
        features = parts.feature_model(x_probe, training=False).numpy()
        kernels = [k.numpy() for k in parts.kernels]
        return beta_eff_terms_from_weights(
            kernels, features, y_probe, precision="float32", compiled=False
        )

    epoch(32)()  # warm-up: builds the train function
    epoch(128)()
    meter()
    eager()
    times: dict[str, list[float]] = {"epoch32": [], "epoch128": [], "meter": [], "eager": []}
    for round_ in range(args.rounds):
        times["epoch32"].append(_timed(epoch(32)))
        times["meter"].append(_timed(meter, args.calls))
        times["epoch128"].append(_timed(epoch(128)))
        times["eager"].append(_timed(eager, max(1, args.calls // 4)))
        print(f"round {round_ + 1}/{args.rounds}: " + ", ".join(
            f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()
        ), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "median_seconds": med,
        "meter_over_epoch32": med["meter"] / med["epoch32"],
        "meter_over_epoch128": med["meter"] / med["epoch128"],
        "eager_over_epoch32": med["eager"] / med["epoch32"],
        "eager_over_meter": med["eager"] / med["meter"],
        "rounds": args.rounds,
        "calls": args.calls,
        "beta_eff": meter().beta_eff,
        "first_call": {"cnn_small_fashion": cnn, "own_mlp_digits": mlp},
        "cold_first_over_epoch32": cnn["wall"]["cold_first"] / med["epoch32"],
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }
    lines = [
        f"median epoch (batch 32): {med['epoch32'] * 1e3:.0f} ms; epoch (batch 128): "
        f"{med['epoch128'] * 1e3:.0f} ms",
        f"beta_eff compiled (BetaEffMeter): {med['meter'] * 1e3:.2f} ms = "
        f"{100 * result['meter_over_epoch32']:.2f}% of an epoch at batch 32, "
        f"{100 * result['meter_over_epoch128']:.2f}% at batch 128",
        f"beta_eff eager prototype: {med['eager'] * 1e3:.1f} ms = "
        f"{100 * result['eager_over_epoch32']:.1f}% of an epoch at batch 32 "
        f"({result['eager_over_meter']:.0f}x the compiled path)",
        "",
        *first_call_lines("first call of a new trial, cnn_small on Fashion-MNIST", cnn),
        f"  the cold first call is {100 * result['cold_first_over_epoch32']:.0f}% of one "
        "epoch at batch 32, once per process",
        *first_call_lines("first call of a new trial, own MLP on digits", mlp),
        "",
        f"{os.cpu_count()} CPUs, load average {np.round(os.getloadavg(), 1).tolist()} "
        "(other jobs on the machine inflate every figure alike)",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    if args.text:
        os.makedirs(os.path.dirname(os.path.abspath(args.text)), exist_ok=True)
        with open(args.text, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
