"""A KerasProbeTrainable on digits, for the Ray tests (importable by Ray workers)."""

from __future__ import annotations

from ncp_search.integrations.ray.trainable import KerasProbeTrainable


class DigitsTrainable(KerasProbeTrainable):
    predictor = "ncp_raw"  # what the test's NCPScheduler reads: measure beta_eff
    def build(self, config):
        import keras

        from ncp_search.app.data import load_task
        from ncp_search.engine.finetune import build_trial_models, compile_trial

        task = load_task("digits:5-9")
        keras.utils.set_random_seed(0)
        source = keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(5, activation="softmax"),
        ])
        trial = {"optimizer": "sgd", "learning_rate": config["learning_rate"]}
        models = build_trial_models(source, 5, trial, mode="observer", hidden=(16, 16, 16))
        compile_trial(models.trained, trial)
        x_probe, y_probe = task.probe_batch(64)
        return {"trained": models.trained, "probed": models.probed, "x": task.x_train,
                "y": task.y_train, "x_val": task.x_val, "y_val": task.y_val,
                "x_probe": x_probe, "y_probe": y_probe}
