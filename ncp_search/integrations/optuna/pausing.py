"""Pausing on Optuna: an ask-and-tell driver for :class:`~ncp_search.core.pausing.PausingPolicy`.

An Optuna trial cannot be resumed once it has ended, and a pruner can only say
"prune": pausing needs a driver that owns the loop. :func:`optimize_pausing` is that
loop, with Optuna's own ask-and-tell interface:

- a new trial is asked (the sampler proposes its parameters) and trained to the first
  rung; when it pauses there it is told PRUNED, with the user attributes
  ``ncp_paused`` (its checkpoint path), ``ncp_predicted_final`` and ``ncp_epochs``;
- when the policy promotes it, its parameters are enqueued
  (``study.enqueue_trial``) and asked as a new trial with ``ncp_resumes`` = the
  number of the configuration's first trial: the training resumes from the checkpoint and the
  steps continue where they stopped (reports at the same steps as if it had run on);
- a trial never promoted stays PRUNED; one that runs all its epochs is told COMPLETE
  with its last value.

So the study holds, for one configuration, a chain of trials linked by
``ncp_resumes``; :func:`chains` joins them. Samplers see pauses as pruned trials and
completed chains as completed trials. The driver runs one trial at a time (for
several workers use Ray Tune's NCPScheduler, or ``ncp-search sweep``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from ncp_search.core.history import TrialHistory
from ncp_search.core.pausing import PAUSE, STOP, PausingPolicy

PAUSED_ATTR = "ncp_paused"  # the checkpoint path of a paused trial
RESUMES_ATTR = "ncp_resumes"  # the number of the configuration's first trial
EPOCHS_ATTR = "ncp_epochs"  # epochs trained so far by the chain
PREDICTED_ATTR = "ncp_predicted_final"

Train = Callable[[optuna.Trial, int, int, Path], Sequence[float]]
"""``train(trial, start_epoch, stop_epoch, checkpoint) -> values``: train the trial's
configuration from ``start_epoch`` (0: from scratch; else restore ``checkpoint``) to
``stop_epoch`` epochs, save a checkpoint to ``checkpoint`` (model and optimizer state),
and return the metric after each epoch trained (``stop_epoch - start_epoch`` values)."""


def optimize_pausing(
    study: optuna.Study,
    train: Train,
    *,
    policy: PausingPolicy,
    checkpoint_dir: str | os.PathLike[str],
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> dict[str, list[int]]:
    """Run ``policy.n_trials`` configurations under the pausing policy.

    Args:
        study: the study (its direction says which way the metric goes).
        train: see :data:`Train`.
        policy: the pausing policy (``first_step=0``: step ``k`` is epoch ``k + 1``).
        checkpoint_dir: where each configuration's checkpoint lives
            (``<checkpoint_dir>/<first trial number>``).
        callbacks: called with each trial told (as ``study.optimize``'s).

    Returns:
        The chains: for each configuration (named by its first trial's number), the
        numbers of its trials in order.

    Raises:
        ValueError: if ``train`` returns a number of values other than the epochs asked.
    """
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    folder = Path(checkpoint_dir)
    folder.mkdir(parents=True, exist_ok=True)
    values: dict[str, list[float]] = {}
    chains: dict[str, list[int]] = {}
    params: dict[str, dict[str, Any]] = {}
    while not policy.finished():
        job = policy.next_job()
        if job is None:
            break
        kind, name, target = job
        if kind == "new":
            trial = study.ask()
            name = str(trial.number)
            policy.add(name)
            values[name], chains[name] = [], []
        else:
            assert name is not None
            study.enqueue_trial(params[name], user_attrs={RESUMES_ATTR: int(name)})
            trial = study.ask()
        chains[name].append(trial.number)
        start = len(values[name])
        stop = int(min(target, policy.max_resource))
        got = list(train(trial, start, stop, folder / name))
        if len(got) != stop - start:
            raise ValueError(f"train must return one value per epoch trained ({stop - start}), "
                             f"but got {len(got)} for trial {trial.number}.")
        params[name] = dict(trial.params)
        order = None
        for value in got:
            step = len(values[name])
            values[name].append(float(value))
            trial.report(float(value), step)
            history = TrialHistory.from_reports(dict(enumerate(values[name])), sign=sign)
            order = policy.report(name, history, reported=float(value))
            if order.action != "continue":
                break
        state = TrialState.COMPLETE
        if order is not None and order.action in (PAUSE, STOP):
            state = TrialState.PRUNED
            trial.set_user_attr(EPOCHS_ATTR, len(values[name]))
            if order.action == PAUSE:
                trial.set_user_attr(PAUSED_ATTR, str(folder / name))
                trial.set_user_attr(PREDICTED_ATTR, sign * order.prediction
                                    if math.isfinite(order.prediction) else None)
        elif len(values[name]) >= policy.max_resource:
            policy.complete(name)
        frozen = study.tell(trial, values[name][-1] if state == TrialState.COMPLETE else None,
                            state=state)
        for callback in callbacks:
            callback(study, frozen)
    return chains


def chains(study: optuna.Study) -> dict[int, list[optuna.trial.FrozenTrial]]:
    """The study's trials joined into chains by ``ncp_resumes`` (keyed by the first
    trial's number), each in order."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    out: dict[int, list[optuna.trial.FrozenTrial]] = {}
    for trial in by_number.values():
        first = trial
        while RESUMES_ATTR in first.user_attrs and first.user_attrs[RESUMES_ATTR] in by_number:
            previous = by_number[first.user_attrs[RESUMES_ATTR]]
            if previous.number >= first.number:
                break  # a malformed link: never loop
            first = previous
        out.setdefault(first.number, []).append(trial)
    return {k: sorted(v, key=lambda t: t.number) for k, v in sorted(out.items())}
