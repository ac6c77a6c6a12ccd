"""The embedded default job: fine-tune a probed source model and predict its final accuracy.

A source model from the local zoo (pre-trained on digits 0-4 and cached) gets a
frozen probe and is fine-tuned on digits 5-9 (scikit-learn's bundled data, so it
runs offline). Each epoch it prints ``beta_eff`` on a fixed probe batch, the
validation accuracy, and the final accuracy predicted so far (BayesianRidge on the
observed ``(beta_eff, val_accuracy)`` pairs, read at ``beta_eff = 0``); at the end
it compares the prediction made after ``observe`` epochs with the real final value.

It says what the numbers mean, and flags a prediction not to be trusted
(:func:`distrust_reasons`): one from fewer than :data:`MIN_TRUSTED_EPOCHS` epochs
(a line through two or three points, whose predictive std measures only how well
the line fits them), one outside ``[0, 1]`` (not an accuracy), and one read far
outside the observed ``beta_eff`` (``beta_eff = 0`` more than the observed range
away from it: a long extrapolation).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ncp_search.core.regression import AccuracyPredictor

MIN_TRUSTED_EPOCHS = 4  # rule of thumb: below this the predictive std means little
EXPLANATION = (
    "predicted final = h(0), where h is a Bayesian ridge line val_acc = h(beta_eff) fitted "
    "to the epochs seen so far (the paper's NCP predictor: beta_eff tends to 0 as training "
    "converges, so h(0) extrapolates to the end of training); +- is its predictive std.",
    f"From few epochs this extrapolates a line through few points: with fewer than "
    f"{MIN_TRUSTED_EPOCHS} epochs the +- only says how well the line fits them, not how far "
    "h(0) can be off. The last column says when a prediction is not to be trusted.",
)


def distrust_reasons(beta_effs: Sequence[float], accuracies: Sequence[float],
                     mean: float) -> list[str]:
    """Why a prediction ``mean`` from these observations is not to be trusted (empty
    when none of the checks fires; that is no guarantee either).

    Args:
        beta_effs: the ``beta_eff`` values it was fitted on (NaN ones are skipped).
        accuracies: the accuracies, in the same order.
        mean: the predicted final accuracy.
    """
    betas = [b for b, a in zip(beta_effs, accuracies) if math.isfinite(b) and math.isfinite(a)]
    reasons = []
    if len(betas) < MIN_TRUSTED_EPOCHS:
        reasons.append(f"from {len(betas)} epochs only")
    if not math.isfinite(mean):
        return reasons + ["no prediction"]
    if not 0.0 <= mean <= 1.0:
        reasons.append("outside [0, 1]: not an accuracy")
    if betas:
        low, high = min(betas), max(betas)
        gap = max(low, -high, 0.0)  # distance from beta_eff = 0 to the observed range
        span = high - low
        if span <= 0.0 and gap > 0.0:
            reasons.append("beta_eff did not vary")
        elif gap > span:
            reasons.append(f"beta_eff = 0 is {gap / span:.1f}x the observed range away")
    return reasons


def _prediction(beta_effs: Sequence[float], accuracies: Sequence[float]) -> tuple[float, float]:
    pairs = [(b, a) for b, a in zip(beta_effs, accuracies) if math.isfinite(b)]
    if len(pairs) < 2:
        return float("nan"), float("nan")
    b, a = zip(*pairs)
    return tuple(AccuracyPredictor().fit(b, a).predict_final())  # type: ignore[return-value]


def run_demo(
    *,
    source_model: str = "cnn_small",
    source: str = "digits:0-4",
    target: str = "digits:5-9",
    epochs: int = 15,
    observe: int = 4,
    hidden: Sequence[int] = (64, 64, 64),
    probe_samples: int = 256,
    learning_rate: float = 1e-3,
    seed: int = 0,
    cache_dir: str | None = None,
    out: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Run the demo and return its figures.

    Args:
        source_model: architecture name from the model zoo.
        source: source task the zoo pre-trains on (cached after the first run).
        target: target task to fine-tune on.
        epochs: fine-tuning epochs.
        observe: epochs after which the prediction is compared with the final value.
        hidden: probe hidden widths (>= 3 layers).
        probe_samples: size of the fixed probe batch (training samples).
        learning_rate: Adam learning rate for fine-tuning.
        seed: seed for the probe, the probe batch and training.
        cache_dir: model-zoo cache folder (default: the zoo's).
        out: where progress lines go.

    Returns:
        A dict with the per-epoch records and the prediction summary.
    """
    if epochs < 2 or not 2 <= observe <= epochs:
        raise ValueError(
            f"need epochs >= 2 and 2 <= observe <= epochs, but got epochs={epochs}, "
            f"observe={observe}."
        )
    import keras

    from ncp_search.app.data import load_task
    from ncp_search.app.zoo import load_source_model
    from ncp_search.engine.callbacks import BetaEffLogger
    from ncp_search.engine.probe import attach_probe

    out(f"source model {source_model!r} pre-trained on {source} (zoo cache) ...")
    model = load_source_model(
        source_model, source=source, seed=seed, cache_dir=cache_dir, progress=out
    )
    task = load_task(target, seed=seed)
    keras.utils.set_random_seed(seed)
    probed = attach_probe(model, task.num_classes, hidden=hidden, seed=seed)
    probed.compile(
        keras.optimizers.Adam(learning_rate),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    x_probe, y_probe = task.probe_batch(min(probe_samples, len(task.y_train)), seed=seed)
    meter = BetaEffLogger(x_probe, y_probe)
    out(
        f"fine-tuning on {task.name}: {len(task.y_train)} train / {len(task.y_val)} val samples, "
        f"probe {tuple(hidden)} -> {task.num_classes}, {epochs} epochs"
    )
    for line in EXPLANATION:
        out(line)
    out(f"{'epoch':>5} {'loss':>8} {'val_acc':>8} {'beta_eff':>12} {'predicted final':>18}  "
        "not to be trusted because")
    records: list[dict[str, Any]] = []

    def report(epoch: int, logs: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(logs["loss"]),
            "val_accuracy": float(logs["val_accuracy"]),
            "beta_eff": float(logs["beta_eff"]),
        }
        records.append(record)
        mean, std = _prediction(
            [r["beta_eff"] for r in records], [r["val_accuracy"] for r in records]
        )
        reasons = (distrust_reasons([r["beta_eff"] for r in records],
                                    [r["val_accuracy"] for r in records], mean)
                   if math.isfinite(mean) else [])
        record.update(predicted_final=mean, predicted_std=std, distrust=reasons)
        shown = f"{mean:.4f} +- {std:.4f}" if math.isfinite(mean) else "(needs 2 epochs)"
        out(
            f"{epoch + 1:>5} {record['train_loss']:>8.4f} {record['val_accuracy']:>8.4f} "
            f"{record['beta_eff']:>12.5g} {shown:>18}  {'; '.join(reasons)}".rstrip()
        )

    started = time.perf_counter()
    probed.fit(
        task.x_train,
        task.y_train,
        validation_data=(task.x_val, task.y_val),
        epochs=epochs,
        batch_size=32,
        callbacks=[meter, keras.callbacks.LambdaCallback(on_epoch_end=report)],
        verbose=0,
    )
    final = records[-1]["val_accuracy"]
    at_k = records[observe - 1]
    reasons = at_k["distrust"]
    summary = {
        "records": records,
        "observe": observe,
        "predicted_final_after_observe": at_k["predicted_final"],
        "predicted_std_after_observe": at_k["predicted_std"],
        "trusted_after_observe": not reasons,
        "distrust_after_observe": reasons,
        "last_value_after_observe": at_k["val_accuracy"],
        "final_val_accuracy": final,
        "seconds": time.perf_counter() - started,
    }
    predicted, std = at_k["predicted_final"], at_k["predicted_std"]
    out(
        f"after {observe} of {epochs} epochs: NCP predicted final "
        f"{predicted:.4f} +- {std:.4f}; the raw val accuracy "
        f"then was {at_k['val_accuracy']:.4f}; the real final val accuracy is {final:.4f} "
        f"(|error| NCP {abs(predicted - final):.4f}, "
        f"raw {abs(at_k['val_accuracy'] - final):.4f})."
    )
    if reasons:
        error = abs(predicted - final)
        times = f" (here {error / std:.0f} times)" if std > 0 and error > std else ""
        out(f"not to be trusted: {'; '.join(reasons)}. Its +- {std:.4f} is no error bar "
            "here: BayesianRidge estimates its noise from the points it fits, and with few "
            f"points, or far from them, the real error can be many times larger{times}.")
    else:
        out(f"none of the checks fires after {observe} epochs ({len(records[:observe])} "
            "points, inside [0, 1], beta_eff = 0 near the observed range); that is no "
            "guarantee.")
    out("The sweeps default to predictor 'best' (the best value so far), which ranked "
        "trials better than any beta_eff predictor in the prediction benchmark "
        "(docs/prediction); this demo shows the paper's predictor.")
    return summary
