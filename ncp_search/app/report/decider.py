"""What decided which trials stopped, in words, from a sweep's description.

The report reads, first found first: the settings an NCP pruner stored in its study
(``meta["pruner_settings"]``, as ``NCPPruner.settings()`` returns them), or the
pruner (Optuna) or scheduler (Ray) section of the validated config stored in
``sweep.json`` (``meta["config"]``). The name is looked up in
:mod:`ncp_search.integrations.registry` (the class that decided, its NCP rule,
whether it stops trials at all); sections stored before 0.2 hold no ``rule``, and
their ``ncp`` was the percentile rule. :func:`describe` turns it into a
:class:`Decider`: the host class, the rule, the predictor and whether that
predictor reads ``beta_eff`` (``PREDICTORS[name].uses_beta_eff``), so no section
of the report implies that ``beta_eff`` decided when it did not.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ncp_search.app.sweep.folder import LEGACY_PAUSE, PAUSE_SETTINGS
from ncp_search.integrations import registry

# The reasons of ncp_search.core.rules.Decision that stop a trial, in words.
STOP_REASONS = {
    "below": "predicted final below the rule's threshold",
    "diverged": "its latest value was NaN or infinite (diverged)",
    "below_incumbent": "upper bound on the final below the best completed final "
                       "(incumbent test)",
    "dropped": "not promoted at a rung: paused for good (or waiting at an open rung "
               "when the sweep stopped), its checkpoint kept",
}
LEGACY_RULES = {"ncp": "percentile"}
"""The rule of an NCP name in a section stored without one (before 0.2)."""


@dataclass(frozen=True)
class Decider:
    """The pruner or scheduler of a sweep, as far as its description tells.

    Attributes:
        name: the config's pruner or scheduler name (``"ncp"``, ``"median"``, ...),
            ``""`` when unknown.
        host: the class that made the decisions, in words.
        backend: ``"optuna"`` or ``"ray"``.
        rule: ``"percentile"``, ``"asha"`` or ``"pause"`` for the NCP adapters, else
            ``None``.
        predictor: the NCP predictor's name, else ``None``.
        predictor_summary: its one-line summary (``""`` if unknown).
        uses_beta_eff: whether that predictor reads ``beta_eff`` or probe terms;
            ``False`` for the built-in pruners and schedulers (they read the raw
            metric), ``None`` when the predictor is unknown.
        settings: the section's settings.
        stops: whether it can stop a trial at all (the registry's word).
    """

    name: str
    host: str
    backend: str
    rule: str | None = None
    predictor: str | None = None
    predictor_summary: str = ""
    uses_beta_eff: bool | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    stops: bool = True

    @property
    def is_ncp(self) -> bool:
        return self.rule is not None

    @property
    def known(self) -> bool:
        return bool(self.name)

    def single_stop_reason(self) -> str | None:
        """The one :class:`~ncp_search.core.rules.Decision` reason by which this
        decider can stop a trial, when there is exactly one (the NCP rules without
        the incumbent test stop only on ``"below"``, the pausing policy on
        ``"dropped"``); else ``None``."""
        if self.rule == "pause":
            return "dropped"  # diverged trials are marked as such in their records
        if not self.is_ncp or self.settings.get("incumbent_alpha") is not None:
            return None
        if self.settings.get("base") is not None:
            return None  # a built-in pruner on predictions decides by its own rule
        return "below"


def _section(meta: Mapping[str, Any], backend: str) -> tuple[str, dict[str, Any]]:
    """The stored pruner or scheduler section: its name and settings (``"", {}``
    when not recorded). A meta without a config (written by hand) gives its
    ``pruner`` line's name only."""
    config = meta.get("config")
    section = None
    if isinstance(config, Mapping):
        section = config.get(registry.SECTIONS.get(backend, "pruner"))
    if isinstance(section, Mapping) and section.get("name"):
        return str(section["name"]), dict(section)
    line = meta.get("pruner")
    if isinstance(line, str) and line.strip():
        return line.partition("(")[0].strip(), {}
    return "", {}


def describe(meta: Mapping[str, Any]) -> Decider:
    """The :class:`Decider` of a sweep's ``meta`` (see the module docstring)."""
    from ncp_search.core.predictors import PREDICTORS

    backend = str(meta.get("backend") or registry.OPTUNA).lower()
    stored = meta.get("pruner_settings")
    if isinstance(stored, Mapping) and stored.get("rule") and stored.get("predictor"):
        predictor = str(stored["predictor"])
        spec = PREDICTORS.get(predictor)
        uses = stored.get("uses_beta_eff")
        return Decider(registry.DEFAULT, str(stored.get("class") or "NCPPruner"), backend,
                       rule=str(stored["rule"]), predictor=predictor,
                       predictor_summary=spec.summary if spec else "",
                       uses_beta_eff=bool(uses) if isinstance(uses, bool) else
                       (spec.uses_beta_eff if spec else None), settings=dict(stored))
    name, settings = _section(meta, backend)
    if not name:
        return Decider("", "the pruner (not recorded)", backend)
    entry = registry.HOSTS.get(backend, {}).get(name)
    if entry is None:
        return Decider(name, name, backend, uses_beta_eff=False, settings=settings)
    if not entry.is_ncp:
        return Decider(name, entry.label, backend, uses_beta_eff=False, settings=settings,
                       stops=entry.stops)
    rule = str(settings.get("rule") or LEGACY_RULES.get(name, entry.rule))
    if rule == "pause":  # the rungs' settings are not in the config (sweep.json has them)
        recorded = meta.get(PAUSE_SETTINGS)
        settings = {**settings, **(dict(recorded) if isinstance(recorded, Mapping)
                                   else LEGACY_PAUSE)}
    predictor = str(settings.get("predictor") or registry.SETTINGS["predictor"].default)
    spec = PREDICTORS.get(predictor)
    return Decider(name, entry.label, backend, rule=rule, predictor=predictor,
                   predictor_summary=spec.summary if spec else "",
                   uses_beta_eff=spec.uses_beta_eff if spec else None, settings=settings)


def _text(value: Any) -> str:
    """Text for an HTML body (quotes kept: "Optuna's", not "Optuna&#x27;s")."""
    return html.escape(str(value), quote=False)


def _number(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return _text(str(value))


def rule_sentence(decider: Decider, metric: str) -> str:
    """How the decider stops a trial, in one or two sentences (escaped HTML)."""
    metric = _text(metric)
    s = decider.settings
    if not decider.known:
        return "The sweep does not record which pruner or scheduler it used."
    if not decider.stops:
        return f"{_text(decider.host)}: every trial runs all its epochs."
    if not decider.is_ncp:
        return (f"{_text(decider.host)} decides on the raw {metric} of each trial: "
                "it makes no prediction and does not read beta_eff.")
    if decider.rule == "pause":
        first = s.get("grace_period", s.get("min_resource", 1))  # Ray's name, Optuna's
        rf = s.get("reduction_factor")
        keep = s.get("keep_min")
        share = f"1/{_number(rf)}" if rf else "a share"
        floor = f" (at least {_number(keep)})" if keep else ""
        times = f"x {_number(rf)}" if rf else "growing"
        text = (f"{decider.host}: successive halving that pauses instead of killing: every "
                f"trial trains to epoch {_number(first)} and pauses; once "
                f"all have arrived, the best {share}{floor} by predicted final resume from "
                f"their checkpoints to the next rung (epochs {times}), the others stay "
                "paused for good.")
        return text
    if decider.rule == "asha":
        rf = float(s.get("reduction_factor") or 3)
        where = (f"at epochs {_number(s.get('grace_period', 1))} x {rf:g}^k"
                 if decider.backend == "ray" else "at its rungs")
        text = (f"{decider.host}, ASHA on predictions: {where}, it stops a trial whose "
                f"predicted final is below the {100 * (1 - 1 / rf):.0f}th percentile of "
                "the predictions the other trials had at that rung (the threshold).")
    else:
        keep = float(s.get("percentile", 50))
        text = (f"{decider.host}, percentile rule: it stops a trial whose predicted final "
                f"is below the threshold, the {100 - keep:g}th percentile of the completed "
                "trials' finals and the other trials' latest predictions")
        guards = []
        if decider.backend == "ray" and s.get("grace_period") is not None:
            guards.append(f"before epoch {_number(s['grace_period'])}")
        if decider.backend != "ray" and s.get("n_startup_trials") is not None:
            guards.append(f"before {_number(s['n_startup_trials'])} trials have completed")
        if decider.backend != "ray" and s.get("n_warmup_steps") is not None:
            try:  # the sweep reports 0-based epochs as Optuna steps
                guards.append(f"before epoch {int(float(s['n_warmup_steps'])) + 1}")
            except (TypeError, ValueError):
                guards.append(f"before step {_text(s['n_warmup_steps'])}")
        text += f"; no decision {', nor '.join(guards)}." if guards else "."
        kappa = s.get("kappa")
        if kappa not in (None, 0, 0.0, "0", "0.0"):
            text += (f" It compares prediction + {_number(kappa)} x the spread of its past "
                     "errors, not the bare prediction.")
    # NCPPruner.settings() says so since 0.2; a 0.2 sweep config (which stores its rule)
    # means the default, True; 0.1 studies and configs say neither and did not.
    if s.get("prune_diverged", "class" not in s and "rule" in s) is True:
        text += " A trial whose latest value is NaN or infinite is stopped at once (diverged)."
    return text


def predictor_sentence(decider: Decider, measured: bool = True) -> str:
    """Which predictor made the predictions and whether it reads beta_eff (HTML);
    ``measured``: whether any trial recorded a beta_eff value."""
    if not decider.is_ncp:
        return ""
    name = _text(str(decider.predictor))
    summary = f" ({_text(decider.predictor_summary)})" if decider.predictor_summary else ""
    if decider.uses_beta_eff is None:
        return (f"Predictor <code>{name}</code>: not a known predictor; whether it reads "
                "beta_eff is unknown.")
    if decider.uses_beta_eff:
        return (f"Predictor <code>{name}</code>{summary}: it reads beta_eff, so beta_eff "
                "shaped the predictions the rule compared.")
    if not measured:
        return (f"Predictor <code>{name}</code>{summary}: it reads only the learning curve; "
                "beta_eff was not measured (no probe is attached for such a predictor).")
    return (f"Predictor <code>{name}</code>{summary}: it reads only the learning curve; "
            "beta_eff was recorded but played no part in any decision.")


def beta_eff_heading(decider: Decider) -> tuple[str, str]:
    """The beta_eff section's heading and a one-line note (both HTML)."""
    if decider.is_ncp and decider.uses_beta_eff:
        return ("beta_eff trajectories (an input of the decisions)",
                f"The predictor <code>{_text(str(decider.predictor))}</code> reads "
                "beta_eff: these values went into its predictions.")
    if decider.is_ncp and decider.uses_beta_eff is False:
        return ("beta_eff trajectories (recorded, not used to decide)",
                f"The predictor <code>{_text(str(decider.predictor))}</code> does not "
                "read beta_eff: these values are shown for inspection and did not decide "
                "anything.")
    if decider.known:
        return ("beta_eff trajectories (recorded, not used to decide)",
                f"{_text(decider.host)} does not read beta_eff: these values are shown "
                "for inspection and did not decide anything.")
    return ("beta_eff trajectories (recorded)",
            "Which predictor decided is not recorded, so whether beta_eff took part is "
            "unknown.")
