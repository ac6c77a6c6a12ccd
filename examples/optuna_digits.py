"""An Optuna study on digits pruned by NCPPruner, fed by NCPCallback (offline).

Run:  python examples/optuna_digits.py [--trials 12] [--epochs 8] [--predictor best]
"""

from __future__ import annotations

import argparse

import optuna

import ncp_search
from ncp_search.app.data import load_task
from ncp_search.app.zoo import load_source_model
from ncp_search.engine.finetune import build_trial_models, compile_trial


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--predictor", default="best")
    parser.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    args = parser.parse_args()

    task = load_task("digits:5-9")
    x_probe, y_probe = task.probe_batch(256)

    def objective(trial: optuna.Trial) -> float:
        config = {
            "optimizer": trial.suggest_categorical("optimizer", ["sgd", "adam"]),
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 0.3, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        }
        source = load_source_model("mlp", source="digits:0-4", cache_dir=args.cache_dir)
        models = build_trial_models(source, task.num_classes, config, mode="observer")
        compile_trial(models.trained, config)
        callback = ncp_search.NCPCallback(trial, x_probe, y_probe, probed_model=models.probed)
        history = models.trained.fit(
            task.x_train, task.y_train, validation_data=(task.x_val, task.y_val),
            epochs=args.epochs, batch_size=64, verbose=0, callbacks=[callback],
        )
        return history.history["val_accuracy"][-1]

    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=ncp_search.NCPPruner(max_step=args.epochs - 1, predictor=args.predictor),
    )
    study.optimize(objective, n_trials=args.trials)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    print(f"{len(study.trials)} trials, {pruned} pruned; best {study.best_value:.4f} "
          f"with {study.best_params}")


if __name__ == "__main__":
    main()
