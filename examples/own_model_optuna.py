"""Your own Keras model on Optuna: NCPCallback and NCPPruner on a plain MLP
(scikit-learn's digits, 64 flat features, offline; no model zoo).

Run:  python examples/own_model_optuna.py [--trials 20] [--epochs 15]
"""

from __future__ import annotations

import argparse
import logging

# [snippet: own_model_optuna]
import keras
import optuna
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import ncp_search


def tune(epochs: int = 15, n_trials: int = 20) -> optuna.Study:
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=0)
    # A fixed, class-balanced batch: beta_eff is measured on it when the pruner reads it.
    x_probe, y_probe = ncp_search.probe_batch(x_train, y_train, n=256, seed=0)

    def objective(trial: optuna.Trial) -> float:
        model = keras.Sequential([
            keras.Input((64,)),
            keras.layers.Dense(trial.suggest_int("units", 16, 128, log=True),
                               activation="relu"),
            keras.layers.Dropout(trial.suggest_float("dropout", 0.0, 0.5)),
            keras.layers.Dense(10, activation="softmax"),
        ])
        learning_rate = trial.suggest_float("learning_rate", 1e-4, 0.3, log=True)
        model.compile(keras.optimizers.Adam(learning_rate), "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        # The callback reports val_accuracy each epoch and prunes; when the pruner's
        # predictor reads beta_eff (e.g. NCPPruner(predictor="ncp_raw")) it also measures
        # it on a frozen probe beside the model's own head (the probe only observes).
        history = model.fit(
            x_train, y_train, validation_data=(x_val, y_val), epochs=epochs, batch_size=64,
            verbose=0, callbacks=[ncp_search.NCPCallback(trial, x_probe, y_probe)])
        return history.history["val_accuracy"][-1]

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0),
        pruner=ncp_search.NCPPruner(max_step=epochs - 1))
    study.optimize(objective, n_trials=n_trials)
    return study
# [end snippet]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    # One line from ncp_search says which rule and predictor decide, and whether
    # they use beta_eff.
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("ncp_search").setLevel(logging.INFO)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    study = tune(epochs=args.epochs, n_trials=args.trials)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    print(f"{len(study.trials)} trials, {pruned} pruned; best val_accuracy "
          f"{study.best_value:.4f} with {study.best_params}")


if __name__ == "__main__":
    main()
