"""Cost of one beta_eff measurement as a fraction of one training epoch.

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

Run:  python benchmarks/beta_eff_cost.py [--rounds 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def _timed(fn, repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20, help="beta_eff calls per round")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras

    from ncp_search import BetaEffMeter, attach_probe, split_probe
    from ncp_search.app.data import load_fashion_mnist
    from ncp_search.app.zoo import load_source_model
    from ncp_search.engine.capacitance import beta_eff_terms_from_weights

    source = load_source_model("cnn_small", source="fashion_mnist:0-4", progress=print)
    task = load_fashion_mnist(classes=(5, 6, 7, 8, 9), n_train=4000, seed=0)
    keras.utils.set_random_seed(0)
    probed = attach_probe(source, num_classes=5, hidden=(64, 64, 64), clone=True)
    probed.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    x_probe, y_probe = task.probe_batch(256, seed=0)
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
    }
    print(
        f"\nmedian epoch (batch 32): {med['epoch32'] * 1e3:.0f} ms; epoch (batch 128): "
        f"{med['epoch128'] * 1e3:.0f} ms\n"
        f"beta_eff compiled (BetaEffMeter): {med['meter'] * 1e3:.2f} ms = "
        f"{100 * result['meter_over_epoch32']:.2f}% of an epoch at batch 32, "
        f"{100 * result['meter_over_epoch128']:.2f}% at batch 128\n"
        f"beta_eff eager prototype: {med['eager'] * 1e3:.1f} ms = "
        f"{100 * result['eager_over_epoch32']:.1f}% of an epoch at batch 32 "
        f"({result['eager_over_meter']:.0f}x the compiled path)"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
