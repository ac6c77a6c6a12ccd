"""Ray Tune scheduler that stops trials from their predicted final value.

Usage::

    tune.Tuner(trainable, tune_config=tune.TuneConfig(
        metric="val_accuracy", mode="max", scheduler=ncp_search.NCPScheduler(max_t=20)))

Each result should carry the metric and, for the predictors that read them,
``beta_eff`` and the probe terms (``probe_feature_norm``, ...). This module only
translates: per-trial results become a
:class:`~ncp_search.core.history.TrialHistory`, the prediction comes from
:mod:`ncp_search.core.predictors` and the decision from :mod:`ncp_search.core.rules`:

- ``rule="percentile"``: stop when the prediction is below the ``percentile`` of the
  completed trials' finals and the other trials' latest predictions, once
  ``n_startup_trials`` trials completed;
- ``rule="asha"``: asynchronous successive halving whose rungs
  (``grace_period * reduction_factor**k`` below ``max_t``) rank trials by their
  predicted final value instead of the raw metric.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler
except ImportError as error:  # pragma: no cover
    raise ImportError("ncp_search.NCPScheduler needs Ray Tune: pip install 'ray[tune]'") from error

from ncp_search.core import rules
from ncp_search.core.history import PROBE_TERMS, REPORTED_SERIES, TrialHistory, as_number
from ncp_search.core.predictors import (
    CrossTrialModel,
    check_feedable,
    fit_cross_trial,
    missing_inputs,
    predict_final,
)

logger = logging.getLogger(__name__)
RULES = rules.RULES
STATE_FORMAT = "ncp_search.NCPScheduler/1"


@dataclass
class _Track:
    """What the scheduler knows of one trial (values "higher is better")."""

    t: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    predictions: dict[float, float] = field(default_factory=dict)
    final: float | None = None
    stopped: bool = False
    completed_once: bool = False  # completed, then re-run by Tune (restore)
    removed: bool = False  # removed by Tune without completing or being stopped

    def history(self, sign: float) -> TrialHistory:
        return TrialHistory(
            steps=np.array(self.t, dtype=float),
            values=np.array(self.values, dtype=float),
            series={k: np.array(v, dtype=float) for k, v in self.series.items()},
            final=math.nan if self.final is None else self.final,
            sign=sign,
        )

    latest_prediction: float = math.nan  # the prediction at the latest step

    def as_json(self) -> dict[str, Any]:
        return {"t": self.t, "values": _nulls(self.values),
                "series": {k: _nulls(v) for k, v in self.series.items()},
                "predictions": [[t, p] for t, p in self.predictions.items()],
                "final": self.final, "stopped": self.stopped,
                "completed_once": self.completed_once, "removed": self.removed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Track:
        return cls(
            t=[float(v) for v in data["t"]],
            values=[as_number(v) for v in data["values"]],
            series={str(k): [as_number(v) for v in s] for k, s in data["series"].items()},
            predictions={float(t): as_number(p) for t, p in data["predictions"]},
            latest_prediction=as_number(data["predictions"][-1][1]) if data["predictions"]
            else math.nan,
            final=None if data["final"] is None else as_number(data["final"]),
            stopped=bool(data["stopped"]), completed_once=bool(data["completed_once"]),
            removed=bool(data.get("removed", False)),
        )


def _nulls(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


class NCPScheduler(FIFOScheduler):
    """Stop Ray Tune trials whose predicted final value is poor.

    Args:
        metric: the result key to optimise (or set through ``TuneConfig``).
        mode: ``"max"`` or ``"min"`` (or set through ``TuneConfig``).
        time_attr: the result key counting training progress.
        grace_period: no decision while ``time_attr`` is below this (Tune's units,
            not a count of results); also the first ASHA rung. Default 1 (the
            budget benchmark: grace 2 costs ASHA 27-40% more epochs).
        max_t: the length of a complete trial in ``time_attr`` units (the horizon
            of extrapolating predictors; no decision at or after it).
        predictor: a predictor name (default ``"best"``, the benchmark's choice).
            Refused here if results can never feed it (``ncp_two_batch``) or it is
            a score (``tse``).
        rule: ``"asha"`` (default, the budget benchmark's pick: asynchronous
            successive halving on the predictions, rungs at ``grace_period *
            reduction_factor**k`` below ``max_t``) or ``"percentile"`` (the default
            in 0.1). ``percentile``, ``n_startup_trials`` and ``kappa`` belong to
            the percentile rule: passing one with ``rule="asha"`` is a ValueError.
        percentile: for the percentile rule, keep trials predicted in the best
            ``percentile`` percent (default 50).
        n_startup_trials: for the percentile rule, no stop until this many trials
            completed (default 5; at least one always), as NCPPruner.
        reduction_factor: for ASHA, keep the best ``1/reduction_factor`` at each rung.
        kappa: for the percentile rule (default 0), decide on ``prediction + kappa *
            spread`` (the spread of completed trials' ``final - prediction`` at this
            ``time_attr``).
        incumbent_alpha: also stop when even the conformal upper bound at level
            ``incumbent_alpha`` of the trial's final is below the best completed
            final (:func:`ncp_search.core.rules.incumbent_rule`); ``None`` (default)
            turns the test off.
        prune_diverged: stop a trial at once when its metric is a NaN or infinite
            number (:func:`ncp_search.core.rules.diverged_rule`); default True, as
            NCPPruner. A missing or non-numeric metric is not divergence: it fails
            open (below).
        beta_key: the result key holding ``beta_eff``.
        state_path: a JSON-lines journal where the scheduler appends every change of
            its state (one line per result; a torn last line is ignored). Ray Tune
            does not checkpoint scheduler state (ray-project/ray#30838): a sweep
            resumed with ``Tuner.restore`` gets the scheduler as it was when the
            sweep started, and this file is how it finds its histories again. Put
            it beside the experiment (``<storage_path>/<name>/ncp_scheduler.jsonl``).
            It is parsed as JSON, never unpickled.

    NaN and edge cases:
        A metric that is a NaN or infinite number stops the trial
        (``prune_diverged``; never at or after ``max_t``). Fail open (CONTINUE) for
        results whose metric or ``time_attr`` is missing or not a number, whose
        ``time_attr`` is not finite, with a NaN prediction, or without the series the
        predictor reads; each case is warned about once and never raised out of a
        hook. A completed trial whose final is not a number is left out of the
        reference. A trial whose ``time_attr`` goes back (Tune restarted it) drops
        what it is about to report again; a trial that had completed and is re-run
        (``Tuner.restore``) is never stopped and never compared with its own
        earlier final.
    """

    FEEDS = REPORTED_SERIES

    def __init__(
        self,
        metric: str | None = None,
        mode: str | None = None,
        *,
        time_attr: str = "training_iteration",
        grace_period: int = 1,
        max_t: int = 100,
        predictor: str = "best",
        rule: str = "asha",
        percentile: float | None = None,
        n_startup_trials: int | None = None,
        reduction_factor: float = 3.0,
        kappa: float | None = None,
        incumbent_alpha: float | None = None,
        prune_diverged: bool = True,
        beta_key: str = "beta_eff",
        state_path: str | None = None,
    ) -> None:
        super().__init__()
        if mode not in (None, "max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', but got mode={mode!r}.")
        if grace_period < 1:
            raise ValueError(f"grace_period must be >= 1, but got grace_period={grace_period}.")
        if max_t < grace_period:
            raise ValueError(
                f"max_t must be >= grace_period, but got max_t={max_t}, "
                f"grace_period={grace_period}."
            )
        given = rules.rule_settings(rule, "NCPScheduler", reduction_factor=reduction_factor,
                                    incumbent_alpha=incumbent_alpha, percentile=percentile,
                                    n_startup_trials=n_startup_trials, kappa=kappa)
        self._incumbent_alpha = incumbent_alpha
        self._prune_diverged = bool(prune_diverged)
        self._chosen = check_feedable(predictor, self.FEEDS, "NCPScheduler")
        self._metric = metric
        self._mode = mode
        self._time_attr = time_attr
        self._grace_period = int(grace_period)
        self._max_t = int(max_t)
        self._predictor = predictor
        self._rule = rule
        self._percentile = given["percentile"]
        self._n_startup = int(given["n_startup_trials"])
        self._rf = float(reduction_factor)
        self._kappa = given["kappa"]
        self._beta_key = beta_key
        self._rung_steps = rules.asha_rungs(self._grace_period, self._rf, self._max_t)
        self._tracks: dict[str, _Track] = {}
        self._rungs: dict[float, dict[str, float]] = {}
        self._warned: set[str] = set()
        self._models: dict[tuple[float, tuple[str, ...]], CrossTrialModel | None] = {}
        self._state_path = state_path
        self._journal: Any = None
        self._loaded = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_journal"] = None
        state["_models"] = {}
        return state

    # -- Tune's hooks ---------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    @property
    def _sign(self) -> float:
        return 1.0 if self._mode == "max" else -1.0

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._load_once()
        if not self._metric or self._mode not in ("max", "min"):
            raise ValueError(
                f"NCPScheduler needs a metric and a mode ('max' or 'min'), but got "
                f"metric={self._metric!r}, mode={self._mode!r}. Pass them to NCPScheduler "
                "or to tune.TuneConfig(metric=..., mode=...)."
            )
        self._tracks.setdefault(trial.trial_id, _Track())

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        try:
            decision = self.decide(trial.trial_id, result)
        except Exception as error:  # noqa: BLE001 - never raise out of a Tune hook
            self._warn_once("error", f"NCPScheduler could not decide ({error!r}); the trial "
                                     "continues. Please report this.")
            return TrialScheduler.CONTINUE
        return TrialScheduler.STOP if decision.stop else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        # Tune also calls this for the trials this scheduler stopped: their last value
        # is not a final; their last prediction stays in the pool (as NCPPruner keeps
        # pruned trials' predictions).
        track = self._tracks.get(trial.trial_id)
        if track is not None and track.stopped:
            return
        value = as_number((result or {}).get(self._metric))
        if not math.isfinite(value):
            self._warn_once("final", f"trial {trial.trial_id} completed without a finite "
                                     f"{self._metric!r}; it is left out of the reference.")
        self._apply({"e": "complete", "id": trial.trial_id,
                     "final": self._sign * value if math.isfinite(value) else None})

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        # A removed trial's latest prediction stays in the pool only if it was stopped.
        track = self._tracks.get(trial.trial_id)
        if track is not None and not track.stopped and track.final is None:
            self._apply({"e": "remove", "id": trial.trial_id})

    def debug_string(self) -> str:
        return (f"Using NCPScheduler ({self._rule}, predictor={self._predictor}): "
                f"num_stopped={self.num_stopped}")

    @property
    def num_stopped(self) -> int:
        """Trials stopped by this scheduler (a trial re-run after a restore and stopped
        again counts once)."""
        return sum(t.stopped for t in self._tracks.values())

    # -- decisions ------------------------------------------------------------------
    def decide(self, trial_id: str, result: dict[str, Any]) -> rules.Decision:
        """Record ``result`` for ``trial_id`` and decide (what ``on_trial_result``
        returns as STOP/CONTINUE), with the reason."""
        self._load_once()
        if self._metric is None:
            raise ValueError("NCPScheduler needs a metric; pass metric= or set it in "
                             "tune.TuneConfig(metric=..., mode=...).")
        reported = result.get(self._metric)
        value = as_number(reported)
        now = as_number(result.get(self._time_attr))
        if (self._prune_diverged and rules.is_diverged(reported) and math.isfinite(now)
                and now < self._max_t):
            return self._diverged(trial_id, now)
        if math.isnan(now) or math.isnan(value):
            bad = [k for k, v in ((self._metric, value), (self._time_attr, now)) if math.isnan(v)]
            self._warn_once(
                "metric", f"results with a missing, non-numeric or non-finite {bad} (got "
                f"{[result.get(k) for k in bad]}); NCPScheduler lets such trials run. "
                f"Reported keys: {sorted(result)[:20]}."
            )
            return rules.Decision(False, "no_value")
        series = {name: as_number(result.get(self._result_key(name)))
                  for name in self._chosen.requires}
        event: dict[str, Any] = {"e": "result", "id": trial_id, "t": now,
                                 "v": self._sign * value, "s": _nulls_dict(series)}
        track = self._apply(event)
        decision, prediction = self._judge(trial_id, track, now)
        if (self._incumbent_alpha is not None and not decision.stop
                and decision.reason not in ("completed_before_restore", "warmup",
                                            "last_step")):
            incumbent = self._incumbent(track, now)
            decision = incumbent if incumbent.stop else decision
        if math.isfinite(prediction) or decision.stop:
            update: dict[str, Any] = {"e": "decision", "id": trial_id, "t": now,
                                      "p": _null(prediction), "stop": decision.stop}
            if self._rule == "asha" and decision.reason in ("below", "not_below",
                                                            "empty_reference"):
                update["rung"] = rules.current_rung(now, self._rung_steps)
            self._apply(update)
        return decision

    def _diverged(self, trial_id: str, now: float) -> rules.Decision:
        """Stop a trial whose metric diverged (recorded as a stop with no prediction;
        its NaN value is not kept: it would be a missing value in its history)."""
        track = self._tracks.get(trial_id)
        if track is not None and track.completed_once:
            return rules.Decision(False, "completed_before_restore")
        self._apply({"e": "decision", "id": trial_id, "t": now, "p": None, "stop": True})
        return rules.diverged_rule(math.nan)

    def _result_key(self, name: str) -> str:
        return self._beta_key if name == "beta_eff" else name

    def _judge(
        self, trial_id: str, track: _Track, now: float
    ) -> tuple[rules.Decision, float]:
        """The decision and the prediction it was made on (NaN if none)."""
        nan = math.nan
        if track.completed_once:
            return rules.Decision(False, "completed_before_restore"), nan
        if rules.in_warmup(now, self._grace_period):
            return rules.Decision(False, "warmup"), nan
        if now >= self._max_t:
            return rules.Decision(False, "last_step"), nan
        history = track.history(self._sign)
        missing = missing_inputs(self._chosen, history)
        if missing:
            self._warn_once(
                "inputs", f"results lack {[self._result_key(m) for m in missing]}, which "
                f"predictor={self._predictor!r} needs; NCPScheduler lets such trials run. "
                "Report them with ncp_search's Ray helpers."
            )
            return rules.Decision(False, "no_prediction"), nan
        # Predicted (and recorded) in start-up too: kappa needs the completed trials'
        # predictions at every step.
        prediction = self._predict(history)
        if self._rule == "asha":
            rung = rules.current_rung(now, self._rung_steps)
            if rung is None:
                return rules.Decision(False, "no_rung", prediction), prediction
            recorded = self._rungs.get(rung, {})
            if trial_id in recorded:
                return rules.Decision(False, "already_at_rung", prediction), prediction
            return rules.asha_rule(prediction, recorded=list(recorded.values()),
                                   reduction_factor=self._rf), prediction
        finals = [t.final for t in self._tracks.values() if t.final is not None]
        others = [t.latest_prediction for k, t in self._tracks.items()
                  if k != trial_id and t.final is None and not t.removed]
        return rules.percentile_rule(
            prediction, finals=finals, others=others, percentile=self._percentile,
            n_startup_trials=self._n_startup, kappa=self._kappa,
            spread=self._spread(now) if self._kappa else 0.0,
        ), prediction

    def _predict(self, history: TrialHistory) -> float:
        peers: list[TrialHistory] = []
        model: CrossTrialModel | None | bool = False
        if self._chosen.cross_trial:
            done = sorted(k for k, t in self._tracks.items()
                          if t.final is not None and t.t and t.t[-1] >= history.last_step)
            key = (history.last_step, tuple(done))
            if key not in self._models:
                peers = [self._tracks[k].history(self._sign) for k in done]
                self._models = {k: v for k, v in self._models.items() if k[0] != key[0]}
                self._models[key] = fit_cross_trial(self._chosen, peers, history.last_step)
            model = self._models[key]
        return predict_final(self._chosen, history, horizon=self._max_t, peers=peers,
                             model=model)

    def _incumbent(self, track: _Track, now: float) -> rules.Decision:
        assert self._incumbent_alpha is not None
        peers = [t for t in self._tracks.values() if t.final is not None]
        best_at = [max((v for tt, v in zip(t.t, t.values) if tt <= now and math.isfinite(v)),
                       default=math.nan) for t in peers]
        finals = [math.nan if t.final is None else t.final for t in peers]
        best_now = max((v for v in track.values if math.isfinite(v)), default=math.nan)
        return rules.incumbent_rule(best_now, peers_best=best_at,
                                    peers_final=finals,
                                    alpha=self._incumbent_alpha)

    def _spread(self, now: float) -> float:
        return rules.prediction_spread(
            (rules.prediction_at(t.predictions, now), t.final)
            for t in self._tracks.values() if t.final is not None)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- state ------------------------------------------------------------------------
    def _apply(self, event: dict[str, Any], journal: bool = True) -> _Track:
        """Apply one state change (live, or replayed from the journal) and log it."""
        trial_id = str(event["id"])
        track = self._tracks.setdefault(trial_id, _Track())
        kind = event["e"]
        if kind == "result":
            now = float(event["t"])
            if track.t and now <= track.t[-1]:
                self._restart(trial_id, track, now)
            track.t.append(now)
            track.values.append(as_number(event["v"]))
            for name, value in (event.get("s") or {}).items():
                column = track.series.setdefault(name, [math.nan] * (len(track.t) - 1))
                column.append(as_number(value))
            for column in track.series.values():
                column.extend([math.nan] * (len(track.t) - len(column)))
        elif kind == "decision":
            prediction = as_number(event.get("p"))
            if math.isfinite(prediction):
                track.predictions[float(event["t"])] = prediction
                track.latest_prediction = prediction
            if event.get("rung") is not None:
                self._rungs.setdefault(float(event["rung"]), {})[trial_id] = prediction
            if event.get("stop"):
                track.stopped = True
        elif kind == "complete":
            final = event.get("final")
            track.final = None if final is None else as_number(final)
            if track.final is not None and not math.isfinite(track.final):
                track.final = None
        elif kind == "remove":
            track.removed = True
        if journal:
            self._write(event)
        return track

    def _restart(self, trial_id: str, track: _Track, now: float) -> None:
        """Tune restarted the trial (from scratch or an earlier checkpoint, e.g. after
        Tuner.restore): drop what it is about to report again."""
        keep = [i for i, t in enumerate(track.t) if t < now]
        track.t = [track.t[i] for i in keep]
        track.values = [track.values[i] for i in keep]
        track.series = {k: [v[i] for i in keep] for k, v in track.series.items()}
        track.predictions = {t: p for t, p in track.predictions.items() if t < now}
        track.latest_prediction = (track.predictions[max(track.predictions)]
                                   if track.predictions else math.nan)
        if track.final is not None:
            track.completed_once = True
            track.final = None
        track.stopped = False
        track.removed = False
        for recorded in self._rungs.values():
            recorded.pop(trial_id, None)

    def _write(self, event: dict[str, Any]) -> None:
        if not self._state_path:
            return
        if self._journal is None:
            os.makedirs(os.path.dirname(os.path.abspath(self._state_path)), exist_ok=True)
            new = not os.path.exists(self._state_path)
            self._journal = open(self._state_path, "a", encoding="utf-8")  # noqa: SIM115
            if new:
                self._journal.write(json.dumps({"format": STATE_FORMAT}) + "\n")
        self._journal.write(json.dumps(event, allow_nan=False) + "\n")
        self._journal.flush()

    def _load_once(self) -> None:
        """After Tuner.restore: replay the journal at ``state_path``."""
        if self._loaded or not self._state_path:
            return
        self._loaded = True
        try:
            with open(self._state_path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError) as error:
            logger.warning("NCPScheduler: cannot read its state %s (%s); starting empty",
                           self._state_path, error)
            self._state_path = None
            return
        header = _parse(lines[0]) if lines else None
        if not header or header.get("format") != STATE_FORMAT:
            logger.warning("NCPScheduler: %s is not an NCPScheduler journal; starting empty "
                           "and not writing to it", self._state_path)
            self._state_path = None
            return
        self._tracks, self._rungs = {}, {}
        skipped = 0
        for number, line in enumerate(lines[1:], start=2):
            event = _parse(line)
            try:
                if event is None or event.get("e") not in ("result", "decision", "complete",
                                                             "remove"):
                    raise ValueError(line[:80])
                self._apply(event, journal=False)
            except (KeyError, TypeError, ValueError):
                skipped += 1
                if number < len(lines):
                    logger.warning("NCPScheduler: %s:%d is not a state event; skipped",
                                   self._state_path, number)
        logger.info("NCPScheduler: restored %d trial histories from %s (%d lines skipped)",
                    len(self._tracks), self._state_path, skipped)

    def state(self) -> dict[str, Any]:
        """The scheduler's state as plain JSON (what :meth:`save` writes)."""
        return {"format": STATE_FORMAT,
                "tracks": {k: t.as_json() for k, t in self._tracks.items()},
                "rungs": [[r, v] for r, v in self._rungs.items()],
                "num_stopped": self.num_stopped}

    def save(self, checkpoint_path: str) -> None:
        tmp = f"{checkpoint_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(self.state(), handle, allow_nan=False)
        os.replace(tmp, checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, encoding="utf-8") as handle:
            state = json.load(handle)
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise ValueError(f"{checkpoint_path} is not an NCPScheduler state file.")
        self._tracks = {str(k): _Track.from_json(v) for k, v in state["tracks"].items()}
        self._rungs = {float(r): {str(k): as_number(p) for k, p in v.items()}
                       for r, v in state["rungs"]}


def _null(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _nulls_dict(values: dict[str, float]) -> dict[str, float | None]:
    return {k: _null(v) for k, v in values.items()}


def _parse(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


__all__ = ["NCPScheduler", "PROBE_TERMS"]
