"""The pruner (Optuna) and scheduler (Ray Tune) names, one table per host.

Every place that spells a name reads it here: the sweep config (which settings a
name accepts, their defaults and bounds), both sweep backends (the factory that
builds the host object), the report (the label of the class that decided and
its NCP rule) and the research replays. ``ncp`` means ASHA on predicted finals
on both hosts (``NCPPruner()``'s and ``NCPScheduler()``'s rule, the budget
benchmark's pick; the sweeps' default from 0.2 until ``ncp_pause``, the pausing
benchmark's pick, replaced it: :data:`SWEEP_DEFAULT`); ``ncp_percentile`` is the
percentile rule (the 0.1 default). ``ncp_asha`` is an older Ray name for ``ncp``.

Optuna and Ray are imported inside the factories only, so importing this module
imports neither.

Example:
    >>> from ncp_search.integrations.registry import PRUNERS
    >>> PRUNERS["ncp"].rule, PRUNERS["ncp"].settings
    ('asha', ('predictor', 'reduction_factor'))
    >>> PRUNERS["ncp"].describe({"predictor": "best", "reduction_factor": 3})
    'ncp (predictor=best, reduction_factor=3)'
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

OPTUNA = "optuna"
RAY = "ray"
DEFAULT = "ncp"
"""The registry name of ``NCPPruner()``'s and ``NCPScheduler()``'s default rule (ASHA
on predicted finals), and what a stored sweep config whose pruner or scheduler names
none ran (before ``ncp_pause`` became the sweeps' default)."""
SWEEP_DEFAULT = "ncp_pause"
"""A new sweep config's pruner or scheduler when it names none (the pausing benchmark's
pick; ``DEADLINE_DEFAULT`` when the sweep has a ``budget.minutes`` deadline)."""
DEADLINE_DEFAULT = "ncp"
"""A new sweep config's pruner or scheduler when it names none and has a deadline:
pausing completes no trial before its last rung, ASHA completes some early."""
TIME_ATTR = "training_iteration"
"""The Tune result key the Ray factories count epochs in (one result per epoch)."""
MAX_EPOCHS = 10_000
"""Epoch counts (warm-up, grace period) above this are refused as a typo."""
MAX_TRIALS = 100_000
"""Trial counts above this are refused as a typo (each trial trains a model)."""
MAX_REDUCTION_FACTOR = 100
MAX_KAPPA = 100.0


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: _is_int(value) and low <= value <= high


def _number_in(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: _is_number(value) and low <= value <= high


def usable_predictors() -> list[str]:
    """The predictors a sweep can use: those the adapters feed (NCPPruner and
    NCPScheduler store ``REPORTED_SERIES``) that give a final value, not a score."""
    from ncp_search.core.history import REPORTED_SERIES
    from ncp_search.core.predictors import PREDICTORS

    return [name for name, p in PREDICTORS.items()
            if not p.score_only and set(p.requires) <= set(REPORTED_SERIES)]


def _predictor(value: Any) -> bool:
    return isinstance(value, str) and value in usable_predictors()


def predictor_problem(value: Any) -> str:
    """Why a known predictor name cannot serve a sweep (``""`` when it can, or when
    the name is unknown): it reads a series no adapter records, or gives a score."""
    from ncp_search.core.history import REPORTED_SERIES
    from ncp_search.core.predictors import PREDICTORS, check_feedable

    if not isinstance(value, str) or value not in PREDICTORS:
        return ""
    try:
        check_feedable(value, REPORTED_SERIES, "a sweep's pruner or scheduler")
    except ValueError as error:
        return str(error)
    return ""


@dataclass(frozen=True)
class Setting:
    """One setting a pruner or scheduler name accepts.

    Attributes:
        name: the key in the config section.
        expected: what must hold, in words (bounds with their reason).
        check: whether a value is accepted.
        default: the value when the config leaves it out.
        problem: why a refused value cannot serve, when more can be said than
            ``expected`` (``""`` otherwise).
    """

    name: str
    expected: str
    check: Callable[[Any], bool]
    default: Any
    problem: Callable[[Any], str] = lambda value: ""


def _epochs(name: str, low: int, meaning: str, default: int) -> Setting:
    """A setting counted in epochs: an integer from ``low`` to :data:`MAX_EPOCHS`."""
    return Setting(name, f"an integer in [{low}, {MAX_EPOCHS}] ({meaning})",
                   _int_in(low, MAX_EPOCHS), default)


SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("predictor", "a predictor name such as 'best', 'pow3' or 'ncp_raw'", _predictor,
            "best", predictor_problem),
    Setting("percentile", "a number in [0, 100]", _number_in(0, 100), 50.0),
    Setting("n_startup_trials", f"an integer in [0, {MAX_TRIALS}] (start-up trials; more is "
            "a typo)", _int_in(0, MAX_TRIALS), 5),
    _epochs("n_warmup_steps", 0, "warm-up epochs; more is a typo", 2),
    Setting("kappa", f"a number in [0, {MAX_KAPPA:g}] (multiples of the prediction error's "
            "spread; more never prunes)", _number_in(0, MAX_KAPPA), 0.0),
    _epochs("grace_period", 1, "epochs before the first decision", 1),
    Setting("reduction_factor", f"an integer in [2, {MAX_REDUCTION_FACTOR}] (1 trial in "
            "reduction_factor goes on at each rung)", _int_in(2, MAX_REDUCTION_FACTOR), 3),
    _epochs("min_resource", 1, "epochs before the first rung", 1),
)}
"""Every setting of every name, in the order a section lists them."""

Factory = Callable[[Mapping[str, Any], int, "str | None", Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Entry:
    """One pruner or scheduler name.

    Attributes:
        name: the name a config or a replay spec writes.
        host: ``"optuna"`` or ``"ray"``.
        label: the class that decides, in words, for logs and the report.
        settings: the keys of :data:`SETTINGS` it accepts, in section order.
        factory: ``(settings, epochs, state_path, host_kwargs) -> host object``.
        rule: the NCP rule (``"asha"``, ``"percentile"`` or ``"pause"``); None for the
            hosts' own pruners and schedulers.
        stops: whether it can stop a trial at all.
        summary: one line for help texts.
    """

    name: str
    host: str
    label: str
    settings: tuple[str, ...]
    factory: Factory
    rule: str | None = None
    stops: bool = True
    summary: str = ""

    @property
    def is_ncp(self) -> bool:
        return self.rule is not None

    def defaults(self) -> dict[str, Any]:
        """The default of each setting this name accepts."""
        return {key: SETTINGS[key].default for key in self.settings}

    def complete(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """``settings`` reduced to what this name accepts, with defaults filled."""
        return {key: SETTINGS[key].default if settings.get(key) is None else settings[key]
                for key in self.settings}

    def make(self, settings: Mapping[str, Any], epochs: int,
             state_path: str | os.PathLike[str] | None = None, *,
             n_trials: int | None = None, **host_kwargs: Any) -> Any:
        """The host object for ``settings`` (completed with the defaults) and trials of
        ``epochs`` epochs, reported from epoch 0 (Optuna) or as Tune's
        ``training_iteration`` from 1 (Ray); ``state_path``: where an NCPScheduler
        keeps its journal; ``n_trials``: the sweep's trials (read by the names that
        plan over the whole study: ``ncp_pause``, which also takes ``reduction_factor``
        and ``keep_ties`` here: a resumed sweep's recorded rungs); ``host_kwargs`` go to
        the constructor (e.g. ``metric``, ``mode`` for Tune)."""
        path = None if state_path is None else os.path.abspath(state_path)
        if self.rule == "pause":
            host_kwargs["n_trials"] = n_trials
        return self.factory(self.complete(settings), int(epochs), path, host_kwargs)

    def describe(self, settings: Mapping[str, Any]) -> str:
        """The name and the settings it uses in one line, e.g. ``ncp (predictor=best)``."""
        used = self.complete(settings)
        text = ", ".join(f"{k}={v}" for k, v in used.items())
        return f"{self.name} ({text})" if text else self.name


# -- Optuna ------------------------------------------------------------------------------
def _ncp_pruner(s: Mapping[str, Any], epochs: int, _: str | None,
                kw: Mapping[str, Any]) -> Any:
    from ncp_search.integrations.optuna.pruner import NCPPruner

    return NCPPruner(max_step=epochs - 1, predictor=s["predictor"], rule="asha",
                     reduction_factor=s["reduction_factor"], min_resource=1, **kw)


def _ncp_percentile_pruner(s: Mapping[str, Any], epochs: int, _: str | None,
                           kw: Mapping[str, Any]) -> Any:
    from ncp_search.integrations.optuna.pruner import NCPPruner

    return NCPPruner(s["percentile"], max_step=epochs - 1, rule="percentile",
                     predictor=s["predictor"], kappa=s["kappa"],
                     n_startup_trials=s["n_startup_trials"],
                     n_warmup_steps=s["n_warmup_steps"], **kw)


def _optuna(class_name: str, *keys: str) -> Factory:
    def make(s: Mapping[str, Any], epochs: int, _: str | None, kw: Mapping[str, Any]) -> Any:
        import optuna

        return getattr(optuna.pruners, class_name)(**{key: s[key] for key in keys}, **kw)
    return make


def _hyperband_pruner(s: Mapping[str, Any], epochs: int, _: str | None,
                      kw: Mapping[str, Any]) -> Any:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs,
                                          reduction_factor=s["reduction_factor"], **kw)


def _ncp_pause_policy(s: Mapping[str, Any], epochs: int, _: str | None,
                      kw: Mapping[str, Any]) -> Any:
    """ncp_pause on Optuna: the PausingPolicy that the sweep's ask-and-tell driver
    (:func:`ncp_search.integrations.optuna.pausing.optimize_pausing`) follows; the
    study's own pruner never prunes (a ``DrivenPruner``: the driver pauses, Optuna
    cannot resume a trial)."""
    options = dict(kw)
    return _pause_policy(options, s, epochs, int(s["min_resource"]), first_step=0,
                         host="the Optuna pausing driver", own_all=True)


def _pause_policy(options: dict[str, Any], s: Mapping[str, Any], epochs: int,
                  min_resource: int, *, first_step: int, host: str,
                  own_all: bool = False) -> Any:
    """ncp_pause's PausingPolicy on either host: takes ``n_trials`` and a resumed
    sweep's recorded ``reduction_factor`` / ``keep_ties`` out of ``options``; with
    ``own_all`` (Optuna: no host object) every other option goes to the policy too, else
    what is left goes to the host's constructor."""
    from ncp_search.core.pausing import PausingPolicy

    n_trials = options.pop("n_trials", None)
    if n_trials is None:
        raise TypeError("ncp_pause needs n_trials (the sweep's budget.trials).")
    reduction_factor = options.pop("reduction_factor", PAUSE_REDUCTION_FACTOR)
    rungs = {key: options.pop(key) for key in list(options)
             if own_all or key == "keep_ties"}
    return PausingPolicy(n_trials=int(n_trials), max_resource=epochs,
                         reduction_factor=reduction_factor, min_resource=min_resource,
                         predictor=s["predictor"], first_step=first_step, host=host,
                         **rungs)


_NCP_SUMMARY = "ASHA on predicted finals (NCPPruner's and NCPScheduler's default)"
_PERCENTILE_SUMMARY = "the percentile rule on predicted finals (the 0.1 default)"
PRUNERS: dict[str, Entry] = {e.name: e for e in (
    Entry("ncp", OPTUNA, "NCPPruner", ("predictor", "reduction_factor"), _ncp_pruner,
          rule="asha", summary=_NCP_SUMMARY),
    Entry("ncp_percentile", OPTUNA, "NCPPruner",
          ("predictor", "percentile", "n_startup_trials", "n_warmup_steps", "kappa"),
          _ncp_percentile_pruner, rule="percentile", summary=_PERCENTILE_SUMMARY),
    Entry("ncp_pause", OPTUNA, "a PausingPolicy driving the study (ask and tell)",
          ("predictor", "min_resource"), _ncp_pause_policy, rule="pause",
          summary="successive halving that pauses instead of killing (rf 3, one bracket of "
                  "all trials; a paused trial ends PRUNED with a checkpoint, a promoted one "
                  "continues as a new trial)"),
    Entry("median", OPTUNA, "Optuna's MedianPruner", ("n_startup_trials", "n_warmup_steps"),
          _optuna("MedianPruner", "n_startup_trials", "n_warmup_steps")),
    Entry("percentile", OPTUNA, "Optuna's PercentilePruner",
          ("percentile", "n_startup_trials", "n_warmup_steps"),
          _optuna("PercentilePruner", "percentile", "n_startup_trials", "n_warmup_steps")),
    Entry("successive_halving", OPTUNA, "Optuna's SuccessiveHalvingPruner",
          ("reduction_factor",), _optuna("SuccessiveHalvingPruner", "reduction_factor")),
    Entry("hyperband", OPTUNA, "Optuna's HyperbandPruner", ("reduction_factor",),
          _hyperband_pruner),
    Entry("nop", OPTUNA, "no pruner (Optuna's NopPruner)", (), _optuna("NopPruner"),
          stops=False),
)}
"""The Optuna pruners a sweep config can name (section ``pruner``)."""


# -- Ray Tune ----------------------------------------------------------------------------
def _ncp_scheduler(rule: str) -> Factory:
    def make(s: Mapping[str, Any], epochs: int, state_path: str | None,
             kw: Mapping[str, Any]) -> Any:
        from ncp_search.integrations.ray.scheduler import NCPScheduler

        chosen: dict[str, Any] = {"percentile": float(s["percentile"])} if rule == "percentile" \
            else {"reduction_factor": float(s["reduction_factor"])}
        return NCPScheduler(time_attr=TIME_ATTR, grace_period=int(s["grace_period"]),
                            max_t=epochs, predictor=s["predictor"], rule=rule,
                            state_path=state_path, **chosen, **kw)
    return make


def _ncp_pause_scheduler(s: Mapping[str, Any], epochs: int, state_path: str | None,
                         kw: Mapping[str, Any]) -> Any:
    from ncp_search.integrations.ray.scheduler import NCPScheduler

    options = dict(kw)
    policy = _pause_policy(options, s, epochs, int(s["grace_period"]), first_step=1,
                           host="NCPScheduler")
    return NCPScheduler(time_attr=TIME_ATTR, max_t=epochs, state_path=state_path,
                        policy=policy, **options)


PAUSE_REDUCTION_FACTOR = 3
"""ncp_pause's reduction factor: the pausing benchmark's pick (docs/budget/pausing.md)."""


def _tune(class_name: str, *keys: str, max_t: bool = True, time_attr: bool = True) -> Factory:
    def make(s: Mapping[str, Any], epochs: int, _: str | None, kw: Mapping[str, Any]) -> Any:
        from ray.tune import schedulers

        cls = getattr(schedulers, class_name)
        args: dict[str, Any] = {key: s[key] for key in keys}
        if time_attr:
            args["time_attr"] = TIME_ATTR
        if max_t:
            args["max_t"] = epochs
        return cls(**args, **kw)
    return make


_NCP_RAY = ("predictor", "grace_period", "reduction_factor")
SCHEDULERS: dict[str, Entry] = {e.name: e for e in (
    Entry("ncp", RAY, "NCPScheduler", _NCP_RAY, _ncp_scheduler("asha"), rule="asha",
          summary=_NCP_SUMMARY),
    Entry("ncp_asha", RAY, "NCPScheduler", _NCP_RAY, _ncp_scheduler("asha"), rule="asha",
          summary="the same as ncp (its name before 0.2)"),
    Entry("ncp_percentile", RAY, "NCPScheduler", ("predictor", "percentile", "grace_period"),
          _ncp_scheduler("percentile"), rule="percentile", summary=_PERCENTILE_SUMMARY),
    Entry("ncp_pause", RAY, "NCPScheduler with a PausingPolicy", ("predictor", "grace_period"),
          _ncp_pause_scheduler, rule="pause",
          summary="successive halving that pauses instead of killing (rf 3, one bracket of "
                  "all trials; trials checkpoint at each rung)"),
    Entry("fifo", RAY, "no early stopping (Tune's FIFOScheduler)", (),
          _tune("FIFOScheduler", max_t=False, time_attr=False), stops=False),
    Entry("async_hyperband", RAY, "Tune's AsyncHyperBandScheduler",
          ("grace_period", "reduction_factor"),
          _tune("AsyncHyperBandScheduler", "grace_period", "reduction_factor")),
    Entry("hyperband", RAY, "Tune's HyperBandScheduler", ("reduction_factor",),
          _tune("HyperBandScheduler", "reduction_factor")),
    Entry("median_stopping", RAY, "Tune's MedianStoppingRule", ("grace_period",),
          _tune("MedianStoppingRule", "grace_period", max_t=False)),
)}
"""The Ray Tune schedulers a sweep config can name (section ``scheduler``)."""

HOSTS: dict[str, dict[str, Entry]] = {OPTUNA: PRUNERS, RAY: SCHEDULERS}
SECTIONS = {OPTUNA: "pruner", RAY: "scheduler"}
"""The config section that names the host's pruner or scheduler."""


def get(host: str, name: str) -> Entry:
    """The entry of ``name`` on ``host``.

    Raises:
        ValueError: for an unknown host or name (with the closest known name).
    """
    if host not in HOSTS:
        raise ValueError(f"host must be one of {list(HOSTS)}, but got host={host!r}.")
    table = HOSTS[host]
    if name not in table:
        close = difflib.get_close_matches(str(name), list(table), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else "."
        raise ValueError(f"{SECTIONS[host]} must be one of {list(table)}, but got "
                         f"{name!r}{hint}")
    return table[name]


def ncp_rule(host: str, name: str) -> str | None:
    """The NCP rule of ``name`` on ``host`` (None for a built-in or an unknown name)."""
    entry = HOSTS.get(host, {}).get(name)
    return None if entry is None else entry.rule


def ncp_names(host: str, rule: str | None = None) -> list[str]:
    """The NCP names on ``host`` (of ``rule`` if given)."""
    return [n for n, e in HOSTS[host].items() if e.is_ncp and rule in (None, e.rule)]
