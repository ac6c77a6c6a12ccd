"""Ray Tune scheduler that stops trials from their predicted final value.

Usage::

    tune.Tuner(trainable, tune_config=tune.TuneConfig(
        metric="val_accuracy", mode="max", scheduler=ncp_search.NCPScheduler(max_t=20)))

Each result should carry the metric and ``beta_eff`` (only the predictors that use
it need it). The scheduler keeps per-trial histories keyed by trial id, predicts
each trial's final value with a predictor from
:data:`ncp_search.core.predictors.PREDICTORS` and decides:

- ``rule="percentile"``: stop when the prediction is below the ``percentile`` of the
  completed trials' finals and the other trials' latest predictions;
- ``rule="asha"``: asynchronous successive halving whose rungs rank trials by
  their predicted final value instead of the raw metric.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import warnings
from typing import Any

import numpy as np

try:
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler
except ImportError as error:  # pragma: no cover
    raise ImportError("ncp_search.NCPScheduler needs Ray Tune: pip install 'ray[tune]'") from error

from ncp_search.core.predictors import PREDICTORS, SCORE_ONLY, predict, uses_beta

logger = logging.getLogger(__name__)
RULES = ("percentile", "asha")


class NCPScheduler(FIFOScheduler):
    """Stop Ray Tune trials whose predicted final value is poor.

    Args:
        metric: the result key to optimise (or set through ``TuneConfig``).
        mode: ``"max"`` or ``"min"`` (or set through ``TuneConfig``).
        time_attr: the result key counting training progress.
        grace_period: no decision before this many results of a trial.
        max_t: the length of a complete trial in ``time_attr`` units (for
            extrapolating predictors and the ASHA rungs).
        predictor: a predictor name (default ``"best"``, the benchmark's choice).
        rule: ``"percentile"`` or ``"asha"``.
        percentile: for the percentile rule, keep trials predicted in the best
            ``percentile`` percent.
        reduction_factor: for ASHA, keep the best ``1/reduction_factor`` at each rung.
        beta_key: the result key holding ``beta_eff``.
        state_path: a file where the scheduler keeps its state (histories,
            predictions, finals, rungs), rewritten atomically after every change.
            Ray Tune does not checkpoint scheduler state (ray-project/ray#30838): a
            sweep resumed with ``Tuner.restore`` gets the scheduler as it was when
            the sweep started, and this file is how it finds its histories again.
            Put it beside the experiment (e.g. ``<storage_path>/<name>/ncp_scheduler.pkl``).

    NaN and edge cases:
        Fail open (CONTINUE) for results without the metric or ``time_attr``, with a
        NaN prediction, or, for a predictor that needs it, without ``beta_eff``;
        each case is warned about once.
    """

    def __init__(
        self,
        metric: str | None = None,
        mode: str | None = None,
        *,
        time_attr: str = "training_iteration",
        grace_period: int = 2,
        max_t: int = 100,
        predictor: str = "best",
        rule: str = "percentile",
        percentile: float = 50.0,
        reduction_factor: float = 3.0,
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
        if predictor not in PREDICTORS or predictor in SCORE_ONLY:
            usable = sorted(set(PREDICTORS) - set(SCORE_ONLY))
            raise ValueError(f"predictor must be one of {usable}, but got predictor={predictor!r}.")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, but got rule={rule!r}.")
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be in [0, 100], but got percentile={percentile}.")
        if reduction_factor <= 1.0:
            raise ValueError(
                f"reduction_factor must be > 1, but got reduction_factor={reduction_factor}."
            )
        self._metric = metric
        self._mode = mode
        self._time_attr = time_attr
        self._grace_period = int(grace_period)
        self._max_t = int(max_t)
        self._predictor = predictor
        self._rule = rule
        self._percentile = float(percentile)
        self._rf = float(reduction_factor)
        self._beta_key = beta_key
        self._histories: dict[str, list[tuple[float, float, float]]] = {}
        self._predictions: dict[str, float] = {}
        self._finals: dict[str, float] = {}
        self._stopped: set[str] = set()
        self._rungs: dict[int, dict[str, float]] = {}
        self._warned: set[str] = set()
        self._num_stopped = 0
        self._state_path = state_path
        self._loaded = False

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
        self._histories.setdefault(trial.trial_id, [])

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if self._metric not in result or self._time_attr not in result:
            missing = [k for k in (self._metric, self._time_attr) if k not in result]
            self._warn_once(
                "metric", f"results lack {missing}; NCPScheduler lets such trials run. "
                f"Reported keys: {sorted(result)[:20]}."
            )
            return TrialScheduler.CONTINUE
        beta = result.get(self._beta_key)
        if beta is None and uses_beta(self._predictor):
            self._warn_once(
                "beta", f"results lack {self._beta_key!r}, which predictor="
                f"{self._predictor!r} needs; NCPScheduler lets such trials run. Report it "
                "with ncp_search's Ray helpers."
            )
        history = self._histories.setdefault(trial.trial_id, [])
        now = float(result[self._time_attr])
        if history and now <= history[-1][0]:
            # The trial restarted (from scratch or an earlier checkpoint, e.g. after
            # Tuner.restore): drop what it is about to report again.
            history[:] = [h for h in history if h[0] < now]
            for recorded in self._rungs.values():
                recorded.pop(trial.trial_id, None)
        history.append((
            float(result[self._time_attr]),
            self._sign * float(result[self._metric]),
            math.nan if beta is None else float(beta),
        ))
        if len(history) < self._grace_period:
            return TrialScheduler.CONTINUE
        predicted = self._predict(history)
        if not math.isfinite(predicted):
            return TrialScheduler.CONTINUE
        self._predictions[trial.trial_id] = predicted
        stop = (self._asha_stop(trial.trial_id, history[-1][0], predicted)
                if self._rule == "asha" else self._percentile_stop(trial.trial_id, predicted))
        if stop:
            self._num_stopped += 1
            self._stopped.add(trial.trial_id)
        self._persist()
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        # Tune also calls this for the trials this scheduler stopped: their last value
        # is not a final; their last prediction stays in the pool (as NCPPruner keeps
        # pruned trials' predictions).
        if trial.trial_id in self._stopped:
            return
        if result and self._metric in result:
            self._finals[trial.trial_id] = self._sign * float(result[self._metric])
        self._predictions.pop(trial.trial_id, None)
        self._persist()

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        if trial.trial_id not in self._stopped:
            self._predictions.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return (f"Using NCPScheduler ({self._rule}, predictor={self._predictor}): "
                f"num_stopped={self._num_stopped}")

    # -- decisions ------------------------------------------------------------------
    def _predict(self, history: list[tuple[float, float, float]]) -> float:
        if uses_beta(self._predictor) and all(math.isnan(h[2]) for h in history):
            return math.nan
        curve = [{"step": 0, "val_accuracy": None}] + [
            {"step": i + 1, "val_accuracy": value, "beta_eff": beta}
            for i, (_, value, beta) in enumerate(history)
        ]
        run = {"trial": "", "curve": curve, "final_val_accuracy": math.nan}
        total = max(self._max_t, len(history))
        return float(predict(self._predictor, [run], len(history), total, last_only=True)[0])

    def _percentile_stop(self, trial_id: str, predicted: float) -> bool:
        others = list(self._finals.values()) + [
            v for k, v in self._predictions.items() if k != trial_id
        ]
        if not others:
            return False
        return predicted < float(np.percentile(others, 100.0 - self._percentile))

    def _asha_stop(self, trial_id: str, t: float, predicted: float) -> bool:
        milestone = self._grace_period
        rung = None
        while milestone <= t:
            rung = milestone
            milestone = int(math.ceil(milestone * self._rf))
        if rung is None:
            return False
        recorded = self._rungs.setdefault(rung, {})
        if trial_id in recorded:
            return False
        cutoff = (float(np.percentile(list(recorded.values()), (1 - 1 / self._rf) * 100))
                  if recorded else None)
        recorded[trial_id] = predicted
        return cutoff is not None and predicted < cutoff

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    # -- persistence ----------------------------------------------------------------
    _STATE = ("_histories", "_predictions", "_finals", "_stopped", "_rungs", "_num_stopped")

    def _persist(self) -> None:
        if not self._state_path:
            return
        state = {key: getattr(self, key) for key in self._STATE}
        tmp = f"{self._state_path}.tmp"
        os.makedirs(os.path.dirname(os.path.abspath(self._state_path)), exist_ok=True)
        with open(tmp, "wb") as handle:
            pickle.dump(state, handle)
        os.replace(tmp, self._state_path)

    def _load_once(self) -> None:
        """After Tuner.restore: take the histories back from ``state_path``."""
        if self._loaded or not self._state_path:
            return
        self._loaded = True
        try:
            with open(self._state_path, "rb") as handle:
                state = pickle.load(handle)
        except FileNotFoundError:
            return
        except (OSError, pickle.UnpicklingError, EOFError) as error:
            logger.warning("NCPScheduler: cannot read its state %s (%s); starting empty",
                           self._state_path, error)
            return
        for key in self._STATE:
            if key in state:
                setattr(self, key, state[key])
        logger.info("NCPScheduler: restored %d trial histories from %s",
                    len(self._histories), self._state_path)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as handle:
            pickle.dump(self.__dict__, handle)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.__dict__.update(pickle.load(handle))
