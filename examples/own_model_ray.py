"""Your own Keras model on Ray Tune: NCPTuneCallback and NCPScheduler on a plain MLP
(scikit-learn's digits, 64 flat features, offline, local Ray; no model zoo).

Run:  python examples/own_model_ray.py [--trials 12] [--epochs 15] [--address auto]
"""

from __future__ import annotations

import argparse
import tempfile

# [snippet: own_model_ray]
import keras
from ray import tune
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import ncp_search


def train(config: dict) -> None:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0)
    x_probe, y_probe = ncp_search.probe_batch(x_train, y_train, n=256, seed=0)
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Dense(config["units"], activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(keras.optimizers.Adam(config["learning_rate"]),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    # Each epoch: beta_eff and the probe terms (probe_<name>) from a frozen probe beside
    # the model's own head, reported with the metrics and a checkpoint via ray.tune.report.
    # measure="always": the default scheduler's predictor does not read beta_eff, so by
    # default nothing would be measured (pass predictor= as given to NCPScheduler instead).
    model.fit(x_train, y_train, validation_data=(x_val, y_val), epochs=config["epochs"],
              batch_size=64, verbose=0,
              callbacks=[ncp_search.NCPTuneCallback(x_probe, y_probe,
                                                    metrics=["val_accuracy", "loss"],
                                                    measure="always")])


def tune_digits(epochs: int = 15, n_trials: int = 12,
                storage_path: str | None = None) -> tune.ResultGrid:
    tuner = tune.Tuner(
        train,
        param_space={"units": tune.lograndint(16, 128),
                     "learning_rate": tune.loguniform(1e-4, 0.3), "epochs": epochs},
        tune_config=tune.TuneConfig(
            metric="val_accuracy", mode="max", num_samples=n_trials,
            scheduler=ncp_search.NCPScheduler(max_t=epochs),
            reuse_actors=True),  # later trials in an actor skip TF's start-up and tracing
        run_config=tune.RunConfig(storage_path=storage_path, name="own_model_ray", verbose=0),
    )
    return tuner.fit()
# [end snippet]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    args = parser.parse_args()

    import ray

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results = tune_digits(args.epochs, args.trials,
                              storage_path=tempfile.mkdtemp(prefix="ncp_own_model_ray_"))
    finally:
        ray.shutdown()
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise SystemExit(f"{len(errors)} trials failed; the first: {errors[0]!r}")
    stopped = sum(len(r.metrics_dataframe) < args.epochs for r in results)
    best = results.get_best_result()
    print(f"{len(results)} trials, {stopped} stopped early; best val_accuracy "
          f"{best.metrics['val_accuracy']:.4f} with {best.config['units']} units, "
          f"learning_rate {best.config['learning_rate']:.2e}; beta_eff reported: "
          f"{best.metrics['beta_eff']:.4g}")


if __name__ == "__main__":
    main()
