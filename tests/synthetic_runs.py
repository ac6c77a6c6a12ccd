"""Synthetic recorded runs (the table format of ``python -m research record``) for tests."""

from __future__ import annotations

import numpy as np


def make_runs(n=12, epochs=10, seed=0, beta_tracks_final=False):
    rng = np.random.default_rng(seed)
    runs = []
    for i in range(n):
        final = 0.5 + 0.45 * rng.random()
        rate = 0.2 + rng.random()
        curve = []
        for t in range(epochs + 1):
            acc = final - (final - 0.2) * (1 + t) ** (-rate)
            beta = (1.0 - final) * 10 / (1 + t) if beta_tracks_final else rng.normal(5, 2)
            curve.append(
                {
                    "step": t,
                    "val_accuracy": float(acc),
                    "train_loss": None if t == 0 else float(2.0 * (1 + t) ** (-rate)),
                    "beta_eff": float(beta),
                    "beta_eff_batch2": float(beta * 1.1),
                    "probe_feature_norm": 1.0 + t,
                    "probe_delta_in_norm": 1.0,
                    "probe_delta_out_norm": 1.0,
                    "probe_dead_fraction": 0.0,
                    "probe_loss": 1.0,
                    "probe_accuracy": 0.5,
                }
            )
        runs.append(
            {
                "trial": f"t{i:03d}-observer",
                "config": {"index": i, "mode": "observer"},
                "curve": curve,
                "final_val_accuracy": curve[-1]["val_accuracy"],
            }
        )
    return runs
