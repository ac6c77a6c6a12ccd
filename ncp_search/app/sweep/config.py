"""Sweep configs (YAML): the typed schema, strict validation and defaults.

A sweep config names the target data, the source model, the probe, the search
space, the pruner (Optuna) or scheduler (Ray), the budget, the seed and the output
folder; see ``configs/quick.yaml`` for a commented example. :func:`load_sweep_config`
reads it with YAML's safe loader and returns a :class:`SweepConfig`, a tree of
frozen dataclasses whose fields declare the schema (what each key accepts, its
bound and its default). In one pass and before anything is written it checks
everything a trial will need:

- the YAML itself: at most :data:`MAX_YAML_BYTES`, nested at most
  :data:`MAX_YAML_DEPTH` deep, aliases expanding to at most :data:`MAX_YAML_NODES`
  values, no recursive alias, no duplicate key (YAML would keep the last one
  silently; both line numbers are named);
- every key and type (an unknown key or spec type gets a "did you mean"), with
  a hint where YAML read a number such as ``1e-4`` as a string (YAML 1.1 needs
  ``1.0e-4``; the value is refused, not guessed); every number within a bound
  whose reason the message gives;
- a section the chosen backend does not use (``scheduler`` or ``ray`` with
  ``backend: optuna``, ``pruner`` or ``optuna`` with ``backend: ray``) is refused,
  as is a setting the chosen pruner or scheduler does not read; the names and
  settings come from :mod:`ncp_search.integrations.registry`;
- every fixed value, range end and choice of the search space against what the
  trial setting accepts (``dropout`` in [0, 1), ``learning_rate`` in (0, 10],
  integer ``batch_size`` >= 1, ...), integer bounds for ``int`` specs, ``low`` > 0
  on a log scale;
- limits that combine keys: ``n_warmup_steps`` < ``budget.epochs`` and
  ``n_startup_trials`` < ``budget.trials`` (else nothing is ever pruned), a Ray
  ``grace_period`` <= ``budget.epochs``, a zoo source trained on images of the
  target's shape, a target of at least 2 classes, no ``head_units`` in
  ``probe_head`` mode;
- that ``source.file`` (relative paths are read from the config file's folder)
  is a ``.keras`` file that Keras loads with ``safe_mode=True`` as a classifier
  (softmax output over at least 2 classes) taking the target's images;
- that a storage URL parses, names a supported database and its driver is
  installed (nothing is connected to).

Errors raise :class:`ConfigError`, one line naming the file, the key path, what
was expected and a fix (the CLI exits with code 2). Limits broken only through
a command-line override (``--trials``, ``--epochs``) that make the pruner idle are
warnings instead (the sweep runs, unpruned), listed in ``warnings``.

A :class:`SweepConfig` is also a read-only mapping of plain values
(``config["budget"]["epochs"]``, ``dict(config)``, :meth:`SweepConfig.to_dict`),
the form stored in ``sweep.json`` and in an Optuna study, and read back with
:meth:`SweepConfig.from_dict`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ncp_search.errors import NCPSearchError
from ncp_search.integrations import registry
from ncp_search.integrations.registry import MAX_EPOCHS, MAX_TRIALS, Entry

BACKENDS = tuple(registry.HOSTS)
MODES = ("observer", "probe_head")
SAMPLERS = ("tpe", "random")
MAX_PROBE_WIDTH = 16_384
"""Probe layers wider than this are refused (the probe's Hessian would not fit)."""
MAX_PROBE_DEPTH = 32
MAX_PROBE_BATCH = 16_384
"""Probe batches larger than this are refused (the batch is held in memory at once)."""
MAX_SOURCE_EPOCHS = 1_000
"""Pre-training a zoo source for more epochs than this is refused as a typo."""
MAX_IMAGE_SIDE = 1_024
"""``source.input_shape`` sides above this are refused (the probe batch must fit)."""
MAX_UNITS = 65_536
"""``head_units`` and ``batch_size`` above this are refused (every trial would fail)."""
MAX_SEED = 10**100 - 1
"""Seeds are reduced to 32 bits; one of more than 100 digits is refused as a typo."""
MAX_MINUTES = 60 * 24 * 365
MAX_CPUS = 4_096
MAX_NAME = 100
MAX_STUDY_NAME = 512  # Optuna's RDB storage column
IMAGE_SHAPES = {"digits": (8, 8, 1), "fashion_mnist": (28, 28, 1)}
"""Image shape of each data set (``ncp_search.app.data``)."""
SAMPLES = {"digits": (None, None), "fashion_mnist": (60_000, 10_000)}
"""(training, validation) images of each data set where ``n_train``/``n_val`` apply."""
NUM_CLASSES = 10  # both data sets have labels 0-9
STORAGE_DIALECTS = ("sqlite", "postgresql", "mysql")
SPEC_KEYS = {
    "float": {"type", "low", "high", "log"},
    "int": {"type", "low", "high", "log"},
    "categorical": {"type", "choices"},
}
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad")  # engine.finetune's
SCHEDULES = ("constant", "warmup", "step", "cosine")
MAX_YAML_BYTES = 1_000_000
"""A config file larger than this is refused (a sweep config is a few KB)."""
MAX_YAML_DEPTH = 32
"""YAML nested deeper than this is refused (a sweep config nests 4 levels)."""
MAX_YAML_NODES = 10_000
"""YAML whose aliases expand to more values than this is refused (an alias bomb)."""


class ConfigError(NCPSearchError, ValueError):
    """A sweep config that cannot run: the message names the file and the key path."""


# -- value checks --------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: _is_int(value) and low <= value <= high


def _positive_number_to(high: float) -> Callable[[Any], bool]:
    return lambda value: _is_number(value) and 0 < value <= high


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _text_to(length: int) -> Callable[[Any], bool]:
    return lambda value: _text(value) and len(value) <= length


def _name(value: Any) -> bool:
    return (isinstance(value, str) and len(value) <= MAX_NAME
            and re.fullmatch(r"[A-Za-z0-9_.-]+", value) is not None
            and value.strip(".") != "")


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
    return (isinstance(value, list) and 3 <= len(value) <= MAX_PROBE_DEPTH
            and all(_is_int(v) and 1 <= v <= MAX_PROBE_WIDTH for v in value))


def _image_shape(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 3
            and all(_is_int(x) and 1 <= x <= MAX_IMAGE_SIDE for x in value[:2])
            and _is_int(value[2]) and 1 <= value[2] <= 4)


def _one_of(choices: Any) -> Callable[[Any], bool]:
    return lambda value: value in choices


def _zoo_names() -> list[str]:
    from ncp_search.app.zoo import available_models

    return available_models()


def _zoo_name(value: Any) -> bool:
    return value in _zoo_names()


_SEED = "an integer >= 0 of at most 100 digits (it is reduced to 32 bits)"


# -- the schema ----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    expected: str  # what must hold, in words (with the bound and its reason)
    check: Callable[[Any], bool]
    required: bool = False
    hint: str = ""
    problem: Callable[[Any], str] | None = None  # more to say about a refused value


def _key(expected: str, check: Callable[[Any], bool], default: Any = None, *,
         required: bool = False, hint: str = "") -> Any:
    """A config key: its check and message in the field's metadata."""
    return field(default=default, metadata={"spec": _Spec(expected, check, required, hint)})


def _specs(cls: type) -> dict[str, tuple[_Spec, Any]]:
    """The declared keys of a section class: ``{key: (spec, default)}``."""
    return {f.name: (f.metadata["spec"], f.default) for f in dataclasses.fields(cls)
            if "spec" in f.metadata}


def _plain(value: Any) -> Any:
    if isinstance(value, _Section):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Section(Mapping[str, Any]):
    """A read-only mapping view of plain values over a frozen dataclass."""

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, dicts), as stored in ``sweep.json``."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        return {f.name: _plain(getattr(self, f.name)) for f in fields}

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Any:
        """The section of a validated config's plain form (keys it does not declare
        are ignored: they come from older versions)."""
        return cls(**{name: _frozen(raw[name]) for name in _specs(cls) if name in raw})


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class DataConfig(_Section):
    """``data``: the target task."""

    target: str = _key("a task spec such as 'digits:5-9' or 'fashion_mnist:5-9'",
                       _task_spec, "", required=True)
    n_train: int | None = _key("an integer in [1, 60000] or null (Fashion-MNIST has 60,000 "
                               "training images)", _optional(_int_in(1, 60_000)))
    n_val: int | None = _key("an integer in [1, 10000] or null (Fashion-MNIST has 10,000 "
                             "validation images)", _optional(_int_in(1, 10_000)))


@dataclass(frozen=True)
class SourceConfig(_Section):
    """``source``: the pre-trained model (one of zoo, file or application)."""

    zoo: str | None = _key("a model-zoo architecture (cnn_small, cnn_wide, mlp, resnet_tiny)",
                           _optional(_zoo_name))
    task: str = _key("the zoo model's source task spec, e.g. 'fashion_mnist:0-4'",
                     _task_spec, "fashion_mnist:0-4")
    epochs: int = _key(f"an integer in [1, {MAX_SOURCE_EPOCHS}] (epochs to pre-train a zoo "
                       "source; more is a typo)", _int_in(1, MAX_SOURCE_EPOCHS), 3)
    file: str | None = _key("the path of a saved .keras model", _optional(_text))
    application: str | None = _key("a keras.applications name such as 'MobileNetV2'",
                                   _optional(_text))
    weights: str | None = _key("'imagenet' or null (downloads need internet)",
                               _one_of((None, "imagenet")))
    input_shape: tuple[int, ...] | None = _key(
        f"null or [height, width, channels] with height, width in [32, {MAX_IMAGE_SIDE}] "
        "and channels in [1, 4] (larger images do not fit a probe batch)",
        _optional(_image_shape))


@dataclass(frozen=True)
class ProbeConfig(_Section):
    """``probe``: the network beta_eff is measured on."""

    hidden: tuple[int, ...] = _key(
        f"a list of 3 to {MAX_PROBE_DEPTH} integers in [1, {MAX_PROBE_WIDTH}] (probe widths; "
        "wider would not fit the probe's Hessian)", _widths, (64, 64, 64))
    batch: int = _key(f"an integer in [1, {MAX_PROBE_BATCH}] (probe samples, held in memory "
                      "at once)", _int_in(1, MAX_PROBE_BATCH), 256)
    seed: int = _key(_SEED, _int_in(0, MAX_SEED), 0)


@dataclass(frozen=True)
class BudgetConfig(_Section):
    """``budget``: trials, epochs per complete trial and a wall-clock limit."""

    trials: int = _key(f"an integer in [1, {MAX_TRIALS}] (each trial trains a model; more is "
                       "a typo)", _int_in(1, MAX_TRIALS), 0, required=True)
    epochs: int = _key(f"an integer in [1, {MAX_EPOCHS}] (epochs of a complete trial)",
                       _int_in(1, MAX_EPOCHS), 0, required=True)
    minutes: float | None = _key(f"a number in (0, {MAX_MINUTES}] or null (wall-clock limit; "
                                 f"{MAX_MINUTES} is a year)",
                                 _optional(_positive_number_to(MAX_MINUTES)))


@dataclass(frozen=True)
class OptunaConfig(_Section):
    """``optuna``: storage, study name and sampler (``backend: optuna`` only)."""

    storage: str | None = _key("a storage URL (sqlite:///..., postgresql://...) or null",
                               _optional(_text), hint="default: sqlite in the output folder")
    study_name: str | None = _key(f"a string of at most {MAX_STUDY_NAME} characters or null "
                                  "(Optuna's limit)", _optional(_text_to(MAX_STUDY_NAME)))
    sampler: str = _key(f"one of {list(SAMPLERS)}", _one_of(SAMPLERS), "tpe")
    stale_after_s: int = _key(
        "an integer in [20, 86400] (seconds without a heartbeat, or since its start for a "
        "trial no worker owns, before a RUNNING trial is marked FAIL and queued again; at "
        "least twice the 10 s heartbeat)", _int_in(20, 86_400), 120)


@dataclass(frozen=True)
class RayConfig(_Section):
    """``ray``: cluster address and trial resources (``backend: ray`` only)."""

    address: str | None = _key("a Ray cluster address or null (local Ray)", _optional(_text))
    cpus_per_trial: float = _key(f"a number in (0, {MAX_CPUS}]",
                                 _positive_number_to(MAX_CPUS), 1)
    gpus_per_trial: float | None = _key("a number in (0, 64] or null (used when Ray sees GPUs)",
                                        _optional(_positive_number_to(64)))
    max_concurrent_trials: int | None = _key(f"an integer in [1, {MAX_TRIALS}] or null",
                                             _optional(_int_in(1, MAX_TRIALS)))


@dataclass(frozen=True)
class ChoiceConfig(_Section):
    """``pruner`` (Optuna) or ``scheduler`` (Ray): a registry name and the settings
    that name reads (defaults filled), e.g. ``ncp`` with ``predictor`` and
    ``reduction_factor``."""

    host: str
    name: str
    settings: Mapping[str, Any]

    @property
    def entry(self) -> Entry:
        return registry.get(self.host, self.name)

    @property
    def rule(self) -> str | None:
        """The NCP rule (``"asha"``, ``"percentile"``), None for a built-in."""
        return self.entry.rule

    def make(self, epochs: int, state_path: str | os.PathLike[str] | None = None, *,
             n_trials: int | None = None, rungs: Mapping[str, Any] | None = None) -> Any:
        """The host's pruner or scheduler for trials of ``epochs`` epochs (``n_trials``:
        the sweep's budget, for the names that plan over the whole study; ``rungs``:
        ``ncp_pause``'s recorded ``reduction_factor`` and ``keep_ties``, from
        :func:`ncp_search.app.sweep.folder.pause_rungs`)."""
        extra = dict(rungs or {}) if self.rule == "pause" else {}
        return self.entry.make(self.settings, epochs, state_path, n_trials=n_trials, **extra)

    def describe(self) -> str:
        """The name and its settings in one line, e.g. ``ncp (predictor=best, ...)``."""
        return self.entry.describe(self.settings)

    def to_dict(self) -> dict[str, Any]:
        rule = {"rule": self.rule} if self.rule else {}
        return {"name": self.name, **dict(self.settings), **rule}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], host: str = registry.OPTUNA) -> ChoiceConfig:
        """A validated section, also as 0.1 and 0.2 stored it (every setting of every
        name, with or without ``rule``): the settings the name does not read are
        dropped."""
        name = str(raw.get("name") or registry.DEFAULT)
        return cls(host, name, registry.get(host, name).complete(raw))


_SECTION_CLASSES: dict[str, type[_Section]] = {
    "data": DataConfig, "source": SourceConfig, "probe": ProbeConfig,
    "budget": BudgetConfig, "optuna": OptunaConfig, "ray": RayConfig,
}
USED_BY = {"pruner": registry.OPTUNA, "optuna": registry.OPTUNA,
           "scheduler": registry.RAY, "ray": registry.RAY}
"""The backend each backend-specific section belongs to."""


@dataclass(frozen=True)
class SweepConfig(_Section):
    """A validated sweep config (:func:`load_sweep_config`); the class attributes
    declare the top-level keys, the section classes the rest."""

    name: str = _key("a name of letters, digits, '_', '.' or '-' (at most 100 characters, "
                     "not only dots: it names a folder)", _name, "", required=True)
    description: str = _key("a string", lambda v: isinstance(v, str), "")
    backend: str = _key(f"one of {list(BACKENDS)}", _one_of(BACKENDS), registry.OPTUNA)
    seed: int = _key(_SEED, _int_in(0, MAX_SEED), 0)
    output: str = _key("a folder path", _optional(_text), "", hint="default: runs/<name>")
    mode: str = _key(f"one of {list(MODES)}", _one_of(MODES), "observer")
    data: DataConfig = field(default_factory=DataConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    pruner: ChoiceConfig | None = None
    scheduler: ChoiceConfig | None = None
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    search_space: Mapping[str, Any] = field(default_factory=dict)

    SECTIONS: ClassVar[tuple[str, ...]] = ("data", "source", "probe", "budget", "pruner",
                                           "scheduler", "optuna", "ray")

    @property
    def choice(self) -> ChoiceConfig:
        """The pruner (Optuna) or scheduler (Ray) of the chosen backend."""
        chosen = self.scheduler if self.backend == registry.RAY else self.pruner
        assert chosen is not None, "a validated config has the backend's choice"
        return chosen

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("pruner", "scheduler"):
            if out[key] is None:
                del out[key]
        out["search_space"] = copy.deepcopy(dict(self.search_space))
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SweepConfig:
        """The config of a validated plain form (``to_dict``, ``sweep.json``, an
        Optuna study's settings; also as 0.1 and 0.2 stored them)."""
        backend = str(raw.get("backend") or registry.OPTUNA)
        values: dict[str, Any] = {name: raw[name] for name in _specs(cls) if name in raw}
        values.update({name: kind.from_dict(raw.get(name) or {})
                       for name, kind in _SECTION_CLASSES.items()})
        section = registry.SECTIONS[backend]
        values[section] = ChoiceConfig.from_dict(raw.get(section) or {}, backend)
        values["search_space"] = copy.deepcopy(dict(raw.get("search_space") or {}))
        return cls(**values)


def as_config(config: SweepConfig | Mapping[str, Any]) -> SweepConfig:
    """``config`` as a :class:`SweepConfig` (a validated plain form is converted)."""
    return config if isinstance(config, SweepConfig) else SweepConfig.from_dict(config)


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
    "learning_rate": _Param("float", "a number in (0, 1000] (0 does not train; above 1000 "
                            "is taken for a typo)", _positive_number_to(1000)),
    "dropout": _Param("float", "a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "weight_decay": _Param("float", "a number in [0, 10]",
                           lambda v: _is_number(v) and 0 <= v <= 10),
    "batch_size": _Param("int", f"an integer in [1, {MAX_UNITS}]",
                         _int_in(1, MAX_UNITS)),
    "head_units": _Param("int", f"an integer in [0, {MAX_UNITS}] (0: a linear head; a "
                         "wider head does not fit in memory)", _int_in(0, MAX_UNITS)),
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
    if not isinstance(value, str) or len(value) > 100:
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
    text = repr(value)
    if len(text) > 80:
        text = text[:60] + "..." + text[-10:]
    return f"{text} ({type(value).__name__})"


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
    def fields(self, raw: Mapping[str, Any], specs: Mapping[str, tuple[_Spec, Any]],
               prefix: str) -> dict[str, Any]:
        self.unknown(raw, specs, prefix)
        out: dict[str, Any] = {}
        for key, (spec, default) in specs.items():
            if key not in raw:
                if spec.required:
                    raise self.fail(f"{prefix}{key}", f"missing; expected {spec.expected}.")
                out[key] = default
                self.defaulted.add(f"{prefix}{key}")
                continue
            value = raw[key]
            if not spec.check(value):
                problem = spec.problem(value) if spec.problem else ""
                if problem:
                    raise self.fail(f"{prefix}{key}", problem)
                raise self.expected(f"{prefix}{key}", spec.expected, value, spec.hint)
            out[key] = value
        return out

    def unknown(self, raw: Mapping[str, Any], names: Any, prefix: str,
                other: Any = ()) -> None:
        for key in raw:
            if key not in names:
                extra = " (not used by this choice)" if key in other else ""
                raise self.fail(f"{prefix}{key}", f"unknown key{extra}; {_suggest(key, names)}")

    def section(self, raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
        value = raw.get(name)
        if value is None:  # absent, or a key with nothing after it
            return {}
        if not isinstance(value, Mapping):
            example = {"pruner": " such as {name: nop}", "scheduler": " such as {name: fifo}"}
            raise self.expected(name, f"a mapping{example.get(name, '')}", value)
        return value

    def config(self, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{self.where}: a sweep config must be a mapping at the top "
                              f"level, but got {_describe(raw)}; see configs/quick.yaml.")
        top = _specs(SweepConfig)
        allowed = set(top) | set(SweepConfig.SECTIONS) | {"search_space"}
        self.unknown(raw, allowed, "")
        for key in ("data", "budget", "search_space"):
            if key not in raw:
                raise self.fail(key, "missing; every sweep config needs data, budget and "
                                "search_space (see configs/quick.yaml).")
        config = self.fields({k: raw[k] for k in top if k in raw}, top, "")
        self.backend_sections(raw, config["backend"])
        for name in SweepConfig.SECTIONS:
            value = self.section(raw, name)
            if name in _SECTION_CLASSES:
                config[name] = self.fields(value, _specs(_SECTION_CLASSES[name]), f"{name}.")
            elif USED_BY[name] == config["backend"]:
                config[name] = self.choice(name, value, USED_BY[name],
                                           deadline=config["budget"]["minutes"] is not None)
        config["search_space"] = self.space(raw["search_space"], config["mode"])
        self.source(config)
        self.data(config)
        self.limits(config)
        storage = config["optuna"]["storage"]
        if storage is not None and config["backend"] == registry.OPTUNA:
            check_storage_url(storage, self.where, "optuna.storage")
        if not config["output"]:
            config["output"] = os.path.join("runs", config["name"])
        return config

    def backend_sections(self, raw: Mapping[str, Any], backend: str) -> None:
        """A section of the other backend would be ignored: refuse it (even
        ``scheduler: {name: fifo}`` with ``backend: optuna``)."""
        for name, used_by in USED_BY.items():
            if name in raw and used_by != backend:
                flag = self.overridden.get("backend")
                home = {"pruner": "Optuna pruners", "optuna": "Optuna settings",
                        "scheduler": "Ray Tune schedulers", "ray": "Ray settings"}[name]
                instead = {"pruner": "scheduler", "scheduler": "pruner", "optuna": "ray",
                           "ray": "optuna"}[name]
                fix = f"run without {flag} {backend}" if flag else f"set backend: {used_by}"
                raise ConfigError(
                    f"{self.where}: {name}: not used by backend: {backend}"
                    f"{self._origin('backend')} ({home} apply to backend: {used_by} only; "
                    f"backend: {backend} reads the {instead} section); remove the {name} "
                    f"section, or {fix}.")

    def choice(self, section: str, value: Mapping[str, Any], host: str, *,
               deadline: bool = False) -> dict[str, Any]:
        """The ``pruner`` or ``scheduler`` section: a registry name and its settings (no
        name: ``ncp_pause``, or ``ncp`` when the sweep has a deadline)."""
        table = registry.HOSTS[host]
        chosen = value.get("name", registry.DEADLINE_DEFAULT if deadline
                           else registry.SWEEP_DEFAULT)
        if chosen not in table:
            raise self.fail(f"{section}.name", f"expected one of {list(table)}, but "
                            f"got {_describe(chosen)}; {_suggest(chosen, table)}")
        entry = table[chosen]
        if "name" not in value and chosen == registry.SWEEP_DEFAULT:
            self.unnamed_asha(section, value, host)
            self.defaulted.add(f"{section}.name")
        if entry.rule == "asha":
            self.renamed_rule(section, chosen, value, host)
        settings = [registry.SETTINGS[key] for key in entry.settings]
        specs = {s.name: (_Spec(s.expected, s.check, problem=s.problem), s.default)
                 for s in settings}
        self.unknown(value, {"name", *entry.settings}, f"{section}.",
                     other=registry.SETTINGS)
        out = self.fields({k: v for k, v in value.items() if k != "name"}, specs,
                          f"{section}.")
        return {"name": chosen, **out}

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
        self.unknown(spec, SPEC_KEYS[kind], f"{path}.")
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
            self.classes("source.task", source["task"])
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

    def classes(self, path: str, spec: str) -> None:
        """A classification task needs at least 2 classes, each a label of the data."""
        from ncp_search.app.data import _parse_spec

        classes = _parse_spec(spec)[1]
        if classes is None:
            return
        bad = sorted({c for c in classes if not 0 <= c < NUM_CLASSES})
        if bad:
            raise self.fail(path, f"the data's labels are 0-{NUM_CLASSES - 1}, but {spec!r} "
                            f"names {bad}; e.g. '{spec.partition(':')[0]}:5-9'.")
        if len(set(classes)) < 2:
            raise self.fail(path, f"a classifier needs at least 2 classes, but {spec!r} has "
                            f"{len(set(classes))}; name more, e.g. "
                            f"'{spec.partition(':')[0]}:5-9'.")

    def data(self, config: dict[str, Any]) -> None:
        target = config["data"]["target"]
        self.classes("data.target", target)
        dataset = _dataset(target)
        if dataset == "digits":
            for key in ("n_train", "n_val"):
                if config["data"][key] is not None:
                    raise self.fail(f"data.{key}", "not available for digits (its split is "
                                    "fixed: 75% train, 25% validation of the 1,797 samples); "
                                    "remove it, or use a fashion_mnist target.")

    def limits(self, config: dict[str, Any]) -> None:
        budget = config["budget"]
        section = registry.SECTIONS[config["backend"]]
        chosen = config[section]
        if registry.ncp_rule(config["backend"], chosen["name"]) == "pause":
            from ncp_search.core.predictors import PREDICTORS

            if budget["minutes"] is not None:
                self.warnings.append(
                    f"{self.where}: {section}.name: {chosen['name']} with budget.minutes="
                    f"{budget['minutes']:g}: pausing completes no trial before its last "
                    "rung, so a sweep stopped at the deadline may end with none (its paused "
                    "trials keep their checkpoints); to complete good trials early, set "
                    f"{section}: {{name: ncp}} (ASHA).")
            predictor = chosen.get("predictor")
            if predictor in PREDICTORS and PREDICTORS[predictor].cross_trial:
                unnamed = (f" ({chosen['name']} is the default of a {section} without a "
                           f"name; add name: {registry.DEADLINE_DEFAULT} for ASHA)"
                           if f"{section}.name" in self.defaulted else "")
                raise self.fail(f"{section}.predictor", f"{predictor!r} learns from completed "
                                f"trials, which {chosen['name']} has none of before its last "
                                "rung; use a per-trial predictor such as 'best' or 'pow3'"
                                f"{unnamed}.")
        # the first rung (or grace period) must come within the trial
        first = {"pruner": "min_resource", "scheduler": "grace_period"}[section]
        if first in chosen and chosen[first] > budget["epochs"]:
            raise self.fail(f"{section}.{first}", f"{chosen[first]} exceeds budget.epochs="
                            f"{budget['epochs']}{self._origin('budget.epochs')}; set {first} "
                            "<= budget.epochs.")
        if config["backend"] == registry.OPTUNA:
            pruner = config["pruner"]
            if "n_warmup_steps" in pruner and pruner["n_warmup_steps"] >= budget["epochs"]:
                self.idle("pruner.n_warmup_steps", "budget.epochs",
                          f"{pruner['n_warmup_steps']} warm-up epochs of "
                          f"{budget['epochs']}: no epoch is past the warm-up, so nothing "
                          "would ever be pruned; set n_warmup_steps < budget.epochs")
            if "n_startup_trials" in pruner and pruner["n_startup_trials"] >= budget["trials"]:
                self.idle("pruner.n_startup_trials", "budget.trials",
                          f"{pruner['n_startup_trials']} start-up trials of "
                          f"{budget['trials']}: every trial is a start-up trial, so nothing "
                          "would ever be pruned; set n_startup_trials < budget.trials")

    def unnamed_asha(self, section: str, value: Mapping[str, Any], host: str) -> None:
        """A config written for 0.2-0.3's default: settings of ``ncp`` and no name, which
        now means ``ncp_pause``."""
        pause = registry.HOSTS[host][registry.SWEEP_DEFAULT].settings
        asha = registry.HOSTS[host][registry.DEADLINE_DEFAULT].settings
        old = sorted(k for k in value if k not in pause and k in asha)
        if old:
            raise self.fail(
                f"{section}.{old[0]}",
                f"not used by {registry.SWEEP_DEFAULT}, which a {section} without a name "
                f"runs since 0.3 (it ran {registry.DEADLINE_DEFAULT}, ASHA); to keep ASHA, "
                f"add name: {registry.DEADLINE_DEFAULT}; to pause, remove "
                f"{', '.join(old)}.")

    def renamed_rule(self, section: str, chosen: str, value: Mapping[str, Any],
                     host: str) -> None:
        """A 0.1 config: ``name: ncp`` with the percentile rule's settings, which
        ``ncp`` (now ASHA) does not read."""
        asha = registry.HOSTS[host][chosen].settings
        (percentile,) = registry.ncp_names(host, "percentile")
        old = sorted(k for k in value if k not in (*asha, "name")
                     and k in registry.HOSTS[host][percentile].settings)
        if old:
            raise self.fail(
                f"{section}.{old[0]}",
                f"not used by {section}: {chosen} since ncp_search 0.2 "
                f"({chosen} is ASHA on predicted finals, the budget "
                f"benchmark's pick; docs/budget/). To keep the percentile rule, set "
                f"{section}: {{name: {percentile}, ...}}; to use ASHA, remove "
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
                          warnings: list[str] | None = None) -> SweepConfig:
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
    return SweepConfig.from_dict(checker.config(raw))


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """The YAML document at ``path``, read with the safe loader within bounds: at
    most :data:`MAX_YAML_BYTES`, :data:`MAX_YAML_DEPTH` levels of nesting and
    :data:`MAX_YAML_NODES` values once aliases are expanded, no recursive alias and
    no duplicate key (YAML keeps the last silently).

    Raises:
        ConfigError: for a missing, unreadable or oversized file, bad YAML, YAML out
            of bounds or a duplicate key.
    """
    import yaml

    where = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such config file; see configs/ for examples.") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: a folder, not a config file; see configs/.") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot read the config ({error}).") from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_YAML_BYTES:,} bytes, the most a sweep "
                          "config may have (configs/quick.yaml has 2 KB); is it the right "
                          "file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{where}: cannot read the config ({error}).") from None
    try:
        _check_shape(text, where)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _check_duplicates(root, where, "")
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ConfigError(f"{where}: not valid YAML{line}: {problem}.") from None


def _check_shape(text: str, where: str) -> None:
    """Walk YAML's event stream (no recursion, nothing built): refuse nesting deeper
    than :data:`MAX_YAML_DEPTH`, an alias of a collection it is inside (recursive) and
    aliases that expand past :data:`MAX_YAML_NODES` values."""
    import yaml

    sizes: dict[str, int] = {}  # anchor -> values it expands to
    open_anchors: list[str | None] = []
    counts: list[int] = [0]  # values inside each open collection (the stream at 0)
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = getattr(event.start_mark, "line", 0) + 1
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_anchors) >= MAX_YAML_DEPTH:
                raise ConfigError(f"{where}: YAML nested deeper than {MAX_YAML_DEPTH} levels "
                                  f"at line {line} (a sweep config nests 4); flatten it.")
            open_anchors.append(event.anchor)
            counts.append(0)
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor = open_anchors.pop()
            size = counts.pop() + 1
            if anchor is not None:
                sizes[anchor] = size
            counts[-1] += size
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor in open_anchors:
                raise ConfigError(f"{where}: the alias *{event.anchor} at line {line} is "
                                  f"inside the value it names (a recursive alias); write the "
                                  "value out.")
            counts[-1] += sizes.get(str(event.anchor), 1)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            counts[-1] += 1
        if counts[-1] > MAX_YAML_NODES:
            raise ConfigError(f"{where}: the YAML's aliases (*name) expand to more than "
                              f"{MAX_YAML_NODES:,} values by line {line} (a sweep config has "
                              "a few dozen); write the values out instead of nesting aliases.")


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
                      warnings: list[str] | None = None) -> SweepConfig:
    """Read a sweep config with YAML's safe loader and validate it (with command-line
    overrides applied first).

    Args:
        path: the YAML file.
        overrides: ``{key path: (value, flag)}``, e.g. ``{"budget.trials": (16,
            "--trials")}``; a value of None leaves the key as the file has it.
        warnings: receives the warnings of :func:`validate_sweep_config`.

    Raises:
        ConfigError: for a missing, unreadable or oversized file, bad YAML or any
            schema error.
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
