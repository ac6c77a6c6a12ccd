"""Training cost of each zoo architecture: milliseconds per sample-epoch.

Trains every architecture of ``ncp_search.app.zoo`` for one epoch (after a short
warm-up fit that traces it) on a Fashion-MNIST subset, validation included, and
prints the epoch's seconds and the cost per sample-epoch with a validation sample
counted as a third of a training one: the figures ``REFERENCE_MS_PER_SAMPLE`` in
``ncp_search/app/zoo.py`` holds (what ``ncp-search zoo`` estimates its run time
from when the cache has no model of the same architecture to measure from).

    python benchmarks/zoo_cost.py [--n-train 6000]
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="fashion_mnist:0-4")
    parser.add_argument("--n-train", type=int, default=6000)
    args = parser.parse_args(argv)

    import keras

    from ncp_search.app.data import load_task
    from ncp_search.app.zoo import ARCHITECTURES, REFERENCE_MS_PER_SAMPLE

    task = load_task(args.source, seed=0, n_train=args.n_train)
    work = len(task.y_train) + len(task.y_val) / 3
    print(f"{args.source}: {len(task.y_train)} training, {len(task.y_val)} validation samples")
    print(f"{'model':<12} {'epoch_s':>8} {'ms/sample':>10} {'in zoo.py':>10}")
    for name in sorted(ARCHITECTURES):
        model = ARCHITECTURES[name](task.x_train.shape[1:], task.num_classes, 0)
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(task.x_train[:256], task.y_train[:256], batch_size=128, epochs=1, verbose=0)
        started = time.perf_counter()
        model.fit(task.x_train, task.y_train, batch_size=128, epochs=1, verbose=0,
                  validation_data=(task.x_val, task.y_val))
        seconds = time.perf_counter() - started
        print(f"{name:<12} {seconds:>8.2f} {1000 * seconds / work:>10.3f} "
              f"{REFERENCE_MS_PER_SAMPLE.get(name, float('nan')):>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
