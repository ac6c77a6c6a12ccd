"""Attach a probe, log beta_eff each epoch, predict the final accuracy (offline).

Run:  python examples/engine_quickstart.py [--epochs 6]
"""

from __future__ import annotations

import argparse

import keras

import ncp_search
from ncp_search.app.data import load_task
from ncp_search.app.zoo import load_source_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    args = parser.parse_args()

    source = load_source_model("mlp", source="digits:0-4", cache_dir=args.cache_dir)
    task = load_task("digits:5-9")
    probed = ncp_search.attach_probe(source, task.num_classes, hidden=(64, 64, 64), seed=0)
    probed.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                   metrics=["accuracy"])
    x_probe, y_probe = task.probe_batch(256)
    history = probed.fit(
        task.x_train, task.y_train, epochs=args.epochs, verbose=0,
        validation_data=(task.x_val, task.y_val),
        callbacks=[ncp_search.BetaEffLogger(x_probe, y_probe)],
    )
    for epoch, (beta, acc) in enumerate(
        zip(history.history["beta_eff"], history.history["val_accuracy"]), start=1
    ):
        print(f"epoch {epoch}: beta_eff={beta:.5g} val_accuracy={acc:.4f}")
    final = ncp_search.AccuracyPredictor().fit(
        history.history["beta_eff"], history.history["val_accuracy"]
    ).predict_final()
    print(f"predicted final accuracy h(0) = {final.mean:.4f} +- {final.std:.4f}")


if __name__ == "__main__":
    main()
