"""Cost of a pause: one checkpoint save and one restore against one training epoch.

A trial that a pausing scheduler (``NCPScheduler`` with a ``PausingPolicy``, Tune's
``HyperBandScheduler``) pauses and resumes writes a checkpoint at the rung and reads
it back at the resume (:mod:`ncp_search.integrations.ray.checkpoint`). Workload: a
trial of ``configs/quick.yaml`` (the zoo's small CNN pre-trained on digits 0-4,
fine-tuned on digits 5-9, Adam, dropout 0.2, batch size 64, as the sweep runs it).
Measured side by side, interleaved, in one process, each round:

- ``epoch``: one ``model.fit`` epoch on the training split, with validation (what
  the sweep runs per epoch, beta_eff not included);
- ``save``: :func:`~ncp_search.integrations.ray.checkpoint.save_keras` (``model.keras``
  with the optimizer state, plus the epoch and seed states) into a fresh folder;
- ``copy``: copying that folder to another one (what ``tune.report(checkpoint=...)``
  does with local storage);
- ``restore``: :func:`~ncp_search.integrations.ray.checkpoint.load_keras` into a
  model built and compiled again (the rebuild is not counted: a resumed trainable
  builds its model as a new one does).

Run:  python benchmarks/checkpoint_cost.py [--rounds 7] [--config configs/quick.yaml]
          [--text docs/cost/checkpoint_cost.txt]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

PARAMS = {"optimizer": "adam", "learning_rate": 1e-3, "dropout": 0.2}


def _timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--config", default="configs/quick.yaml")
    parser.add_argument("--text", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, but got {args.rounds}.")

    import keras

    from ncp_search.app.sweep.config import load_sweep_config
    from ncp_search.app.sweep.trial import load_data, load_source
    from ncp_search.engine.finetune import build_trial_models, compile_trial
    from ncp_search.integrations.ray.checkpoint import load_keras, save_keras

    config = load_sweep_config(args.config)
    data = load_data(config)
    task = data.task

    def trial_model() -> Any:
        keras.utils.set_random_seed(0)
        source = load_source(config, PARAMS, task.num_classes)
        models = build_trial_models(source, task.num_classes, PARAMS, mode=config["mode"],
                                    hidden=tuple(config["probe"]["hidden"]))
        compile_trial(models.trained, PARAMS)
        return models.trained

    def epoch() -> None:
        model.fit(task.x_train, task.y_train, validation_data=(task.x_val, task.y_val),
                  epochs=1, batch_size=64, verbose=0)

    model = trial_model()
    epoch()  # warm: traced train and test steps, built optimizer
    root = tempfile.mkdtemp(prefix="checkpoint_cost_")
    rows: dict[str, list[float]] = {"epoch": [], "save": [], "copy": [], "restore": []}
    size = 0
    try:
        for round_ in range(args.rounds):
            folder, copied = os.path.join(root, f"c{round_}"), os.path.join(root, f"t{round_}")
            rows["epoch"].append(_timed(epoch))
            rows["save"].append(_timed(save_keras, model, folder, round_ + 1))
            rows["copy"].append(_timed(shutil.copytree, folder, copied))
            fresh = trial_model()
            rows["restore"].append(_timed(load_keras, fresh, copied))
            size = sum(os.path.getsize(os.path.join(copied, name))
                       for name in os.listdir(copied))
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med = {key: statistics.median(values) for key, values in rows.items()}
    pause = med["save"] + med["copy"] + med["restore"]
    command = "python benchmarks/checkpoint_cost.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    lines = [
        f"$ {command.strip()}",
        f"workload: {args.config} trial ({config['source']['zoo']} on {task.name}, "
        f"{len(task.y_train)} training / {len(task.y_val)} validation samples, batch 64, "
        f"{PARAMS}); checkpoint {size / 1e6:.2f} MB; median of {args.rounds} rounds, "
        f"keras {keras.__version__} ({keras.backend.backend()}), {os.cpu_count()} CPUs",
        "",
        f"{'':<34}{'seconds':>10}{'x epoch':>10}",
        f"{'one epoch (fit + validation)':<34}{med['epoch']:>10.3f}{1.0:>10.2f}",
        f"{'save (save_keras)':<34}{med['save']:>10.3f}{med['save'] / med['epoch']:>10.2f}",
        f"{'copy (Tune, local storage)':<34}{med['copy']:>10.3f}"
        f"{med['copy'] / med['epoch']:>10.2f}",
        f"{'restore (load_keras)':<34}{med['restore']:>10.3f}"
        f"{med['restore'] / med['epoch']:>10.2f}",
        f"{'one pause: save + copy + restore':<34}{pause:>10.3f}{pause / med['epoch']:>10.2f}",
        "",
        "per round (epoch / save / copy / restore, s): " + "; ".join(
            f"{e:.3f}/{s:.3f}/{c:.3f}/{r:.3f}" for e, s, c, r in
            zip(rows["epoch"], rows["save"], rows["copy"], rows["restore"])),
    ]
    text = "\n".join(lines) + "\n"
    if args.text:
        with open(args.text, "w", encoding="utf-8") as handle:
            handle.write(text)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
