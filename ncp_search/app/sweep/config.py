"""Sweep configs (YAML): the schema, strict validation and defaults.

A sweep config names the target data, the source model, the probe, the search
space, the pruner (Optuna) or scheduler (Ray), the budget, the seed and the output
folder; see ``configs/quick.yaml`` for a commented example. :func:`load_sweep_config`
reads it with YAML's safe loader and checks, in one pass and before anything is
written, everything a trial will need:

- every key and type (an unknown key or spec type gets a "did you mean"), with
  a hint where YAML read a number such as ``1e-4`` as a string (YAML 1.1 needs
  ``1.0e-4``; the value is refused, not guessed);
- duplicate keys (YAML would keep the last one silently), with both line numbers;
- every fixed value, range end and choice of the search space against what the
  trial setting accepts (``dropout`` in [0, 1), ``learning_rate`` > 0, integer
  ``batch_size`` >= 1, ...), integer bounds for ``int`` specs, ``low`` > 0 on a
  log scale;
- limits that combine keys: ``n_warmup_steps`` < ``budget.epochs`` and
  ``n_startup_trials`` < ``budget.trials`` (else nothing is ever pruned), a Ray
  ``grace_period`` <= ``budget.epochs``, a zoo source trained on images of the
  target's shape, no ``head_units`` in ``probe_head`` mode;
- that ``source.file`` (relative paths are read from the config file's folder)
  is a ``.keras`` file that Keras loads with ``safe_mode=True`` as a classifier
  (softmax output over at least 2 classes) taking the target's images;
- that a storage URL parses, names a supported database and its driver is
  installed (nothing is connected to).

Errors raise :class:`ConfigError`, one line naming the file, the key path, what
was expected and a fix (the CLI exits with code 2). Limits broken only through
a command-line override (``--trials``, ``--epochs``) that make the pruner idle are
warnings instead (the sweep runs, unpruned), listed in ``warnings``.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ncp_search.errors import NCPSearchError

BACKENDS = ("optuna", "ray")
MODES = ("observer", "probe_head")
PRUNERS: dict[str, set[str]] = {
    # ncp: ASHA on predicted finals (the default since 0.2, the budget benchmark's
    # pick); ncp_percentile: the percentile rule, the 0.1 default.
    "ncp": {"predictor", "reduction_factor"},
    "ncp_percentile": {"predictor", "percentile", "n_startup_trials", "n_warmup_steps",
                       "kappa"},
    "median": {"n_startup_trials", "n_warmup_steps"},
    "percentile": {"percentile", "n_startup_trials", "n_warmup_steps"},
    "successive_halving": {"reduction_factor"},
    "hyperband": {"reduction_factor"},
    "nop": set(),
}
SCHEDULERS: dict[str, set[str]] = {
    "ncp": {"predictor", "grace_period", "reduction_factor"},
    "ncp_asha": {"predictor", "grace_period", "reduction_factor"},  # = ncp
    "ncp_percentile": {"predictor", "percentile", "grace_period"},
    "fifo": set(),
    "async_hyperband": {"grace_period", "reduction_factor"},
    "hyperband": {"reduction_factor"},
    "median_stopping": {"grace_period"},
}
NCP_RULES = {"ncp": "asha", "ncp_asha": "asha", "ncp_percentile": "percentile"}
"""The rule of each NCP pruner/scheduler name (stored as the section's ``rule``)."""
SAMPLERS = ("tpe", "random")
MAX_EPOCHS = 10_000
"""``budget.epochs`` above this is refused as a typo."""
MAX_PROBE_WIDTH = 16_384
"""Probe layers wider than this are refused (the probe's Hessian would not fit)."""
IMAGE_SHAPES = {"digits": (8, 8, 1), "fashion_mnist": (28, 28, 1)}
"""Image shape of each data set (``ncp_search.app.data``)."""
STORAGE_DIALECTS = ("sqlite", "postgresql", "mysql")
SPEC_KEYS = {
    "float": {"type", "low", "high", "log"},
    "int": {"type", "low", "high", "log"},
    "categorical": {"type", "choices"},
}
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad")  # engine.finetune's
SCHEDULES = ("constant", "warmup", "step", "cosine")


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
    return (isinstance(value, list) and len(value) >= 3
            and all(_positive_int(v) and v <= MAX_PROBE_WIDTH for v in value))


def _one_of(choices: Any) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _predictor(value: Any) -> bool:
    from ncp_search.core.predictors import PREDICTORS, SCORE_ONLY

    return isinstance(value, str) and value in PREDICTORS and value not in SCORE_ONLY


def _zoo_names() -> list[str]:
    from ncp_search.app.zoo import available_models

    return available_models()


def _zoo_name(value: Any) -> bool:
    return value in _zoo_names()


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
        "hidden": _Field(f"a list of at least 3 integers in [1, {MAX_PROBE_WIDTH}] "
                         "(probe widths)", _widths, [64, 64, 64]),
        "batch": _Field("an integer >= 1 (probe samples)", _positive_int, 256),
        "seed": _Field("an integer >= 0", _non_negative_int, 0),
    },
    "budget": {
        "trials": _Field("an integer >= 1", _positive_int, required=True),
        "epochs": _Field(f"an integer in [1, {MAX_EPOCHS}] (epochs of a complete trial)",
                         lambda v: _positive_int(v) and v <= MAX_EPOCHS, required=True),
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
        "grace_period": _Field("an integer >= 1", _positive_int, 1),
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


@dataclass(frozen=True)
class _Param:
    """What one trial setting (``engine.finetune``) accepts."""

    kind: str  # "float", "int" or "choice"
    expected: str
    check: Callable[[Any], bool]
    choices: tuple[Any, ...] = ()


PARAMS: dict[str, _Param] = {
    "optimizer": _Param("choice", f"one of {list(OPTIMIZERS)}", _one_of(OPTIMIZERS),
                        OPTIMIZERS),
    "schedule": _Param("choice", f"one of {list(SCHEDULES)}", _one_of(SCHEDULES), SCHEDULES),
    "trainable": _Param("choice", "one of ['all', 'top']", _one_of(("all", "top")),
                        ("all", "top")),
    "source_model": _Param("choice", "a model-zoo architecture", _zoo_name),
    "learning_rate": _Param("float", "a number > 0", lambda v: _is_number(v) and v > 0),
    "dropout": _Param("float", "a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "weight_decay": _Param("float", "a number >= 0", lambda v: _is_number(v) and v >= 0),
    "batch_size": _Param("int", "an integer >= 1", _positive_int),
    "head_units": _Param("int", "an integer >= 0 (0: a linear head)", _non_negative_int),
}
"""The trial settings a search space may set (``engine.finetune.DEFAULTS`` and
``source_model``) and the values each accepts."""


# -- messages ------------------------------------------------------------------------
def _suggest(key: Any, allowed: Any) -> str:
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"allowed: {sorted(map(str, allowed))}."


_NUMBER_TEXT = re.compile(r"([+-]?(?:\d[\d_]*(?:\.\d*)?|\.\d+))(?:[eE]([+-]?\d+))?")


def _yaml_hint(value: Any) -> str:
    """A hint when YAML read a number as a string (YAML 1.1 needs a decimal point
    and a signed exponent: ``1.0e-4``, ``1.0e+3``)."""
    if not isinstance(value, str):
        return ""
    match = _NUMBER_TEXT.fullmatch(value.strip())
    if not match:
        return ""
    mantissa, exponent = match.groups()
    if exponent is None:
        return f" Write {value.strip()} without quotes for a number."
    if "." not in mantissa:
        mantissa += ".0"
    if exponent[0] not in "+-":
        exponent = "+" + exponent
    return (f" YAML reads {value.strip()} as a string, not a number; write "
            f"{mantissa}e{exponent}.")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


class _Checker:
    """One validation pass over a raw config; ``fail`` builds the one-line error."""

    def __init__(self, where: str, overridden: Mapping[str, str], base_dir: Path | None,
                 warnings: list[str]) -> None:
        self.where = where
        self.overridden = overridden  # key path -> the command-line flag that set it
        self.base_dir = base_dir
        self.warnings = warnings
        self.defaulted: set[str] = set()  # key paths the file leaves to their default

    def _origin(self, path: str) -> str:
        flag = self.overridden.get(path)
        return f" (from {flag})" if flag else ""

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {path}{self._origin(path)}: {message}")

    def expected(self, path: str, expected: str, value: Any, hint: str = "") -> ConfigError:
        hint = f" ({hint})" if hint else ""
        return self.fail(path, f"expected {expected}{hint}, but got {_describe(value)}."
                         f"{_yaml_hint(value)}")

    # -- sections ------------------------------------------------------------------------
    def fields(self, raw: Mapping[str, Any], fields: Mapping[str, _Field], prefix: str,
               allowed: set[str] | None = None) -> dict[str, Any]:
        names = set(fields) if allowed is None else allowed
        for key in raw:
            if key not in names:
                extra = " (not used by this choice)" if key in fields else ""
                raise self.fail(f"{prefix}{key}",
                                f"unknown key{extra}; {_suggest(key, names)}")
        out: dict[str, Any] = {}
        for key, field in fields.items():
            if key not in raw:
                if field.required:
                    raise self.fail(f"{prefix}{key}", f"missing; expected {field.expected}.")
                out[key] = field.default
                self.defaulted.add(f"{prefix}{key}")
                continue
            value = raw[key]
            if not field.check(value):
                raise self.expected(f"{prefix}{key}", field.expected, value, field.hint)
            out[key] = value
        return out

    def config(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{self.where}: a sweep config must be a mapping at the top "
                              f"level, but got {_describe(raw)}; see configs/quick.yaml.")
        allowed = set(TOP) | set(SECTIONS) | {"search_space"}
        for key in raw:
            if key not in allowed:
                raise self.fail(str(key), f"unknown key; {_suggest(key, allowed)}")
        for key in REQUIRED_SECTIONS:
            if key not in raw:
                raise self.fail(key, "missing; every sweep config needs data, budget and "
                                "search_space (see configs/quick.yaml).")
        config = self.fields({k: raw[k] for k in TOP if k in raw}, TOP, "")
        for section, fields in SECTIONS.items():
            value = raw.get(section) or {}
            if not isinstance(value, Mapping):
                raise self.expected(section, "a mapping", value)
            names = None
            if section in ("pruner", "scheduler"):
                table = PRUNERS if section == "pruner" else SCHEDULERS
                chosen = value.get("name", fields["name"].default)
                if chosen not in table:
                    raise self.fail(f"{section}.name", f"expected one of {list(table)}, but "
                                    f"got {_describe(chosen)}; {_suggest(chosen, table)}")
                names = table[chosen] | {"name"}
                if NCP_RULES.get(chosen) == "asha":
                    self.renamed_rule(section, chosen, value, table)
            config[section] = self.fields(value, fields, f"{section}.", names)
            if names is not None and config[section]["name"] in NCP_RULES:
                config[section]["rule"] = NCP_RULES[config[section]["name"]]
        config["search_space"] = self.space(raw["search_space"], config["mode"])
        self.source(config)
        self.data(config)
        self.limits(config)
        storage = config["optuna"]["storage"]
        if storage is not None and config["backend"] == "optuna":
            check_storage_url(storage, self.where, "optuna.storage")
        if config["output"] is None:
            config["output"] = os.path.join("runs", config["name"])
        return config

    # -- the search space ----------------------------------------------------------------
    def space(self, space: Any, mode: str) -> dict[str, Any]:
        if not isinstance(space, Mapping) or not space:
            raise self.fail("search_space", "expected a non-empty mapping of parameter specs, "
                            f"but got {_describe(space)}; e.g. learning_rate: "
                            "{type: float, low: 1.0e-4, high: 0.1, log: true}.")
        for name, spec in space.items():
            if name not in PARAMS:
                raise self.fail(f"search_space.{name}",
                                f"not a trial setting; {_suggest(name, PARAMS)}")
            self.param(f"search_space.{name}", PARAMS[name], spec)
        units = space.get("head_units")
        if mode == "probe_head" and units is not None and self._values(units) != [0]:
            raise self.fail("search_space.head_units", "only used in mode: observer (in "
                            "probe_head mode the probe is the head); remove head_units or "
                            "set mode: observer.")
        return dict(space)

    @staticmethod
    def _values(spec: Any) -> list[Any]:
        if isinstance(spec, Mapping):
            if spec.get("type") == "categorical":
                return list(spec.get("choices") or [])
            return [spec.get("low"), spec.get("high")]
        return [spec]

    def param(self, path: str, param: _Param, spec: Any) -> None:
        if isinstance(spec, list):
            raise self.fail(path, f"a list is not a search-space spec; for a choice write "
                            f"{{type: categorical, choices: {spec}}}, for a range "
                            "{type: float, low: ..., high: ...}.")
        if not isinstance(spec, Mapping):  # a fixed value
            self.value(path, param, spec)
            return
        kind = spec.get("type")
        if kind is None:
            raise self.fail(f"{path}.type", f"missing; expected one of {list(SPEC_KEYS)}.")
        if kind not in SPEC_KEYS:
            raise self.fail(f"{path}.type", f"expected one of {list(SPEC_KEYS)}, but got "
                            f"{_describe(kind)}; {_suggest(kind, SPEC_KEYS)}")
        for key in spec:
            if key not in SPEC_KEYS[kind]:
                raise self.fail(f"{path}.{key}", f"unknown key of a {kind} spec; "
                                f"{_suggest(key, SPEC_KEYS[kind])}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise self.expected(f"{path}.choices", "a non-empty list", choices)
            for index, choice in enumerate(choices):
                self.value(f"{path}.choices[{index}]", param, choice)
            return
        if param.kind == "choice":
            raise self.fail(f"{path}.type", f"{path.split('.')[-1]} takes {param.expected}, "
                            f"not a {kind} range; write {{type: categorical, choices: "
                            "[...]}.")
        if kind != param.kind:
            raise self.fail(f"{path}.type", f"{path.split('.')[-1]} takes "
                            f"{'integers' if param.kind == 'int' else 'real numbers'}; "
                            f"write type: {param.kind}.")
        for key in ("low", "high"):
            if key not in spec:
                raise self.fail(f"{path}.{key}", f"missing; a {kind} spec needs low and high.")
            value = spec[key]
            integral = _is_number(value) and float(value).is_integer()
            if kind == "int" and not integral:
                raise self.expected(f"{path}.{key}", "an integer", value)
            if not _is_number(value):
                raise self.expected(f"{path}.{key}", "a finite number", value)
            self.value(f"{path}.{key}", param, int(value) if kind == "int" else value)
        low, high = spec["low"], spec["high"]
        if low > high:
            raise self.fail(path, f"low must be <= high, but got low={low}, high={high}; "
                            "swap them.")
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise self.expected(f"{path}.log", "true or false", log)
        if log and low <= 0:
            raise self.fail(f"{path}.low", f"a log scale needs low > 0, but got low={low}; "
                            "raise low or drop log.")

    def value(self, path: str, param: _Param, value: Any) -> None:
        if param.check(value):
            return
        if param.kind == "choice":
            allowed = list(param.choices) or _zoo_names()
            raise self.fail(path, f"expected {param.expected}, but got {_describe(value)}; "
                            f"{_suggest(value, allowed)}")
        raise self.expected(path, param.expected, value)

    # -- source, data and limits across keys ---------------------------------------------
    def source(self, config: dict[str, Any]) -> None:
        source, space = config["source"], config["search_space"]
        given = [key for key in ("zoo", "file", "application") if source[key] is not None]
        if len(given) > 1:
            raise self.fail("source", f"give one of zoo, file or application, but got {given}.")
        if "source_model" in space and given and given != ["zoo"]:
            raise self.fail(f"source.{given[0]}", "search_space.source_model chooses among "
                            f"zoo models, so source.{given[0]} would be ignored; remove one.")
        if not given and "source_model" not in space:
            raise self.fail("source", "missing; expected source.zoo (e.g. cnn_small), "
                            "source.file or source.application, or a search_space."
                            "source_model choice over zoo models.")
        target = _dataset(config["data"]["target"])
        if source["zoo"] is not None or "source_model" in space:
            trained_on = _dataset(source["task"])
            if IMAGE_SHAPES[trained_on] != IMAGE_SHAPES[target]:
                raise self.fail("source.task", f"zoo models trained on {trained_on} take "
                                f"images of shape {IMAGE_SHAPES[trained_on]}, but the target "
                                f"{config['data']['target']!r} has {IMAGE_SHAPES[target]}; "
                                f"use a {target} source task.")
        if source["file"] is not None:
            source["file"] = self.model_file(source["file"], target)
        if source["application"] is not None:
            try:
                import keras

                getattr(keras.applications, source["application"])
            except AttributeError:
                names = [n for n in dir(keras.applications) if n[:1].isupper()]
                raise self.fail("source.application", "unknown keras.applications model "
                                f"{source['application']!r}; "
                                f"{_suggest(source['application'], names)}") from None
        if source["input_shape"] is not None and min(source["input_shape"][:2]) < 32:
            raise self.fail("source.input_shape", "height and width must be >= 32 for "
                            f"keras.applications models, but got {source['input_shape']}.")

    def model_file(self, file: str, target: str) -> str:
        """The absolute path of ``source.file`` once Keras loads it as a classifier."""
        path = Path(file).expanduser()
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        shown = f"{file!r}" + (f" (read as {str(path)!r})" if str(path) != file else "")
        if not path.exists():
            raise self.fail("source.file", f"no such file {shown}; a relative path is read "
                            "from the config file's folder. Save a model with "
                            "model.save('model.keras') or use source.zoo.")
        if not path.is_file():
            raise self.fail("source.file", f"{shown} is a folder, not a saved model; point "
                            "at the .keras file.")
        if path.suffix != ".keras":
            raise self.fail("source.file", f"{shown} is not a .keras file; save the model "
                            "with model.save('model.keras').")
        problem = check_classifier_file(path, IMAGE_SHAPES[target])
        if problem:
            raise self.fail("source.file", f"{shown} {problem}")
        return str(path.resolve())

    def data(self, config: dict[str, Any]) -> None:
        if _dataset(config["data"]["target"]) == "digits":
            for key in ("n_train", "n_val"):
                if config["data"][key] is not None:
                    raise self.fail(f"data.{key}", "not available for digits (its split is "
                                    "fixed: 75% train, 25% validation of the 1,797 samples); "
                                    "remove it, or use a fashion_mnist target.")

    def limits(self, config: dict[str, Any]) -> None:
        budget = config["budget"]
        if config["backend"] == "optuna":
            pruner = config["pruner"]
            used = PRUNERS[pruner["name"]]
            if "n_warmup_steps" in used and pruner["n_warmup_steps"] >= budget["epochs"]:
                self.idle("pruner.n_warmup_steps", "budget.epochs",
                          f"{pruner['n_warmup_steps']} warm-up epochs of "
                          f"{budget['epochs']}: no epoch is past the warm-up, so nothing "
                          "would ever be pruned; set n_warmup_steps < budget.epochs")
            if "n_startup_trials" in used and pruner["n_startup_trials"] >= budget["trials"]:
                self.idle("pruner.n_startup_trials", "budget.trials",
                          f"{pruner['n_startup_trials']} start-up trials of "
                          f"{budget['trials']}: every trial is a start-up trial, so nothing "
                          "would ever be pruned; set n_startup_trials < budget.trials")
        else:
            scheduler = config["scheduler"]
            used = SCHEDULERS[scheduler["name"]]
            if "grace_period" in used and scheduler["grace_period"] > budget["epochs"]:
                raise self.fail("scheduler.grace_period", f"{scheduler['grace_period']} "
                                f"exceeds budget.epochs={budget['epochs']}"
                                f"{self._origin('budget.epochs')}; set grace_period <= "
                                "budget.epochs.")

    def renamed_rule(self, section: str, chosen: str, value: Mapping[str, Any],
                     table: Mapping[str, set[str]]) -> None:
        """A 0.1 config: ``name: ncp`` with the percentile rule's settings, which
        ``ncp`` (now ASHA) does not read."""
        old = sorted(k for k in value if k not in table["ncp"] | {"name"}
                     and k in table["ncp_percentile"])
        if old:
            raise self.fail(
                f"{section}.{old[0]}",
                f"not used by {section}: {chosen} since ncp_search 0.2 "
                f"({chosen} is ASHA on predicted finals, the budget "
                f"benchmark's pick; docs/budget/). To keep the percentile rule, set "
                f"{section}: {{name: ncp_percentile, ...}}; to use ASHA, remove "
                f"{', '.join(old)}.")

    def idle(self, path: str, other: str, message: str) -> None:
        """A setting that leaves the pruner idle: an error when the file sets both, a
        warning when a command-line override or a default caused it."""
        cause = (f"{other} is from {self.overridden[other]}" if other in self.overridden
                 else f"{path} is the default" if path in self.defaulted else None)
        if cause is None:
            raise self.fail(path, f"{message}, or use pruner: nop.")
        self.warnings.append(f"{self.where}: {path}: {message} (or use pruner: nop); {cause}, "
                             "so the sweep runs without pruning.")


def _dataset(spec: str) -> str:
    from ncp_search.app.data import _parse_spec

    return _parse_spec(spec)[0]


def check_classifier_file(path: str | os.PathLike[str],
                          image_shape: tuple[int, ...] | None = None) -> str | None:
    """Why the model saved at ``path`` cannot be a sweep's source (None if it can):
    it must load with ``safe_mode=True`` (no arbitrary code, e.g. Lambda layers),
    end in a softmax over at least 2 classes on features the probe can find, and
    take images of ``image_shape``."""
    import keras

    from ncp_search.engine.probe import classifier_features
    from ncp_search.errors import ProbeError

    try:
        model = keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # noqa: BLE001 - any failure means "not loadable"
        reason = " ".join(str(error).split())[:300]
        return (f"does not load as a Keras model with safe_mode=True ({type(error).__name__}: "
                f"{reason}); save it with model.save('model.keras'), without Lambda layers.")
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        return "is not a Keras model with one input; use a single-input classifier."
    outputs = model.outputs
    classes = outputs[0].shape[-1] if len(outputs) == 1 else None
    if classes is None or classes < 2 or len(outputs[0].shape) != 2:
        return ("is not a classifier: expected one output of shape (batch, classes) with "
                f"classes >= 2, but got {[tuple(o.shape) for o in outputs]}.")
    try:
        classifier_features(model)
    except ProbeError as error:
        return f"has no features the probe can use: {error}"
    expected = tuple(model.inputs[0].shape[1:])
    if image_shape is not None and (
            len(expected) != len(image_shape)
            or any(e is not None and e != g for e, g in zip(expected, image_shape))):
        return (f"takes inputs of shape {expected}, but the target's images have shape "
                f"{tuple(image_shape)}; use a model built for the target data set.")
    return None


def check_storage_url(url: str, where: str, path: str) -> None:
    """Check that an Optuna storage URL parses, names a supported database and that
    its driver is installed; nothing is connected to.

    Raises:
        ConfigError: naming ``where`` and ``path`` (the URL shown with its password
            masked).
    """
    from sqlalchemy import exc
    from sqlalchemy.engine import make_url

    from ncp_search.app.sweep.secrets import mask_url

    shown = mask_url(url)
    example = "e.g. sqlite:///study.db or postgresql://user@host/db"
    try:
        parsed = make_url(url)
    except (exc.ArgumentError, ValueError, TypeError):
        raise ConfigError(f"{where}: {path}: cannot read {shown!r} as a storage URL; "
                          f"expected {example}.") from None
    backend = parsed.get_backend_name()
    if backend not in STORAGE_DIALECTS:
        raise ConfigError(f"{where}: {path}: unsupported database {backend!r} in {shown!r}; "
                          f"expected one of {list(STORAGE_DIALECTS)}, "
                          f"{_suggest(backend, STORAGE_DIALECTS)}")
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except exc.NoSuchModuleError:
        raise ConfigError(f"{where}: {path}: unknown driver {parsed.drivername!r} in "
                          f"{shown!r}; {example}.") from None
    except ImportError as error:
        fix = "install it"
        if backend == "postgresql":
            # SQLAlchemy 2.1 reads postgresql:// as psycopg (3); the [postgres] extra
            # installs psycopg2.
            fix = ("write postgresql+psycopg2://... (psycopg2 is installed)"
                   if _importable("psycopg2") and parsed.drivername == "postgresql"
                   else "install it (pip install 'ncp-search[postgres]' for psycopg2, then "
                   "write postgresql+psycopg2://...)")
        raise ConfigError(f"{where}: {path}: the database driver {error.name or error} for "
                          f"{shown!r} is not installed; {fix}.") from None
    if backend == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise ConfigError(f"{where}: {path}: an in-memory SQLite study ({shown!r}) is lost "
                              "when the sweep ends and cannot be shared with workers; name a "
                              "file, e.g. sqlite:///study.db, or leave the storage unset.")
        folder = Path(database).expanduser().resolve().parent
        if not folder.is_dir():
            raise ConfigError(f"{where}: {path}: the folder {str(folder)!r} of the SQLite "
                              f"file in {shown!r} does not exist; create it or fix the path.")


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


# -- public API ------------------------------------------------------------------------
def validate_sweep_config(raw: Any, where: str = "<config>", *,
                          base_dir: str | os.PathLike[str] | None = None,
                          overridden: Mapping[str, str] | None = None,
                          warnings: list[str] | None = None) -> dict[str, Any]:
    """Check a parsed config and return it completed with defaults.

    Args:
        raw: the parsed YAML.
        where: the file name the messages start with.
        base_dir: the folder relative ``source.file`` paths are read from (the
            config file's folder); None: the working directory.
        overridden: key paths set on the command line, and the flag that set each
            (e.g. ``{"budget.trials": "--trials"}``), for messages and warnings.
        warnings: receives the warnings (see the module docstring).

    Raises:
        ConfigError: naming ``where``, the key path, what was expected and a fix.
    """
    checker = _Checker(where, overridden or {}, None if base_dir is None else Path(base_dir),
                       [] if warnings is None else warnings)
    return checker.config(raw)


def describe_choice(settings: Mapping[str, Any], table: Mapping[str, set[str]]) -> str:
    """A validated ``pruner`` or ``scheduler`` section in one line (for logs and
    reports): its name and the settings that choice uses, e.g. ``ncp (predictor=best)``."""
    name = settings["name"]
    used = {k: v for k, v in settings.items() if k in table[name] and v is not None}
    return f"{name} ({', '.join(f'{k}={v}' for k, v in used.items())})" if used else name


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The YAML document at ``path``, read with the safe loader; duplicate keys are
    refused (YAML keeps the last silently).

    Raises:
        ConfigError: for a missing or unreadable file, bad YAML or a duplicate key.
    """
    import yaml

    where = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such config file; see configs/ for examples.") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: a folder, not a config file; see configs/.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{where}: cannot read the config ({error}).") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_duplicates(root, where, "")
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ConfigError(f"{where}: not valid YAML{line}: {problem}.") from None


def _check_duplicates(node: Any, where: str, prefix: str) -> None:
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise ConfigError(f"{where}: {prefix}{key}: duplicate key at lines "
                                      f"{seen[key]} and {line} (YAML would keep the last one "
                                      "silently); remove one of them.")
                seen[key] = line
            _check_duplicates(value_node, where, f"{prefix}{key}." if key else prefix)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_duplicates(item, where, f"{prefix.rstrip('.')}[{index}].")


def load_sweep_config(path: str | os.PathLike[str],
                      overrides: Mapping[str, tuple[Any, str]] | None = None,
                      warnings: list[str] | None = None) -> dict[str, Any]:
    """Read a sweep config with YAML's safe loader and validate it (with command-line
    overrides applied first).

    Args:
        path: the YAML file.
        overrides: ``{key path: (value, flag)}``, e.g. ``{"budget.trials": (16,
            "--trials")}``; a value of None leaves the key as the file has it.
        warnings: receives the warnings of :func:`validate_sweep_config`.

    Raises:
        ConfigError: for a missing or unreadable file, bad YAML or any schema error.
    """
    raw = read_yaml(path)
    flags: dict[str, str] = {}
    if overrides and isinstance(raw, dict):
        for key, (value, flag) in overrides.items():
            if value is None:
                continue
            node = raw
            *parents, last = key.split(".")
            for parent in parents:
                child = node.get(parent)
                if child is None:
                    child = node[parent] = {}
                if not isinstance(child, dict):
                    break
                node = child
            else:
                node[last] = value
                flags[key] = flag
    return validate_sweep_config(raw, os.fspath(path),
                                 base_dir=Path(path).resolve().parent, overridden=flags,
                                 warnings=warnings)
