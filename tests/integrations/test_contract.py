"""The contract: one scenario table, fed through a real Optuna study and through
NCPScheduler's Tune hooks, gives the same decision sequence on both hosts.

Each scenario is a list of events in the order a host would see them:

- ``("report", name, epoch, value)``: the trial reports ``value`` after ``epoch``
  epochs (1-based). Optuna receives step ``epoch - 1 + first_step`` through
  ``report_beta_eff`` (as NCPCallback reports) and is asked ``decide``; Ray receives
  ``training_iteration=epoch`` through ``on_trial_result``. A stop ends the trial as
  the host ends it (Optuna: PRUNED; Ray: ``on_trial_complete`` of a stopped trial).
  ``None`` is a missing metric: Ray-only (Optuna's ``report`` takes no ``None``).
- ``("complete", name, final)``; ``("fail", name)``: an errored/failed trial;
- ``("retry", name)``: the trial starts again from scratch (Optuna: the failed trial
  and a new one with the same name; Ray: the same trial id reporting from epoch 1).
"""

from __future__ import annotations

import math

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("ray.tune", reason="optional dependency: pip install 'ncp-search[ray]'")

from ray.tune.schedulers import TrialScheduler  # noqa: E402

from ncp_search import NCPPruner, report_beta_eff  # noqa: E402
from ncp_search.integrations.ray.scheduler import NCPScheduler  # noqa: E402
from tests.integrations.tune_fakes import Trial  # noqa: E402

NAN = float("nan")
CURVE_GOOD = [0.5, 0.7, 0.8, 0.85, 0.9, 0.92, 0.93, 0.94, 0.95]
CURVE_BAD = [0.2, 0.25, 0.3, 0.3, 0.31, 0.32, 0.33, 0.33, 0.34]


def run_through(name_a: str, curve: list[float], epochs: int | None = None) -> list[tuple]:
    epochs = len(curve) if epochs is None else epochs
    events: list[tuple] = [("report", name_a, e + 1, v) for e, v in enumerate(curve[:epochs])]
    if epochs == len(curve):
        events.append(("complete", name_a, curve[-1]))
    return events


def interleave(*runs: list[tuple]) -> list[tuple]:
    out: list[tuple] = []
    longest = max(len(r) for r in runs)
    for i in range(longest):
        out.extend(r[i] for r in runs if i < len(r))
    return out


def completed(n: int, scale: float = 1.0) -> list[tuple]:
    events: list[tuple] = []
    for k in range(n):
        curve = [min(1.0, v * scale * (0.9 + 0.04 * k)) for v in CURVE_GOOD]
        events += run_through(f"done{k}", curve)
    return events


SCENARIOS = {
    # ASHA (the default), four trials in flight then sequential ones.
    "asha_interleaved": ({"rule": "asha"}, "maximize", interleave(
        run_through("a", CURVE_GOOD), run_through("b", CURVE_BAD),
        run_through("c", [v * 0.95 for v in CURVE_GOOD]), run_through("d", CURVE_BAD[::-1]))
        + run_through("e", [0.1] * 9) + run_through("f", CURVE_GOOD)),
    # First rung after 3 epochs with the incumbent test: the test waits for the rung.
    "asha_rung3_incumbent": ({"rule": "asha", "min_resource": 3, "incumbent_alpha": 0.3},
                             "maximize", completed(6) + run_through("late", [0.1] * 9)
                             + run_through("fine", [v * 1.01 for v in CURVE_GOOD])),
    # Minimised loss, 1-based Optuna steps.
    "asha_minimise_1based": ({"rule": "asha", "first_step": 1}, "minimize", interleave(
        run_through("l1", [1 - v for v in CURVE_GOOD]), run_through("l2", [1 - v for v in
                                                                           CURVE_BAD]))
        + run_through("l3", [0.9] * 9) + run_through("l4", [0.2] * 9)),
    # Diverged (NaN) and missing (None) reports, a failed trial, a retried one.
    "asha_nan_none_fail_retry": ({"rule": "asha"}, "maximize",
                                 run_through("x", CURVE_GOOD)
                                 + [("report", "n", 1, 0.6), ("report", "n", 2, NAN)]
                                 + [("report", "m", 1, 0.7), ("report", "m", 2, None),
                                    ("report", "m", 3, 0.9)]
                                 + run_through("dies", [0.99] * 9, epochs=4)
                                 + [("fail", "dies")]
                                 + run_through("y", [0.8] * 9)
                                 + run_through("r", [0.9] * 9, epochs=3) + [("retry", "r")]
                                 + run_through("r", [0.85] * 9)),
    # The percentile rule, minimised, warm-up and start-up, an errored trial left out.
    "percentile_minimise": ({"rule": "percentile", "n_startup_trials": 2, "min_resource": 2},
                            "minimize", completed(2) + run_through("bad", [0.99] * 9, 5)
                            + [("fail", "bad")] + run_through("p", [0.6] * 9)
                            + run_through("q", [0.05] * 9)),
    # The percentile rule with the incumbent test.
    "percentile_incumbent": ({"rule": "percentile", "n_startup_trials": 3, "min_resource": 1,
                              "incumbent_alpha": 0.3}, "maximize",
                             completed(6) + run_through("low", [0.1] * 9)),
}
EPOCHS = 9


def optuna_pruner(settings: dict) -> NCPPruner:
    kwargs = {k: v for k, v in settings.items() if k != "min_resource"}
    first = kwargs.setdefault("first_step", 0)
    if settings["rule"] == "percentile":
        kwargs["n_warmup_steps"] = first - 1 + settings["min_resource"]
        kwargs.pop("first_step")
    else:
        kwargs["min_resource"] = settings.get("min_resource", 1)
    return NCPPruner(max_step=EPOCHS - 1 + first, **kwargs)


def ray_scheduler(settings: dict, mode: str) -> NCPScheduler:
    kwargs = {k: v for k, v in settings.items() if k not in ("min_resource", "first_step")}
    return NCPScheduler(metric="acc", mode=mode, max_t=EPOCHS,
                        grace_period=settings.get("min_resource", 1), **kwargs)


def summary(decision) -> tuple:
    def rounded(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 9)
    return (decision.stop, decision.reason, rounded(decision.value), rounded(decision.threshold))


def on_optuna(settings: dict, direction: str, events: list[tuple]) -> list[tuple]:
    pruner = optuna_pruner(settings)
    first = 0 if settings["rule"] == "percentile" else settings.get("first_step", 0)
    study = optuna.create_study(direction=direction, pruner=pruner)
    live: dict[str, optuna.Trial] = {}
    ended: set[str] = set()
    out: list = []
    for event in events:
        kind, name = event[0], event[1]
        if kind == "report":
            if name in ended:
                continue  # the trial was pruned: the objective returned
            epoch, value = event[2], event[3]
            if value is None:
                out.append(None)  # not expressible on Optuna
                continue
            if name not in live:
                live[name] = study.ask()
            trial = live[name]
            report_beta_eff(trial, epoch - 1 + first, None, value)
            frozen = study._storage.get_trial(trial._trial_id)
            decision = pruner.decide(study, frozen)
            out.append(summary(decision))
            if decision.stop:
                study.tell(live.pop(name), state=optuna.trial.TrialState.PRUNED)
                ended.add(name)
        elif kind == "complete" and name in live:
            study.tell(live.pop(name), event[2])
            ended.add(name)
        elif kind == "fail" and name in live:
            study.tell(live.pop(name), state=optuna.trial.TrialState.FAIL)
            ended.add(name)
        elif kind == "retry":  # the trial failed; a new one with its configuration
            if name in live:
                study.tell(live.pop(name), state=optuna.trial.TrialState.FAIL)
            ended.discard(name)
    return out


def on_ray(settings: dict, direction: str, events: list[tuple], hooks: bool) -> list:
    mode = "max" if direction == "maximize" else "min"
    scheduler = ray_scheduler(settings, mode)
    trials: dict[str, Trial] = {}
    ended: set[str] = set()
    out = []
    for event in events:
        kind, name = event[0], event[1]
        trial = trials.get(name)
        if trial is None:
            trial = trials[name] = Trial(name)
            scheduler.on_trial_add(None, trial)
        if kind == "report":
            if name in ended:
                continue
            result = {"training_iteration": event[2], "acc": event[3]}
            if hooks:
                answer = scheduler.on_trial_result(None, trial, result)
                out.append(answer)
                stopped = answer == TrialScheduler.STOP
            else:
                decision = scheduler.decide(name, result)
                out.append(summary(decision) if event[3] is not None else None)
                stopped = decision.stop
            if stopped:
                ended.add(name)
                scheduler.on_trial_complete(None, trial, result)
        elif kind == "complete" and name not in ended:
            scheduler.on_trial_complete(None, trial, {"training_iteration": EPOCHS,
                                                      "acc": event[2]})
            ended.add(name)
        elif kind == "fail" and name not in ended:
            scheduler.on_trial_error(None, trial)
            ended.add(name)
        elif kind == "retry":
            ended.discard(name)  # Tune restarts the same trial from scratch
    return out


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_both_hosts_make_the_same_decisions(scenario):
    settings, direction, events = SCENARIOS[scenario]
    optuna_seq = on_optuna(settings, direction, events)
    ray_seq = on_ray(settings, direction, events, hooks=False)
    # Ray skips reports of a trial it stopped (Tune does not send them); so does the
    # Optuna harness (the trial was told PRUNED): align on what each host decided.
    assert len(ray_seq) == len(optuna_seq)
    for i, (a, b) in enumerate(zip(optuna_seq, ray_seq)):
        if a is None:  # a missing metric: Ray continues, Optuna cannot be given one
            assert b is None
            continue
        assert a == b, f"{scenario}: decision {i} differs: Optuna {a}, Ray {b}"
    assert any(d and d[0] for d in optuna_seq), "the scenario never stops a trial"
    # The hooks give the same answers as decide() does.
    hooks = on_ray(settings, direction, events, hooks=True)
    assert [h == TrialScheduler.STOP for h in hooks] == [bool(d and d[0]) for d in ray_seq]


QUALITIES = [0.9, 0.2, 0.8, 0.1, 0.85, 0.3, 0.95, 0.15]


def scripted(quality: float, epoch: int) -> float:
    return 0.3 + 0.6 * quality * (1 - 0.7 ** epoch)


def _tune_trainable(config):
    from ray import tune

    for epoch in range(1, EPOCHS + 1):
        tune.report({"acc": scripted(config["quality"], epoch)})


@pytest.mark.slow
def test_a_real_tuner_run_stops_the_trials_optuna_prunes(tmp_path, ray_session):
    # One trial at a time, so both hosts see the same order: the epochs each trial
    # ran under Tuner.fit with NCPScheduler equal those under NCPPruner's study.
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(_tune_trainable, {"cpu": 1}),
        param_space={"quality": tune.grid_search(QUALITIES)},
        tune_config=tune.TuneConfig(metric="acc", mode="max", max_concurrent_trials=1,
                                    scheduler=NCPScheduler(max_t=EPOCHS)),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="contract", verbose=0))
    results = tuner.fit()
    on_tune = {r.config["quality"]: r.metrics["training_iteration"] for r in results}

    study = optuna.create_study(direction="maximize", pruner=NCPPruner(max_step=EPOCHS - 1))
    on_optuna_ = {}
    for quality in QUALITIES:
        trial = study.ask()
        for epoch in range(1, EPOCHS + 1):
            report_beta_eff(trial, epoch - 1, None, scripted(quality, epoch))
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, scripted(quality, EPOCHS))
        on_optuna_[quality] = epoch
    assert on_tune == on_optuna_
    assert min(on_tune.values()) < EPOCHS  # something was stopped
