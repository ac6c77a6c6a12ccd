"""NCPPruner through Optuna's public ask / report / should_prune / tell protocol."""

from __future__ import annotations

import pickle

import optuna
import pytest

from ncp_search import NCPPruner, report_beta_eff

PERCENTILE = {"rule": "percentile"}  # the rule these tests are about (0.1 default)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_trial(study, values, betas=None, finish=True):
    trial = study.ask()
    for step, value in enumerate(values):
        if betas is not None:
            report_beta_eff(trial, step, betas[step], value)
        else:
            trial.report(value, step)
    if finish:
        study.tell(trial, values[-1])
    return trial


def complete_trials(study, n=5, sign=1.0, steps=6):
    for i in range(n):
        base = 0.6 + 0.05 * i
        run_trial(study, [sign * (base + 0.01 * s) for s in range(steps)])


def test_no_pruning_without_completed_trials_or_reports():
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(
        **PERCENTILE, n_startup_trials=0))
    trial = study.ask()
    assert not trial.should_prune()  # no completed trial, no report
    trial.report(0.01, 5)
    assert not trial.should_prune()  # still no completed trial


def test_startup_trials():
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(
        **PERCENTILE, n_startup_trials=5,
                                                                      n_warmup_steps=0))
    complete_trials(study, n=4)
    trial = run_trial(study, [0.01, 0.01, 0.01], finish=False)
    assert not trial.should_prune()
    complete_trials(study, n=1)
    assert trial.should_prune()


@pytest.mark.parametrize("direction, sign", [("maximize", 1.0), ("minimize", -1.0)])
def test_prunes_a_clearly_bad_trial_in_both_directions(direction, sign):
    study = optuna.create_study(direction=direction, pruner=NCPPruner(
        **PERCENTILE, n_warmup_steps=2))
    complete_trials(study, sign=sign)
    bad = run_trial(study, [sign * v for v in (0.1, 0.1, 0.1)], finish=False)
    assert bad.should_prune()
    good = run_trial(study, [sign * v for v in (0.9, 0.9, 0.9)], finish=False)
    assert not good.should_prune()


def test_warmup_and_interval():
    study = optuna.create_study(
        direction="maximize", pruner=NCPPruner(**PERCENTILE, n_warmup_steps=3, interval_steps=2)
    )
    complete_trials(study)
    trial = study.ask()
    decisions = []
    for step in range(8):
        trial.report(0.05, step)
        decisions.append(trial.should_prune())
    assert decisions == [False, False, False, True, False, True, False, True]


def test_nan_fails_open_when_diverged_trials_are_kept():
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(
        rule="percentile", n_warmup_steps=0, prune_diverged=False))
    complete_trials(study)
    trial = run_trial(study, [float("nan")] * 3, finish=False)
    assert not trial.should_prune()


@pytest.mark.parametrize("rule", ["asha", "percentile"])
@pytest.mark.parametrize("direction, bad", [("maximize", float("nan")),
                                            ("minimize", float("nan")),
                                            ("minimize", float("inf"))])
def test_a_diverged_trial_is_pruned_at_once(rule, direction, bad):
    # Before any completed trial, in warm-up, off a rung: a NaN or infinite report
    # prunes (the budget benchmark's default); at the last step it does not.
    pruner = NCPPruner(rule=rule, max_step=5)
    study = optuna.create_study(direction=direction, pruner=pruner)
    trial = study.ask()
    trial.report(0.5, 0)
    assert not trial.should_prune()
    trial.report(bad, 1)
    assert trial.should_prune()
    assert pruner.decide(study, study.get_trials()[-1]).reason == "diverged"
    last = study.ask()
    last.report(bad, 5)
    assert not last.should_prune()


def test_default_rule_is_asha_and_percentile_settings_say_which_rule_they_need():
    assert NCPPruner().rule == "asha" and NCPPruner().prune_diverged
    for kwargs in ({"percentile": 25.0}, {"n_startup_trials": 3}, {"n_warmup_steps": 1},
                   {"interval_steps": 2}, {"kappa": 1.0}):
        with pytest.raises(ValueError, match="rule='percentile'"):
            NCPPruner(**kwargs)
        assert NCPPruner(**PERCENTILE, **kwargs).rule == "percentile"
    with pytest.raises(ValueError, match="rule='percentile'"):
        NCPPruner(50.0)  # positional, as 0.1 code wrote it


@pytest.mark.parametrize("kwargs", [
    {"rule": "asha", "max_step": 7, "reduction_factor": 2},
    {"rule": "percentile", "max_step": 7, "n_startup_trials": 2, "n_warmup_steps": 1},
    {"rule": "asha", "reduction_factor": 2, "min_resource": 2},
])
def test_kept_index_decides_as_a_fresh_full_scan(kwargs):
    # Trials in flight that finish out of order (complete, pruned, failed): the pruner
    # that keeps its index of finished trials between decisions decides exactly as a
    # new pruner that scans every trial.
    import random

    rng = random.Random(0)
    kept = NCPPruner(**kwargs)
    study = optuna.create_study(direction="maximize", pruner=kept)
    running: dict[int, tuple[optuna.Trial, float, int]] = {}
    compared = 0
    for _ in range(120):
        if len(running) < 4:
            trial = study.ask()
            running[trial.number] = (trial, rng.random(), 0)
        number = rng.choice(sorted(running))
        trial, quality, step = running[number]
        trial.report(0.5 + 0.4 * quality * (1 - 0.8 ** (step + 1)), step)
        frozen = study.get_trials(deepcopy=False)[number]
        verdict = kept.decide(study, frozen)
        assert verdict == NCPPruner(**kwargs).decide(study, frozen)
        compared += 1
        end = rng.random()
        if verdict.stop:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif end < 0.05:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif step == 7:
            study.tell(trial, 0.5 + 0.4 * quality)
        else:
            running[number] = (trial, quality, step + 1)
            continue
        del running[number]
    states = {t.state for t in study.get_trials()}
    assert compared == 120 and optuna.trial.TrialState.PRUNED in states
    assert optuna.trial.TrialState.COMPLETE in states


def test_missing_beta_eff_warns_once_and_fails_open():
    study = optuna.create_study(
        direction="maximize", pruner=NCPPruner(**PERCENTILE, n_warmup_steps=0, predictor="ncp_raw")
    )
    complete_trials(study)
    trial = run_trial(study, [0.01, 0.01, 0.01], finish=False)
    with pytest.warns(RuntimeWarning, match="no beta_eff"):
        assert not trial.should_prune()


def test_beta_eff_and_prediction_are_stored_on_the_trial():
    study = optuna.create_study(
        direction="maximize", pruner=NCPPruner(**PERCENTILE, n_warmup_steps=1, predictor="ncp_raw")
    )
    for i in range(5):
        run_trial(study, [0.5 + 0.05 * i + 0.01 * s for s in range(4)], betas=[3, 2, 1, 0.5])
    trial = study.ask()
    # accuracy = 0.3 - 0.1 * beta: NCP reads h(0) = 0.3
    for step, beta in enumerate([2.0, 1.5, 1.0]):
        predicted = report_beta_eff(trial, step, beta, 0.3 - 0.1 * beta)
    assert predicted == pytest.approx(0.3, abs=0.02)
    frozen = study.get_trials()[-1]
    assert frozen.user_attrs["ncp_beta_eff"] == {"0": 2.0, "1": 1.5, "2": 1.0}
    assert frozen.user_attrs["ncp_predicted_final"]["step"] == 2
    assert trial.should_prune()  # 0.2-ish raw and 0.3 predicted: below the others


def test_running_predictions_enter_the_reference():
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(
        **PERCENTILE, n_warmup_steps=0,
                                                                      n_startup_trials=1))
    run_trial(study, [0.5, 0.5])
    strong = []
    for _ in range(5):
        trial = study.ask()
        report_beta_eff(trial, 0, 1.0, 0.9)
        report_beta_eff(trial, 1, 1.0, 0.9)
        strong.append(trial)
    middle = study.ask()
    report_beta_eff(middle, 0, 1.0, 0.7)
    report_beta_eff(middle, 1, 1.0, 0.7)
    # above the only completed trial, but below the median of the running ones
    assert middle.should_prune()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"percentile": 120}, "percentile"),
        ({"n_startup_trials": -1}, "n_startup_trials"),
        ({"n_warmup_steps": -1}, "n_warmup_steps"),
        ({"interval_steps": 0}, "interval_steps"),
        ({"max_step": -1}, "max_step"),
        ({"predictor": "ncp_two_batch"}, "beta_eff_batch2"),
        ({"predictor": "oracle"}, "predictor"),
        ({"predictor": "tse"}, "predictor"),
        ({"kappa": float("nan")}, "kappa"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NCPPruner(**kwargs)


def test_pickling():
    pruner = NCPPruner(**PERCENTILE, percentile=25.0, predictor="pow3")
    clone = pickle.loads(pickle.dumps(pruner))
    assert clone.percentile == 25.0 and clone.predictor == "pow3"
    study = optuna.create_study(direction="maximize", pruner=clone)
    complete_trials(study)


def as_table_run(trial):
    """A frozen trial (steps 0, 1, ...) as a recorded-table row (epochs 1, 2, ...)."""
    curve = [{"step": 0}] + [{"step": s + 1, "val_accuracy": v}
                             for s, v in sorted(trial.intermediate_values.items())]
    final = trial.value if trial.state == optuna.trial.TrialState.COMPLETE else None
    return {"curve": curve, "final_val_accuracy": final}


def test_cross_trial_prediction_matches_the_offline_predictor_and_is_cached():
    from research.table_predict import predict

    pruner = NCPPruner(**PERCENTILE, n_warmup_steps=0, predictor="xtrial_curve", max_step=5)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(7):
        run_trial(study, [0.5 + 0.04 * i + 0.02 * s * (i % 3) for s in range(6)])
    trial = run_trial(study, [0.55, 0.6, 0.62], finish=False)
    frozen = study.get_trials()[-1]
    online = pruner.predict_final(study, frozen)
    runs = [as_table_run(t) for t in study.get_trials()]
    offline = predict("xtrial_curve", runs, 3, 6, last_only=True)[0]
    assert online == pytest.approx(offline)
    assert len(pruner.policy._models) == 1
    pruner.predict_final(study, frozen)
    assert len(pruner.policy._models) == 1  # no refit for the same completed trials
    study.tell(trial, 0.7)


def test_residual_cross_trial_matches_offline():
    from research.table_predict import predict

    pruner = NCPPruner(**PERCENTILE, n_warmup_steps=0, predictor="xtrial_resid_curve", max_step=5)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(7):
        run_trial(study, [0.5 + 0.04 * i + 0.02 * s * (i % 3) for s in range(6)])
    run_trial(study, [0.55, 0.6, 0.62], finish=False)
    frozen = study.get_trials()[-1]
    runs = [as_table_run(t) for t in study.get_trials()]
    offline = predict("xtrial_resid_curve", runs, 3, 6, last_only=True)[0]
    assert pruner.predict_final(study, frozen) == pytest.approx(offline)


@pytest.mark.parametrize(
    "base",
    [
        optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        optuna.pruners.PercentilePruner(50.0, n_startup_trials=3, n_warmup_steps=1),
        optuna.pruners.PatientPruner(optuna.pruners.MedianPruner(3, 1), patience=0),
        optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=2),
        optuna.pruners.HyperbandPruner(min_resource=2, max_resource=6, reduction_factor=2),
    ],
    ids=["median", "percentile", "patient", "successive_halving", "hyperband"],
)
def test_base_pruner_decides_on_predictions(base):
    """Raw values say 'excellent', predictions say 'poor': the base pruner on
    predictions prunes; the same base pruner on raw values does not."""
    def trials_with(pruner, deceptive_predictions):
        study = optuna.create_study(direction="maximize", pruner=pruner,
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        for i in range(8):
            trial = study.ask()
            for step in range(6):
                report_beta_eff(trial, step, 1.0, 0.5 + 0.02 * i + 0.01 * step)
                trial.should_prune()  # lets rung-based pruners record this trial
            study.tell(trial, 0.5 + 0.02 * i + 0.05)
        trial = study.ask()
        decisions = []
        for step in range(6):
            report_beta_eff(trial, step, 1.0, 0.99)  # raw value looks excellent
            if deceptive_predictions:  # overwrite the stored prediction with a poor one
                history = dict(trial.user_attrs.get("ncp_predicted_history", {}))
                history[str(step)] = 0.3 - 0.04 * step  # poor and getting worse
                trial.set_user_attr("ncp_predicted_history", history)
            decisions.append(trial.should_prune())
        return any(decisions)

    import copy

    ncp = NCPPruner(predictor="last", base=copy.deepcopy(base))
    assert trials_with(ncp, deceptive_predictions=True)
    assert not trials_with(copy.deepcopy(base), deceptive_predictions=False)


def test_base_must_be_a_pruner():
    with pytest.raises(TypeError, match="optuna pruner"):
        NCPPruner(base="median")


def test_report_predicted_final():
    from ncp_search.integrations.optuna.reporting import report_predicted_final

    study = optuna.create_study(direction="maximize", pruner=NCPPruner(predictor="pow3"))
    complete_trials(study)
    trial = study.ask()
    assert report_predicted_final(trial, 0) is None  # nothing predicted yet
    for step, value in enumerate([0.3, 0.5, 0.6]):
        predicted = report_beta_eff(trial, step, 1.0, value)
    assert report_predicted_final(trial, 3) == pytest.approx(predicted)
    assert study.get_trials()[-1].intermediate_values[3] == pytest.approx(predicted)


def test_sampler_benchmark_runs():
    from research.sampler_bench import compare_sampler
    from tests.synthetic_runs import make_runs

    runs = make_runs(12, epochs=6)
    for i, run in enumerate(runs):
        run["config"]["x"] = i / 11
    space = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
    result = compare_sampler(runs, space, seeds=range(2), n_trials=8, predictors=["best"])
    assert set(result) == {"tpe, no pruning", "ncp_percentile:best, raw value to sampler",
                           "ncp_percentile:best, prediction to sampler"}
    assert result["tpe, no pruning"]["epochs"] == 8 * 6
    assert result["ncp_percentile:best, raw value to sampler"]["epochs"] <= 8 * 6


def test_one_pruner_object_serves_two_studies():
    pruner = NCPPruner(**PERCENTILE, n_warmup_steps=0)
    low = optuna.create_study(direction="maximize", pruner=pruner)
    high = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(5):
        run_trial(low, [0.1 + 0.01 * i] * 3)
        run_trial(high, [0.9 + 0.01 * i] * 3)
    assert not run_trial(low, [0.5] * 3, finish=False).should_prune()
    assert run_trial(high, [0.5] * 3, finish=False).should_prune()


# -- steps as the user reports them, and the other inputs the old pruner broke on ------
def report_at(study, steps, values, betas=None, terms=None):
    trial = study.ask()
    for i, (step, value) in enumerate(zip(steps, values)):
        if betas is None:
            trial.report(value, step)
        else:
            report_beta_eff(trial, step, betas[i], value,
                            terms=None if terms is None else terms[i])
    return trial


@pytest.mark.parametrize(
    "steps",
    [[0, 1, 2, 3], [1, 2, 3, 4], [0, 10, 20, 30], [0, 1, 5, 6], [3, 0, 2, 1]],
    ids=["0-based", "1-based", "strided", "gaps", "out-of-order"],
)
def test_any_step_numbering_prunes_the_bad_and_keeps_the_good(steps):
    study = optuna.create_study(direction="maximize", pruner=NCPPruner(
        **PERCENTILE, n_warmup_steps=0))
    for i in range(5):
        trial = report_at(study, steps, [0.6 + 0.05 * i] * 4)
        study.tell(trial, 0.6 + 0.05 * i)
    def decisions(value):
        trial = study.ask()
        out = []
        for step in steps:  # as a callback does: should_prune() after every report
            trial.report(value, step)
            out.append(trial.should_prune())  # was: ValueError (zero-size array), 1-based
        return out
    assert decisions(0.1)[-1]
    assert not any(decisions(0.95))


def test_strided_steps_follow_the_latest_value():
    # Was: the prediction froze at the first report (k counted reports, steps were 0, 10,
    # 20), so the trial that becomes the best was pruned at step 20.
    pruner = NCPPruner(**PERCENTILE, n_warmup_steps=0, predictor="last")
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(5):
        study.tell(report_at(study, [0, 10, 20], [0.5, 0.6 + 0.02 * i, 0.7 + 0.02 * i]),
                   0.7 + 0.02 * i)
    riser = report_at(study, [0, 10, 20], [0.1, 0.5, 0.95])
    assert pruner.predict_final(study, study.get_trials()[-1]) == pytest.approx(0.95)
    assert not riser.should_prune()


def test_reports_every_second_epoch_with_beta_eff():
    # What NCPCallback(interval=2) reports (steps 1, 3, 5): every trial FAILed before.
    pruner = NCPPruner(**PERCENTILE, n_warmup_steps=0, predictor="ncp_raw")
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for i in range(5):
        final = 0.7 + 0.04 * i
        study.tell(report_at(study, [1, 3, 5], [final - 0.2, final - 0.1, final],
                             betas=[3.0, 2.0, 1.0]), final)
    trial = report_at(study, [1, 3, 5], [0.2, 0.25, 0.3], betas=[3.0, 2.0, 1.0])
    predicted = study.get_trials()[-1].user_attrs["ncp_predicted_final"]["value"]
    assert predicted == pytest.approx(0.35, abs=0.02)  # h(0) of a straight line
    assert trial.should_prune()


def test_kappa_is_measured_at_the_step_being_decided():
    # Completed trials all stood at 0.35 at step 1 and ended anywhere in 0.5..0.95: the
    # error of a step-1 prediction is large. At their last step best-so-far equals the
    # final, so a spread measured there (as before) is 0 and kappa did nothing.
    def study_with(kappa):
        pruner = NCPPruner(**PERCENTILE, n_warmup_steps=0, n_startup_trials=5, kappa=kappa)
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for final in (0.5, 0.6, 0.75, 0.85, 0.95):
            curve = [0.3, 0.35, 0.4, final]
            study.tell(report_at(study, range(4), curve, betas=[1.0] * 4), final)
        return study
    assert report_at(study_with(0.0), range(2), [0.32, 0.33], betas=[1.0] * 2).should_prune()
    assert not report_at(study_with(3.0), range(2), [0.32, 0.33],
                         betas=[1.0] * 2).should_prune()


def test_probe_terms_feed_the_predictors_that_read_them():
    from ncp_search.core.history import TrialHistory
    from ncp_search.core.predictors import predict_final

    pruner = NCPPruner(
        **PERCENTILE, n_warmup_steps=0, predictor="ncp_feature_norm", n_startup_trials=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.tell(report_at(study, range(3), [0.5, 0.6, 0.7]), 0.8)
    betas, norms = [4.0, 2.0, 1.0], [1.0, 1.5, 2.0]
    report_at(study, range(3), [0.5, 0.6, 0.7], betas=betas,
              terms=[{"feature_norm": n, "loss": 0.3} for n in norms])
    frozen = study.get_trials()[-1]
    assert frozen.user_attrs["ncp_probe_terms"]["2"] == {"probe_feature_norm": 2.0,
                                                         "probe_loss": 0.3}
    expected = predict_final("ncp_feature_norm", TrialHistory.from_reports(
        dict(enumerate([0.5, 0.6, 0.7])),
        series={"beta_eff": dict(enumerate(betas)),
                "probe_feature_norm": dict(enumerate(norms))}))
    assert pruner.predict_final(study, frozen) == pytest.approx(expected)
    assert expected != pytest.approx(0.7)  # not the silent last-value fallback
    with pytest.warns(RuntimeWarning, match="probe_feature_norm"):
        bare = report_at(study, range(3), [0.1] * 3, betas=[1.0] * 3)  # no probe terms
        assert not bare.should_prune()


def test_pow3_extrapolates_a_minimised_objective_online():
    pruner = NCPPruner(**PERCENTILE, n_warmup_steps=0, predictor="pow3", max_step=39)
    study = optuna.create_study(direction="minimize", pruner=pruner)
    trial = report_at(study, range(8), [0.2 + 1.0 / (s + 1) for s in range(8)])
    predicted = pruner.predict_final(study, study.get_trials()[-1])
    assert predicted == pytest.approx(0.2 + 1.0 / 40, abs=0.02)  # was: the last value
    study.tell(trial, 0.3)


def test_decide_says_why():
    pruner = NCPPruner(**PERCENTILE, n_warmup_steps=2, n_startup_trials=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = report_at(study, [0], [0.5])
    assert pruner.decide(study, study.get_trials()[-1]).reason == "warmup"
    trial.report(0.5, 2)
    assert pruner.decide(study, study.get_trials()[-1]).reason == "startup"


# -- ASHA on predictions and the incumbent test --------------------------------------------
def test_asha_rule_prunes_at_rungs_only_and_never_at_the_last_step():
    pruner = NCPPruner(rule="asha", reduction_factor=2, min_resource=1, max_step=4,
                       first_step=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    decisions = {}
    for value in (0.9, 0.8, 0.7, 0.95):
        trial = study.ask()
        steps = []
        for step in range(5):
            trial.report(value, step)
            steps.append(trial.should_prune())
            if steps[-1]:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
        decisions[value] = steps
    # rungs at steps 1 and 2 (4 is the last step): the first trial meets empty rungs,
    # the worse ones are cut at rung 1, the best continues; steps 0, 3, 4 never prune
    assert decisions[0.9] == [False] * 5
    assert decisions[0.8] == [False, True]
    assert decisions[0.7] == [False, True]
    assert decisions[0.95] == [False] * 5


def test_asha_reads_stored_predictions_or_computes_them_the_same():
    def decisions(with_beta):
        pruner = NCPPruner(rule="asha", reduction_factor=3, max_step=9)
        study = optuna.create_study(direction="maximize", pruner=pruner)
        out = []
        for i in range(6):
            trial = study.ask()
            for step in range(10):
                value = 0.8 - 0.05 * ((i * 5) % 6) + 0.01 * step
                if with_beta:
                    report_beta_eff(trial, step, 1.0, value)
                else:
                    trial.report(value, step)
                if trial.should_prune():
                    out.append((i, step))
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    break
            else:
                study.tell(trial, value)
        return out
    assert decisions(True) == decisions(False) and decisions(True)


def test_asha_decides_at_the_first_report_past_a_rung():
    pruner = NCPPruner(rule="asha", reduction_factor=3, min_resource=5, max_step=100,
                       first_step=1)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.tell(report_at(study, [0, 10, 20, 30], [0.9] * 4), 0.9)
    trial = report_at(study, [0], [0.1])
    # before the first rung: warm-up (was "no_rung"; one name on both hosts)
    assert pruner.decide(study, study.get_trials()[-1]).reason == "warmup"
    trial.report(0.1, 10)  # first report past rung 5
    assert trial.should_prune()
    trial.report(0.1, 12)
    assert pruner.decide(study, study.get_trials()[-1]).reason == "already_at_rung"


def test_incumbent_test_stops_a_hopeless_trial_the_rule_keeps():
    # Peers dip to 0.05 at the rung (step 8) after 0.5 before it: ASHA on the last value
    # keeps a trial at 0.1 there, the incumbent test (best so far 0.1 against the
    # peers' 0.5 at the same step) stops it.
    def study_with(alpha):
        pruner = NCPPruner(rule="asha", min_resource=8, max_step=9, incumbent_alpha=alpha,
                           first_step=1, predictor="last")
        study = optuna.create_study(direction="maximize", pruner=pruner)
        for final in (0.6, 0.7, 0.8, 0.85, 0.9, 0.95):
            curve = [0.5] * 8 + [0.05, final]
            study.tell(report_at(study, range(10), curve), final)
        return study
    assert not report_at(study_with(None), range(9), [0.1] * 9).should_prune()
    hopeless = report_at(study_with(0.3), range(9), [0.1] * 9)
    assert hopeless.should_prune()
    assert not report_at(study_with(0.3), range(9), [0.6] * 9).should_prune()


def test_the_incumbent_test_waits_for_the_first_rung():
    # Was: with the first rung after 3 epochs and incumbent_alpha set, NCPPruner stopped a
    # trial at step 0 (below_incumbent) while NCPScheduler said "warmup" for the same
    # history; now both wait for the first rung (the policy gates the incumbent test).
    pruner = NCPPruner(min_resource=3, max_step=9, incumbent_alpha=0.3)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for final in (0.6, 0.7, 0.8, 0.85, 0.9, 0.95):
        study.tell(report_at(study, range(10), [0.5] * 9 + [final]), final)
    report_at(study, [0], [0.1])
    assert pruner.decide(study, study.get_trials()[-1]).reason == "warmup"


@pytest.mark.parametrize("first_step, decided", [(0, [0, 2, 8]), (1, [1, 3, 9])])
def test_rungs_fall_after_epochs_1_3_9_however_epochs_are_counted(first_step, decided):
    # Was: rungs at steps 1, 3, 9 whatever the counting, so the Keras epoch index that
    # NCPCallback and the sweeps report put the first rung after the second epoch.
    pruner = NCPPruner(max_step=19 + first_step, first_step=first_step)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.tell(report_at(study, range(first_step, 20 + first_step), [0.9] * 20), 0.9)
    trial = report_at(study, [first_step], [0.1])
    at_rung = []
    for step in range(first_step, 19 + first_step):
        if step > first_step:
            trial.report(0.1, step)
        reason = pruner.decide(study, study.get_trials()[-1]).reason
        if reason not in ("no_rung", "already_at_rung"):
            at_rung.append(step)
    assert at_rung == decided
    assert pruner.settings()["first_step"] == first_step


def test_new_argument_errors():
    for kwargs, match in [({"rule": "bohb"}, "rule"), ({"reduction_factor": 1}, "reduction"),
                          ({"min_resource": 0}, "min_resource"), ({"first_step": 2}, "first_step"),
                          ({"incumbent_alpha": 1.5}, "incumbent_alpha")]:
        with pytest.raises(ValueError, match=match):
            NCPPruner(**kwargs)


@pytest.mark.parametrize("direction, sign", [("maximize", 1.0), ("minimize", -1.0)])
def test_record_decision_stores_why_in_the_objectives_units(direction, sign):
    from ncp_search.integrations.optuna.reporting import record_decision

    study = optuna.create_study(direction=direction, pruner=NCPPruner(
        **PERCENTILE, n_warmup_steps=0))
    complete_trials(study, sign=sign)
    bad = run_trial(study, [sign * 0.1] * 3, finish=False)
    assert bad.should_prune()
    stored = record_decision(bad, 2)
    assert stored == study.get_trials()[-1].user_attrs["ncp_decision"]
    assert stored["epoch"] == 3 and stored["reason"] == "below"
    assert stored["value"] == pytest.approx(sign * 0.1)
    assert stored["threshold"] == pytest.approx(sign * 0.75)  # median of 0.65..0.85 finals
    plain = optuna.create_study(pruner=optuna.pruners.MedianPruner())
    assert record_decision(plain.ask(), 0) is None


def test_index_out_of_position_trials_are_indexed_once_each():
    # Was: a list not numbered by position reset the frontier but kept the indexed
    # trials, so every later update indexed them again (finals counted twice).
    from ncp_search.integrations.optuna.index import StudyIndex

    trials = []
    for number, value in ((1, 0.7), (0, 0.9)):
        trial = optuna.trial.create_trial(value=value, intermediate_values={0: value})
        trial.number = number
        trials.append(trial)
    index = StudyIndex(1.0, lambda t: float("nan"), lambda t, rung: t.intermediate_values[0])
    for _ in range(3):
        assert index.update(trials) == []
    assert sorted(index.finals) == [0.7, 0.9] and len(index.completed) == 2
    assert sorted(index.rung_values(0)) == [0.7, 0.9]
    index.update(trials)
    assert sorted(index.rung_values(0)) == [0.7, 0.9] and index.max_last_step == 0
