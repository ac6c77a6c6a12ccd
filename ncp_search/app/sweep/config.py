"""Sweep configs (YAML): the schema, strict validation and defaults.

A sweep config names the target data, the source model, the probe, the search
space, the pruner (Optuna) or scheduler (Ray), the budget, the seed and the output
folder; see ``configs/quick.yaml`` for a commented example. :func:`load_sweep_config`
reads it with YAML's safe loader and checks everything before anything runs: an
unknown key, a wrong type or an impossible range raises :class:`ConfigError`
naming the file, the key path, what was expected and a suggestion (the CLI exits
with code 2).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ncp_search.errors import NCPSearchError

BACKENDS = ("optuna", "ray")
MODES = ("observer", "probe_head")
PRUNERS: dict[str, set[str]] = {
    "ncp": {"predictor", "percentile", "n_startup_trials", "n_warmup_steps", "kappa"},
    "median": {"n_startup_trials", "n_warmup_steps"},
    "percentile": {"percentile", "n_startup_trials", "n_warmup_steps"},
    "successive_halving": {"reduction_factor"},
    "hyperband": {"reduction_factor"},
    "nop": set(),
}
SCHEDULERS: dict[str, set[str]] = {
    "ncp": {"predictor", "percentile", "grace_period"},
    "ncp_asha": {"predictor", "grace_period", "reduction_factor"},
    "fifo": set(),
    "async_hyperband": {"grace_period", "reduction_factor"},
    "hyperband": {"reduction_factor"},
    "median_stopping": {"grace_period"},
}
SAMPLERS = ("tpe", "random")


class ConfigError(NCPSearchError, ValueError):
    """A sweep config that cannot run: the message names the file and the key path."""


@dataclass(frozen=True)
class _Field:
    expected: str  # what must hold, in words
    check: Callable[[Any], bool]
    default: Any = None
    required: bool = False
    hint: str = ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _non_negative_int(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _positive_number(value: Any) -> bool:
    return _is_number(value) and value > 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _name(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", value) is not None


def _task_spec(value: Any) -> bool:
    from ncp_search.app.data import _parse_spec

    if not _text(value):
        return False
    try:
        _parse_spec(value)
    except ValueError:
        return False
    return True


def _widths(value: Any) -> bool:
    return isinstance(value, list) and len(value) >= 3 and all(_positive_int(v) for v in value)


def _one_of(choices: Any) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _predictor(value: Any) -> bool:
    from ncp_search.core.predictors import PREDICTORS, SCORE_ONLY

    return isinstance(value, str) and value in PREDICTORS and value not in SCORE_ONLY


def _zoo_name(value: Any) -> bool:
    from ncp_search.app.zoo import available_models

    return value in available_models()


# Settings that the Optuna pruners and the Ray schedulers share.
_PREDICTOR = _Field("a predictor name such as 'best', 'pow3' or 'ncp_raw'", _predictor, "best")
_PERCENTILE = _Field("a number in [0, 100]", lambda v: _is_number(v) and 0 <= v <= 100, 50.0)
_REDUCTION_FACTOR = _Field("an integer >= 2", lambda v: _is_int(v) and v >= 2, 3)

TOP: dict[str, _Field] = {
    "name": _Field("a name of letters, digits, '_', '.' or '-'", _name, required=True),
    "description": _Field("a string", lambda v: isinstance(v, str), ""),
    "backend": _Field(f"one of {list(BACKENDS)}", _one_of(BACKENDS), "optuna"),
    "seed": _Field("an integer >= 0", _non_negative_int, 0),
    "output": _Field("a folder path", _optional(_text), None,
                     hint="default: runs/<name>"),
    "mode": _Field(f"one of {list(MODES)}", _one_of(MODES), "observer"),
}
SECTIONS: dict[str, dict[str, _Field]] = {
    "data": {
        "target": _Field("a task spec such as 'digits:5-9' or 'fashion_mnist:5-9'",
                         _task_spec, required=True),
        "n_train": _Field("an integer >= 1 or null", _optional(_positive_int)),
        "n_val": _Field("an integer >= 1 or null", _optional(_positive_int)),
    },
    "source": {
        "zoo": _Field("a model-zoo architecture (cnn_small, cnn_wide, mlp, resnet_tiny)",
                      _optional(_zoo_name)),
        "task": _Field("the zoo model's source task spec, e.g. 'fashion_mnist:0-4'",
                       _task_spec, "fashion_mnist:0-4"),
        "epochs": _Field("an integer >= 1", _positive_int, 3),
        "file": _Field("the path of a saved .keras model", _optional(_text)),
        "application": _Field("a keras.applications name such as 'MobileNetV2'",
                              _optional(_text)),
        "weights": _Field("'imagenet' or null (downloads need internet)",
                          _one_of((None, "imagenet"))),
        "input_shape": _Field("null or [height, width, channels] with height, width >= 32",
                              _optional(lambda v: isinstance(v, list) and len(v) == 3
                                        and all(_positive_int(x) for x in v))),
    },
    "probe": {
        "hidden": _Field("a list of at least 3 positive integers (probe widths)", _widths,
                         [64, 64, 64]),
        "batch": _Field("an integer >= 1 (probe samples)", _positive_int, 256),
        "seed": _Field("an integer >= 0", _non_negative_int, 0),
    },
    "budget": {
        "trials": _Field("an integer >= 1", _positive_int, required=True),
        "epochs": _Field("an integer >= 1 (epochs of a complete trial)", _positive_int,
                         required=True),
        "minutes": _Field("a number > 0 or null (wall-clock limit)",
                          _optional(_positive_number)),
    },
    "pruner": {
        "name": _Field(f"one of {list(PRUNERS)}", _one_of(PRUNERS), "ncp"),
        "predictor": _PREDICTOR,
        "percentile": _PERCENTILE,
        "n_startup_trials": _Field("an integer >= 0", _non_negative_int, 5),
        "n_warmup_steps": _Field("an integer >= 0", _non_negative_int, 2),
        "kappa": _Field("a number >= 0", lambda v: _is_number(v) and v >= 0, 0.0),
        "reduction_factor": _REDUCTION_FACTOR,
    },
    "scheduler": {
        "name": _Field(f"one of {list(SCHEDULERS)}", _one_of(SCHEDULERS), "ncp"),
        "predictor": _PREDICTOR,
        "percentile": _PERCENTILE,
        "grace_period": _Field("an integer >= 1", _positive_int, 2),
        "reduction_factor": _REDUCTION_FACTOR,
    },
    "optuna": {
        "storage": _Field("a storage URL (sqlite:///..., postgresql://...) or null",
                          _optional(_text), hint="default: sqlite in the output folder"),
        "study_name": _Field("a string or null", _optional(_text)),
        "sampler": _Field(f"one of {list(SAMPLERS)}", _one_of(SAMPLERS), "tpe"),
    },
    "ray": {
        "address": _Field("a Ray cluster address or null (local Ray)", _optional(_text)),
        "cpus_per_trial": _Field("a number > 0", _positive_number, 1),
        "gpus_per_trial": _Field("a number > 0 or null (used when Ray sees GPUs)",
                                 _optional(_positive_number)),
        "max_concurrent_trials": _Field("an integer >= 1 or null",
                                        _optional(_positive_int)),
    },
}
REQUIRED_SECTIONS = ("data", "budget", "search_space")


def _suggest(key: str, allowed: Any) -> str:
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"allowed: {sorted(map(str, allowed))}."


def _fail(where: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {path}: {message}")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _check_fields(raw: Mapping[str, Any], fields: Mapping[str, _Field], where: str,
                  prefix: str, allowed: set[str] | None = None) -> dict[str, Any]:
    names = set(fields) if allowed is None else allowed
    for key in raw:
        if key not in names:
            extra = ""
            if key in fields:
                extra = " (not used by this choice)"
            raise _fail(where, f"{prefix}{key}", f"unknown key{extra}; {_suggest(key, names)}")
    out: dict[str, Any] = {}
    for key, field in fields.items():
        if key not in raw:
            if field.required:
                raise _fail(where, f"{prefix}{key}", f"missing; expected {field.expected}.")
            out[key] = field.default
            continue
        value = raw[key]
        if not field.check(value):
            hint = f" ({field.hint})" if field.hint else ""
            raise _fail(where, f"{prefix}{key}",
                        f"expected {field.expected}{hint}, but got {_describe(value)}.")
        out[key] = value
    return out


def _check_space(space: Any, where: str) -> None:
    from ncp_search.app.search_space import validate_space
    from ncp_search.engine.finetune import DEFAULTS, OPTIMIZERS, SCHEDULES

    if not isinstance(space, Mapping) or not space:
        raise _fail(where, "search_space", "expected a non-empty mapping of parameter specs, "
                    f"but got {_describe(space)}; e.g. learning_rate: "
                    "{type: float, low: 1.0e-4, high: 0.1, log: true}.")
    known = set(DEFAULTS) | {"source_model"}
    allowed_values = {"optimizer": OPTIMIZERS, "schedule": SCHEDULES,
                      "trainable": ("all", "top")}
    for name, spec in space.items():
        if name not in known:
            raise _fail(where, f"search_space.{name}",
                        f"not a trial setting; {_suggest(name, known)}")
        values = spec.get("choices", []) if isinstance(spec, Mapping) else [spec]
        if name in allowed_values or name == "source_model":
            ok = allowed_values.get(name) or _zoo_names()
            bad = [v for v in values if v not in ok]
            if bad:
                raise _fail(where, f"search_space.{name}",
                            f"values {bad} are not allowed; expected some of {list(ok)}.")
    try:
        validate_space(space)
    except ValueError as error:
        raise ConfigError(f"{where}: {error} Fix the search_space entry.") from None


def _zoo_names() -> list[str]:
    from ncp_search.app.zoo import available_models

    return available_models()


def _check_source(source: dict[str, Any], space: Mapping[str, Any], where: str) -> None:
    given = [key for key in ("zoo", "file", "application") if source[key] is not None]
    if len(given) > 1:
        raise _fail(where, "source", f"give one of zoo, file or application, but got {given}.")
    if not given and "source_model" not in space:
        raise _fail(where, "source", "missing; expected source.zoo (e.g. cnn_small), "
                    "source.file or source.application, or a search_space.source_model "
                    "choice over zoo models.")
    if source["file"] is not None and not os.path.exists(source["file"]):
        raise _fail(where, "source.file", f"no such file {source['file']!r}; save a model "
                    "with model.save('model.keras') or use source.zoo.")
    if source["application"] is not None:
        try:
            import keras

            getattr(keras.applications, source["application"])
        except AttributeError:
            names = [n for n in dir(keras.applications) if n[:1].isupper()]
            raise _fail(where, "source.application", f"unknown keras.applications model "
                        f"{source['application']!r}; {_suggest(source['application'], names)}"
                        ) from None
    if source["input_shape"] is not None and min(source["input_shape"][:2]) < 32:
        raise _fail(where, "source.input_shape", "height and width must be >= 32 for "
                    f"keras.applications models, but got {source['input_shape']}.")


def validate_sweep_config(raw: Any, where: str = "<config>") -> dict[str, Any]:
    """Check a parsed config and return it completed with defaults.

    Raises:
        ConfigError: naming ``where``, the key path, what was expected and a fix.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a sweep config must be a mapping at the top level, but "
                          f"got {_describe(raw)}.")
    allowed = set(TOP) | set(SECTIONS) | {"search_space"}
    for key in raw:
        if key not in allowed:
            raise _fail(where, str(key), f"unknown key; {_suggest(key, allowed)}")
    for key in REQUIRED_SECTIONS:
        if key not in raw:
            raise _fail(where, key, "missing; every sweep config needs data, budget and "
                        "search_space (see configs/quick.yaml).")
    config = _check_fields({k: raw[k] for k in TOP if k in raw}, TOP, where, "")
    for section, fields in SECTIONS.items():
        value = raw.get(section) or {}
        if not isinstance(value, Mapping):
            raise _fail(where, section, f"expected a mapping, but got {_describe(value)}.")
        names = None
        if section in ("pruner", "scheduler"):
            table = PRUNERS if section == "pruner" else SCHEDULERS
            chosen = value.get("name", fields["name"].default)
            if chosen not in table:
                raise _fail(where, f"{section}.name", f"expected one of {list(table)}, but got "
                            f"{_describe(chosen)}; {_suggest(chosen, table)}")
            names = table[chosen] | {"name"}
        config[section] = _check_fields(value, fields, where, f"{section}.", names)
    _check_space(raw["search_space"], where)
    config["search_space"] = dict(raw["search_space"])
    _check_source(config["source"], config["search_space"], where)
    if config["data"]["target"].split(":")[0].strip().lower() == "digits":
        for key in ("n_train", "n_val"):
            if config["data"][key] is not None:
                raise _fail(where, f"data.{key}", "not available for digits (its split is "
                            "fixed: 75% train, 25% validation of the 1,797 samples); remove "
                            "it, or use a fashion_mnist target.")
    if config["output"] is None:
        config["output"] = os.path.join("runs", config["name"])
    return config


def describe_choice(settings: Mapping[str, Any], table: Mapping[str, set[str]]) -> str:
    """A validated ``pruner`` or ``scheduler`` section in one line (for logs and
    reports): its name and the settings that choice uses, e.g. ``ncp (predictor=best)``."""
    name = settings["name"]
    used = {k: v for k, v in settings.items() if k in table[name] and v is not None}
    return f"{name} ({', '.join(f'{k}={v}' for k, v in used.items())})" if used else name


def load_sweep_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a sweep config with YAML's safe loader and validate it.

    Raises:
        ConfigError: for a missing or unreadable file, bad YAML, or any schema error.
    """
    import yaml

    where = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such config file; see configs/ for examples.") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: not valid YAML{line}: {problem}.") from None
    return validate_sweep_config(raw, where)
