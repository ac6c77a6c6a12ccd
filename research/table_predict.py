"""Score recorded runs (the table format of ``python -m research record``) with the
product's predictors.

A table row is research's data model, not the product's: this module converts
rows into :class:`ncp_search.core.history.TrialHistory` (:func:`history_of`) and
scores many runs at once, the way the prediction benchmark asks:

- ``predict(name, runs, k, total)`` gives one score per run after ``k`` epochs;
- ``xtrial_*`` predictors score run ``i`` with a model fitted only on runs
  ``0 .. i-1`` (the trials completed before it, in recording order), as a pruner
  inside a study would;
- ``<name>@<probe>`` reads the ``beta_eff`` of an extra probe recorded beside the
  main one; ``<name>+shuffled`` gives each run the probe series of another run (a
  fixed derangement): a ``beta_eff`` predictor earns credit for ``beta_eff`` only
  where it beats this control.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ncp_search.core.history import PROBE_TERMS, TrialHistory
from ncp_search.core.predictors import (
    PREDICTORS,
    fit_cross_trial,
    get_predictor,
    predict_final,
    predict_with,
)

Run = dict[str, Any]
# Per-step fields that come from the probe (replaced in shuffled controls).
BETA_FIELDS = ("beta_eff", "beta_eff_batch2", *PROBE_TERMS)
_SIDE = (*BETA_FIELDS, "train_loss")


def history_of(run: Run) -> TrialHistory:
    """A recorded run as a history: steps 1..N are its epochs, step 0 (before
    training) becomes ``initial``, ``final_val_accuracy`` its final."""
    curve = run["curve"]
    trained = [s for s in curve if s["step"] >= 1]
    before = [s for s in curve if s["step"] == 0]
    names = {k for s in trained for k in s if k in _SIDE or k.startswith("beta_eff@")}
    series = {n: {s["step"]: s.get(n) for s in trained} for n in names}
    initial = {k: v for k, v in (before[0] if before else {}).items()
               if k != "step" and v is not None}
    return TrialHistory.from_reports(
        [(s["step"], s.get("val_accuracy")) for s in trained],
        series=series, initial=initial, final=run.get("final_val_accuracy"),
    )


def uses_beta(name: str) -> bool:
    """Whether a predictor (``name`` may carry ``@probe`` / ``+shuffled``) reads the
    probe's measurements."""
    return get_predictor(name.split("+")[0].split("@")[0]).uses_beta_eff


def shuffled(runs: Sequence[Run], seed: int = 0) -> list[Run]:
    """Runs whose probe fields come from another run (a seeded derangement)."""
    n = len(runs)
    rng = np.random.default_rng(seed)
    order = np.arange(n)
    while n > 1 and np.any(order == np.arange(n)):
        order = rng.permutation(n)
    out = []
    for run, donor_index in zip(runs, order):
        donor = runs[int(donor_index)]["curve"]
        curve = []
        for position, step in enumerate(run["curve"]):
            source = donor[min(position, len(donor) - 1)]
            curve.append({**step, **{f: source.get(f) for f in BETA_FIELDS}})
        out.append({**run, "curve": curve})
    return out


def with_probe(runs: Sequence[Run], probe: str) -> list[Run]:
    """Runs whose ``beta_eff`` is the one of another probe recorded beside the main one
    (``beta_eff@<probe>``, or ``beta_eff_<probe>`` such as ``batch2``)."""
    out = []
    for run in runs:
        curve = []
        for step in run["curve"]:
            key = f"beta_eff@{probe}" if f"beta_eff@{probe}" in step else f"beta_eff_{probe}"
            if key not in step:
                raise ValueError(
                    f"run {run.get('trial')!r} has no {key!r}; record the workload with "
                    f"extra_probes naming {probe!r}."
                )
            curve.append({**step, "beta_eff": step[key]})
        out.append({**run, "curve": curve})
    return out


def predict(
    name: str, runs: Sequence[Run], k: int, total: int, *, last_only: bool = False
) -> np.ndarray:
    """Scores of predictor ``name`` after ``k`` epochs (one per run, or only the last
    run's with ``last_only``), extrapolating to epoch ``total``.

    ``name`` is ``<predictor>[@<probe>][+shuffled]``.

    Raises:
        ValueError: for an unknown predictor or suffix.
    """
    head, _, suffix = name.partition("+")
    base, _, probe = head.partition("@")
    if base not in PREDICTORS or suffix not in ("", "shuffled"):
        raise ValueError(
            f"unknown predictor {name!r}; available: {sorted(PREDICTORS)} "
            "(append '@<probe>' for an extra probe, '+shuffled' for the control)."
        )
    predictor = PREDICTORS[base]
    if probe:
        runs = with_probe(runs, probe)
    if suffix:
        runs = shuffled(runs)
    histories = [history_of(r) for r in runs]
    cut = [h.until(k) for h in histories]
    first = len(runs) - 1 if last_only else 0
    out = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(first, len(runs)):
            if predictor.cross_trial:
                model = fit_cross_trial(predictor, histories[:i], k)
                out.append(predict_with(predictor, model, cut[i]))
            else:
                out.append(predict_final(predictor, cut[i], horizon=total))
    return np.array(out, dtype=float)
