"""Search spaces written in configs: validation and seeded sampling.

A space is a mapping from parameter name to a spec::

    learning_rate: {type: float, low: 1.0e-4, high: 0.1, log: true}
    batch_size:    {type: categorical, choices: [32, 64, 128]}
    units:         {type: int, low: 16, high: 256, log: true}
    optimizer:     adam            # a fixed value

Sampling is plain NumPy with an explicit seed, so a recorded table can be
regenerated exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

_KEYS = {
    "float": {"type", "low", "high", "log"},
    "int": {"type", "low", "high", "log"},
    "categorical": {"type", "choices"},
}


def validate_space(space: Mapping[str, Any], where: str = "search_space") -> None:
    """Check a search space; raise ``ValueError`` naming the key path and the fix."""
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"{where} must be a non-empty mapping of parameter specs.")
    for name, spec in space.items():
        path = f"{where}.{name}"
        if not isinstance(spec, Mapping):
            continue  # a fixed value
        kind = spec.get("type")
        if kind not in _KEYS:
            raise ValueError(
                f"{path}.type must be one of {sorted(_KEYS)}, but got {kind!r}."
            )
        unknown = set(spec) - _KEYS[kind]
        if unknown:
            raise ValueError(
                f"{path} has unknown keys {sorted(unknown)}; a {kind} spec takes "
                f"{sorted(_KEYS[kind])}."
            )
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError(f"{path}.choices must be a non-empty list.")
            continue
        low, high = spec.get("low"), spec.get("high")
        if not (isinstance(low, (int, float)) and isinstance(high, (int, float))
                and math.isfinite(low) and math.isfinite(high)):
            raise ValueError(f"{path} needs finite numbers low and high, got {low!r}, {high!r}.")
        if low > high:
            raise ValueError(f"{path}: low must be <= high, but got low={low}, high={high}.")
        if spec.get("log") and low <= 0:
            raise ValueError(f"{path}: a log scale needs low > 0, but got low={low}.")


def sample(space: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """One configuration drawn from ``space`` (validated first)."""
    validate_space(space)
    config: dict[str, Any] = {}
    for name, spec in space.items():
        if not isinstance(spec, Mapping):
            config[name] = spec
            continue
        kind = spec["type"]
        if kind == "categorical":
            config[name] = spec["choices"][int(rng.integers(len(spec["choices"])))]
            continue
        low, high = float(spec["low"]), float(spec["high"])
        if spec.get("log"):
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
        else:
            value = rng.uniform(low, high)
        config[name] = int(round(value)) if kind == "int" else float(value)
    return config


def sample_configs(space: Mapping[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` configurations drawn with one seeded generator."""
    rng = np.random.default_rng(seed)
    return [sample(space, rng) for _ in range(n)]


def suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of an Optuna ``trial`` drawn from ``space`` (fixed values as
    they are), through the trial's own ``suggest_*`` methods."""
    params: dict[str, Any] = {}
    for name, spec in space.items():
        if not isinstance(spec, Mapping):
            params[name] = spec
        elif spec["type"] == "categorical":
            params[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["type"] == "int":
            params[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]),
                                             log=bool(spec.get("log")))
        else:
            params[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]),
                                               log=bool(spec.get("log")))
    return params
