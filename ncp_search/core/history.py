"""One trial's reports as the decision core sees them: :class:`TrialHistory`.

Every adapter (Optuna pruner, Ray scheduler, the sweep's display, the research
benchmarks) translates its host's objects into a ``TrialHistory`` and hands it to
:mod:`ncp_search.core.predictors` and :mod:`ncp_search.core.rules`. Nothing past
this boundary knows about hosts, table rows or directions:

- steps are kept as the host reported them (0- or 1-based, strided, with gaps;
  sorted, the first value of a repeated step kept, as Optuna does);
- values are made "higher is better" once, here (``sign=-1`` for a minimised
  objective);
- per-step side series (``beta_eff``, the probe terms, ``train_loss``) are aligned
  with the steps, NaN where a step has none;
- a value that is not a finite number (NaN, inf, ``None``, a string) is stored as
  NaN: predictors and rules fail open on it, they never raise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np

# The probe terms an adapter may store per step, by the name predictors read them
# under (``BetaEffTerms`` field ``x`` is stored as ``probe_x``).
PROBE_TERMS = (
    "probe_numerator",
    "probe_denominator",
    "probe_loss",
    "probe_accuracy",
    "probe_feature_norm",
    "probe_dead_fraction",
    "probe_delta_in_norm",
    "probe_delta_out_norm",
)
# Series the product's reporting helpers can fill (beta_eff, probe terms, training loss).
REPORTED_SERIES = ("beta_eff", *PROBE_TERMS, "train_loss")


def probe_series(terms: Any, *, beta_eff: bool = False) -> dict[str, Any]:
    """One measurement's probe terms under the series names every reader uses (the
    predictors, NCPScheduler's result keys, the Optuna attribute ``ncp_probe_terms``,
    epoch logs): field ``x`` of a ``BetaEffTerms`` (or key ``x`` of a mapping such
    as its ``as_dict()``) becomes ``probe_x``; a key already named ``probe_x`` stays.

    Args:
        terms: a ``BetaEffTerms`` or a ``{name: value}`` mapping.
        beta_eff: keep ``beta_eff`` itself (under ``beta_eff``); dropped by default.

    Returns:
        ``{series name: value}``, values as given.

    Example:
        >>> probe_series({"beta_eff": 0.4, "feature_norm": 2.0})
        {'probe_feature_norm': 2.0}
        >>> probe_series({"beta_eff": 0.4, "feature_norm": 2.0}, beta_eff=True)
        {'beta_eff': 0.4, 'probe_feature_norm': 2.0}
    """
    raw = terms.as_dict() if hasattr(terms, "as_dict") else dict(terms)
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "beta_eff":
            if beta_eff:
                out[name] = value
            continue
        out[name if name.startswith("probe_") else f"probe_{name}"] = value
    return out


def as_number(value: Any) -> float:
    """``value`` as a float, or NaN when it is not a finite real number (``None``,
    a string, a bool, NaN, inf, an array, an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (Real, np.floating, np.integer)):
        return math.nan
    try:
        number = float(value)
    except OverflowError:  # e.g. a 400-digit integer
        return math.nan
    return number if math.isfinite(number) else math.nan


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=float)


@dataclass(frozen=True)
class TrialHistory:
    """The reports of one trial, normalised once.

    Attributes:
        steps: the reported steps, strictly increasing, in the host's own units.
        values: the metric at each step, "higher is better" (NaN where not a number).
        series: per-step side measurements aligned with ``steps`` (NaN where missing),
            e.g. ``beta_eff``, ``probe_feature_norm``, ``train_loss``.
        initial: measurements taken before training (recorded tables' step 0), e.g.
            ``{"val_accuracy": 0.21}``; empty online.
        final: the final value of a completed trial ("higher is better"), NaN if the
            trial is not complete or its final is not a number.
        sign: +1 for a maximised objective, -1 for a minimised one (what ``values``
            were multiplied by).
    """

    steps: np.ndarray = field(default_factory=_empty)
    values: np.ndarray = field(default_factory=_empty)
    series: Mapping[str, np.ndarray] = field(default_factory=dict)
    initial: Mapping[str, float] = field(default_factory=dict)
    final: float = math.nan
    sign: float = 1.0

    def __post_init__(self) -> None:
        if self.steps.shape != self.values.shape or self.steps.ndim != 1:
            raise ValueError(
                "steps and values must be one-dimensional and of the same length, but got "
                f"shapes {self.steps.shape} and {self.values.shape}."
            )
        for name, values in self.series.items():
            if values.shape != self.steps.shape:
                raise ValueError(
                    f"series {name!r} must have one value per step ({self.steps.shape[0]}), "
                    f"but got shape {values.shape}."
                )
        if len(self.steps) > 1 and not np.all(np.diff(self.steps) > 0):
            raise ValueError("steps must be strictly increasing; build with from_reports().")

    # ---------------------------------------------------------------- building
    @classmethod
    def from_reports(
        cls,
        reports: Mapping[Any, Any] | Iterable[tuple[Any, Any]],
        *,
        sign: float = 1.0,
        series: Mapping[str, Mapping[Any, Any]] | None = None,
        initial: Mapping[str, Any] | None = None,
        final: Any = None,
    ) -> TrialHistory:
        """A history from ``{step: value}`` (or ``(step, value)`` pairs, in report order).

        Args:
            reports: the metric per step, in the objective's own units. Steps may
                come in any order; for a repeated step the first value is kept.
                A step that is not a finite number is dropped.
            sign: +1 (maximise) or -1 (minimise); values and ``final`` are
                multiplied by it.
            series: side measurements, ``{name: {step: value}}``; steps without a
                report are ignored. Keys may be ints or their strings (JSON).
            initial: measurements before training (not sign-flipped: they are not
                the objective).
            final: the completed trial's final value in the objective's units, or
                ``None``.

        Raises:
            ValueError: if ``sign`` is not +1 or -1.
        """
        if sign not in (1.0, -1.0):
            raise ValueError(f"sign must be 1 or -1, but got sign={sign}.")
        pairs = reports.items() if isinstance(reports, Mapping) else reports
        kept: dict[float, float] = {}
        for step, value in pairs:
            key = as_number(step)
            if math.isnan(key) or key in kept:
                continue
            kept[key] = sign * as_number(value)
        steps = np.array(sorted(kept), dtype=float)
        values = np.array([kept[s] for s in steps], dtype=float)
        aligned: dict[str, np.ndarray] = {}
        for name, by_step in (series or {}).items():
            lookup = {as_number(_step_key(k)): v for k, v in by_step.items()}
            aligned[name] = np.array([as_number(lookup.get(s)) for s in steps], dtype=float)
        return cls(
            steps=steps,
            values=values,
            series=aligned,
            initial={k: as_number(v) for k, v in (initial or {}).items()},
            final=sign * as_number(final) if final is not None else math.nan,
            sign=float(sign),
        )

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        return int(self.steps.shape[0])

    @property
    def last_step(self) -> float:
        """The latest reported step (NaN for an empty history)."""
        return float(self.steps[-1]) if len(self) else math.nan

    @property
    def is_complete(self) -> bool:
        """Whether the trial has a finite final value."""
        return math.isfinite(self.final)

    def get(self, name: str) -> np.ndarray:
        """Series ``name`` (``"value"`` is the metric itself); all NaN if absent."""
        if name == "value":
            return self.values
        found = self.series.get(name)
        return found if found is not None else np.full(len(self), np.nan)

    def has(self, name: str) -> bool:
        """Whether series ``name`` has at least one finite value."""
        return bool(np.any(np.isfinite(self.get(name))))

    def until(self, step: float) -> TrialHistory:
        """The history up to and including ``step``."""
        keep = self.steps <= step
        return TrialHistory(
            steps=self.steps[keep],
            values=self.values[keep],
            series={k: v[keep] for k, v in self.series.items()},
            initial=self.initial,
            final=self.final,
            sign=self.sign,
        )

    def elapsed(self, horizon: float | None = None) -> tuple[np.ndarray, float]:
        """Training progress at each step and at ``horizon``, in reports: the first
        report is at 1 and one ``stride`` (the median step gap; 1 with one report)
        counts 1.

        For steps 0..k-1, 1..k or 0, 10, ..., 10(k-1) this is 1..k, so an
        extrapolating predictor (a power law in time) fits the same curve whatever
        the numbering.
        """
        if not len(self):
            return _empty(), math.nan
        stride = float(np.median(np.diff(self.steps))) if len(self) > 1 else 1.0
        origin = self.steps[0] - stride
        target = self.last_step if horizon is None else max(float(horizon), self.last_step)
        return (self.steps - origin) / stride, (target - origin) / stride


def _step_key(key: Any) -> Any:
    """JSON object keys are strings: ``"3"`` means step 3."""
    if isinstance(key, str):
        try:
            return float(key)
        except ValueError:
            return None
    return key
