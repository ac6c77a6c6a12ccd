"""A Ray Tune sweep on digits stopped by NCPScheduler; beta_eff is computed by a
method of each trial's actor (KerasProbeTrainable). Offline, local Ray.

Run:  python examples/ray_digits.py [--trials 8] [--epochs 6] [--address auto]
"""

from __future__ import annotations

import argparse
import tempfile

import ray
from ray import tune

import ncp_search
from ncp_search.integrations.ray.trainable import KerasProbeTrainable, trial_resources


class DigitsTrainable(KerasProbeTrainable):
    """Fine-tunes the zoo MLP (pre-trained on digits 0-4) on digits 5-9."""

    # NCPScheduler's default predictor reads no beta_eff, so the default measure="auto"
    # would measure nothing; record it anyway (or set predictor = "ncp_raw" here and
    # in NCPScheduler to decide with it).
    measure = "always"

    def build(self, config: dict) -> dict:
        from ncp_search.app.data import load_task
        from ncp_search.app.zoo import load_source_model
        from ncp_search.engine.finetune import build_trial_models, compile_trial

        task = load_task("digits:5-9")
        source = load_source_model("mlp", source="digits:0-4", epochs=10,
                                   cache_dir=config.get("cache_dir"))
        trial = {k: config[k] for k in ("optimizer", "learning_rate")}
        models = build_trial_models(source, task.num_classes, trial, mode="observer")
        compile_trial(models.trained, trial)
        x_probe, y_probe = task.probe_batch(256)
        return {"trained": models.trained, "probed": models.probed, "x": task.x_train,
                "y": task.y_train, "x_val": task.x_val, "y_val": task.y_val,
                "x_probe": x_probe, "y_probe": y_probe}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--cache-dir", default=None, help="model-zoo cache folder")
    args = parser.parse_args()

    if args.address:
        ray.init(address=args.address)
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="ncp_ray_example_")
    try:
        tuner = tune.Tuner(
            tune.with_resources(DigitsTrainable, trial_resources()),  # GPUs when Ray has them
            param_space={"optimizer": tune.choice(["sgd", "adam"]),
                         "learning_rate": tune.loguniform(1e-4, 0.3),
                         "cache_dir": args.cache_dir},
            tune_config=tune.TuneConfig(
                metric="val_accuracy", mode="max", num_samples=args.trials,
                scheduler=ncp_search.NCPScheduler(max_t=args.epochs)),
            run_config=tune.RunConfig(storage_path=storage, name="ray_digits", verbose=0,
                                      stop={"training_iteration": args.epochs}),
        )
        results = tuner.fit()
    finally:
        ray.shutdown()
    stopped = sum(len(r.metrics_dataframe) < args.epochs for r in results
                  if r.metrics_dataframe is not None)
    best = results.get_best_result()
    print(f"{len(results)} trials, {stopped} stopped early; best val_accuracy "
          f"{best.metrics['val_accuracy']:.4f} with {best.config['optimizer']}, "
          f"learning_rate {best.config['learning_rate']:.2e}")


if __name__ == "__main__":
    main()
