"""The sweep's progress line and the end-of-sweep summary arithmetic."""

from __future__ import annotations

import io

import pytest

from ncp_search.app.sweep.progress import ProgressLine, TrialStatus, format_line, summarize
from ncp_search.app.sweep.results import format_summary, summarize_sweep


def _trials() -> list[TrialStatus]:
    return [TrialStatus(0, "COMPLETE", 6, 0.91), TrialStatus(1, "PRUNED", 2),
            TrialStatus(2, "COMPLETE", 6, 0.95), TrialStatus(3, "RUNNING", 3),
            TrialStatus(4, "FAIL", 1), TrialStatus(5, "PRUNED", 3)]


def test_summary_counts_best_and_epochs_saved() -> None:
    summary = summarize(_trials(), epochs=6)
    assert (summary["complete"], summary["pruned"], summary["running"], summary["failed"]) == (
        2, 2, 1, 1)
    assert summary["finished"] == 4
    assert summary["epochs_used"] == 6 + 2 + 6 + 3 and summary["epochs_full"] == 24
    assert summary["epochs_saved"] == 7 and abs(summary["saved_fraction"] - 7 / 24) < 1e-12
    assert summary["best"] == 0.95 and summary["best_trial"] == 2
    line = format_line(summary, budget=8)
    assert "4/8 trials (2 pruned, 1 running, 1 failed)" in line
    assert "best 0.9500 (#2)" in line and "epochs saved 7/24 (29%)" in line
    assert line.startswith("[##########..........]")


def test_empty_and_nan_finals() -> None:
    summary = summarize([TrialStatus(0, "COMPLETE", 3, float("nan"))], epochs=3)
    assert summary["best"] is None and summary["saved_fraction"] == 0.0
    assert "best -" in format_line(summary, budget=2)


def test_off_a_terminal_one_line_per_finished_trial() -> None:
    stream = io.StringIO()
    progress = ProgressLine(budget=3, epochs=4, stream=stream)
    progress.update([TrialStatus(0, "RUNNING", 1)])
    progress.update([TrialStatus(0, "RUNNING", 2)])  # an epoch: no new line
    progress.update([TrialStatus(0, "COMPLETE", 4, 0.8)])
    progress.update([TrialStatus(0, "COMPLETE", 4, 0.8), TrialStatus(1, "RUNNING", 1)])
    progress.update([TrialStatus(0, "COMPLETE", 4, 0.8), TrialStatus(1, "PRUNED", 2)])
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3, lines
    assert "1/3 trials" in lines[1] and "2/3 trials (1 pruned" in lines[2]


def test_on_a_terminal_the_line_is_rewritten() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = ProgressLine(budget=2, epochs=2, stream=stream)
    progress.update([TrialStatus(0, "RUNNING", 1)])
    progress.update([TrialStatus(0, "COMPLETE", 2, 0.5)])
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1


def test_sweep_summary_and_its_text() -> None:
    meta = {"name": "s", "backend": "optuna", "pruner": "ncp", "epochs": 4}
    trials = [
        {"number": 0, "state": "COMPLETE", "params": {"lr": 0.1}, "val_accuracy": [.5, .6, .7, .8],
         "final": 0.8, "model_path": "models/trial_0000.keras"},
        {"number": 1, "state": "PRUNED", "params": {"lr": 0.2}, "val_accuracy": [.2, .3],
         "final": 0.3, "model_path": None},
        {"number": 2, "state": "FAIL", "params": {"lr": 0.3}, "val_accuracy": [.1],
         "final": 0.1, "model_path": None},
    ]
    summary = summarize_sweep(meta, trials)
    assert summary["epochs_used"] == 6 and summary["epochs_without_pruning"] == 8
    assert summary["epochs_saved_fraction"] == 0.25
    assert (summary["complete"], summary["pruned"], summary["fail"]) == (1, 1, 1)
    assert summary["best"]["number"] == 0 and summary["best"]["params"] == {"lr": 0.1}
    text = format_summary(summary, "runs/s")
    assert "6 used of 8 without pruning (25% saved)" in text
    assert "runs/s/models/trial_0000.keras" in text
    assert "no complete trial yet" in format_summary(summarize_sweep(meta, trials[1:]), "x")


def test_a_pausing_sweep_shows_its_paused_configurations_apart_from_the_pruned() -> None:
    """Under ncp_pause a paused configuration ends PRUNED but keeps its checkpoint and
    may resume: the progress line and the end-of-sweep summary say 'paused' for it
    (they counted it as pruned, which reads as stopped for good)."""
    statuses = [TrialStatus(0, "PRUNED", 1, paused=True), TrialStatus(1, "PRUNED", 1,
                                                                        paused=True),
                TrialStatus(2, "PRUNED", 1), TrialStatus(3, "RUNNING", 2)]
    summary = summarize(statuses, epochs=6)
    assert (summary["pruned"], summary["paused"]) == (3, 2)
    assert "3/10 trials (2 paused, 1 pruned, 1 running)" in format_line(summary, budget=10)
    meta = {"name": "s", "backend": "optuna", "pruner": "ncp_pause", "epochs": 3}
    records = [
        {"number": 0, "state": "COMPLETE", "params": {}, "val_accuracy": [.5, .6, .7],
         "final": 0.7, "model_path": None, "pauses": 1, "paused": False},
        {"number": 1, "state": "PRUNED", "params": {}, "val_accuracy": [.2],
         "final": 0.2, "model_path": None, "pauses": 1, "paused": True},
        {"number": 2, "state": "PRUNED", "params": {}, "val_accuracy": [float("nan")],
         "final": float("nan"), "model_path": None, "diverged": "nan"},
    ]
    text = format_summary(summarize_sweep(meta, records), "x")
    assert "3 trials: 1 complete, 1 paused (checkpoints kept), 1 pruned (1 diverged), " \
           "0 failed" in text
    assert "(1 paused, 0 running)" in format_line(summarize(statuses[:1], 6), budget=10)
    text = format_summary(summarize_sweep(meta, records[:2]), "x")
    assert "2 trials: 1 complete, 1 paused (checkpoints kept), 0 failed" in text


def test_before_any_trial_completes_the_line_names_the_furthest_trained_leader() -> None:
    """A pausing sweep completes nothing before its last rung: the line said 'best -'
    for most of the sweep. It now names the leader: the best latest value among the
    trials trained furthest (values after fewer epochs are not comparable)."""
    statuses = [TrialStatus(0, "PRUNED", 1, paused=True, last=0.66),
                TrialStatus(1, "RUNNING", 3, last=0.61),
                TrialStatus(2, "PRUNED", 3, paused=True, last=0.93),
                TrialStatus(3, "FAIL", 4, last=0.99),  # failed: not a leader
                TrialStatus(4, "PRUNED", 2, last=float("nan"))]
    summary = summarize(statuses, epochs=6)
    assert summary["best"] is None and summary["leader"] == (2, 0.93, 3)
    assert "| best - (leading #2: 0.9300 after 3 epochs) |" in format_line(summary, 10)
    done = summarize([*statuses, TrialStatus(5, "COMPLETE", 6, 0.95, last=0.95)], 6)
    assert "| best 0.9500 (#5) |" in format_line(done, 10)
    assert "| best - |" in format_line(summarize([TrialStatus(0, "RUNNING", 0)], 6), 10)


def test_time_accounting_uses_the_trials_own_epoch_times() -> None:
    from ncp_search.app.sweep.progress import time_accounting

    # E = 6 epochs. Trial A complete: 2 s fixed + a 3 s first epoch + 5 x 1 s.
    # Trial B pruned after 2 epochs: 2 s fixed + 3 s + 1 s; saved 4 x its 1 s.
    # Trial C pruned after 1 epoch: saved 5 x the sweep's steady epoch (1 s).
    times = time_accounting([(6, 10.0, [3, 1, 1, 1, 1, 1]), (2, 6.0, [3, 1]),
                             (1, 5.0, [3])], epochs=6)
    assert times["seconds_used"] == 21.0 and times["seconds_saved"] == 9.0
    assert times["seconds_without_pruning"] == 30.0
    assert abs(times["seconds_saved_fraction"] - 0.3) < 1e-12
    assert times["steady_epoch_seconds"] == 1.0
    assert times["fixed_seconds_per_trial"] == (4 + 4 + 4) / 3
    # epochs saved would say 9/18 = 50%: fixed costs make time saved smaller (30%)
    none = time_accounting([(2, None, [])], epochs=6)
    assert none["seconds_saved"] is None


def test_time_saved_is_not_estimated_before_any_trial_trains_past_its_first_epoch() -> None:
    # Was: with every trial paused after one epoch (ncp_pause's first rung), each one's
    # five saved epochs were counted at its first epoch's time, compilation included:
    # the main job's line said "trial time saved 36 s of 49 s (74%)", then "6 s of
    # 22 s (27%)" at the end, once steady epochs (0.1 s) were known.
    from ncp_search.app.sweep.progress import time_accounting

    paused = [TrialStatus(n, "PRUNED", 1, None, 4.5, (1.2,), paused=True, last=0.5)
              for n in range(8)]
    times = time_accounting(((t.epochs, t.seconds, t.epoch_seconds) for t in paused), 6)
    assert times["seconds_used"] == 36.0 and times["seconds_saved"] is None
    assert times["seconds_without_pruning"] is None
    line = format_line(summarize(paused, 6), budget=10)
    assert line.endswith("epochs saved 40/48 (83%)") and "trial time" not in line
    # one trial with a steady epoch gives every stopped trial its time
    resumed = TrialStatus(8, "PRUNED", 3, None, 5.0, (1.2, 0.1, 0.1), paused=True, last=0.7)
    summary = summarize([*paused, resumed], 6)
    assert summary["seconds_saved"] == pytest.approx(8 * 5 * 0.1 + 3 * 0.1)
    # a trial that ran all its epochs needs no steady time
    assert time_accounting([(1, 4.0, [1.2])], epochs=1)["seconds_saved"] == 0.0
    meta = {"name": "s", "backend": "optuna", "pruner": "ncp_pause", "epochs": 6}
    records = [{"number": n, "state": "PRUNED", "params": {}, "val_accuracy": [0.5],
                "final": None, "model_path": None, "seconds": 4.5, "epoch_seconds": [1.2],
                "paused": True} for n in range(3)]
    text = format_summary(summarize_sweep(meta, records), "out")
    assert ("time: trial time used 14 s (time saved not estimated: no trial has a "
            "recorded epoch time after its first epoch") in text
    # the report says the same (it estimated from each trial's whole time per epoch)
    from ncp_search.app.report.html import _normalise, _seconds_saved

    used_cell, saved_cell = _seconds_saved([_normalise(r, i) for i, r in enumerate(records)],
                                           6)
    assert used_cell.startswith("trial time used 14 s")
    assert saved_cell.startswith("not estimated: no trial has a recorded epoch time")


def test_an_epoch_that_began_a_resume_is_not_a_steady_epoch(tmp_path) -> None:
    # Was: a chain's epochs after its first all counted as steady, also the first epoch
    # of each resume, which loads (or traces again) the model: a configuration paused
    # after 1 epoch and resumed for 2 had the steady time (5 + 1) / 2 = 3 s, not 1 s.
    import datetime

    import optuna

    from ncp_search.app.report.html import _normalise, _seconds_saved
    from ncp_search.app.sweep.optuna_backend import EPOCH_SECONDS_ATTR
    from ncp_search.app.sweep.progress import time_accounting
    from ncp_search.app.sweep.results import optuna_records
    from ncp_search.app.sweep.run import optuna_status
    from ncp_search.integrations.optuna.pausing import PAUSED_ATTR, RESUMES_ATTR

    assert time_accounting([(3, 9.0, [3, 5, 1])], epochs=6)["seconds_saved"] == 9.0
    assert time_accounting([(3, 9.0, [3, 5, 1], (1,))], epochs=6)["seconds_saved"] == 3.0
    start = datetime.datetime(2026, 1, 1)
    study = optuna.create_study(direction="maximize")
    pieces = [  # number, state, epoch seconds, first step, attributes
        (0, "PRUNED", [3.0], 0, {PAUSED_ATTR: "checkpoints/0/epoch_0001"}),
        (1, "PRUNED", [5.0, 1.0], 1, {RESUMES_ATTR: 0, PAUSED_ATTR: "checkpoints/0/epoch_0003"}),
    ]
    for number, state, times, first, attrs in pieces:
        values = {first + i: 0.5 for i in range(len(times))}
        study.add_trial(optuna.trial.FrozenTrial(
            number=number, trial_id=number, state=getattr(optuna.trial.TrialState, state),
            value=None, intermediate_values=values, params={}, distributions={},
            system_attrs={}, user_attrs={EPOCH_SECONDS_ATTR: times, **attrs},
            datetime_start=start,
            datetime_complete=start + datetime.timedelta(seconds=sum(times))))
    [status] = optuna_status(study)
    assert status.epoch_seconds == (3.0, 5.0, 1.0) and status.resumed_at == (1,)
    assert summarize([status], 6)["seconds_saved"] == 3.0  # 3 epochs left at 1 s
    [record] = optuna_records(study)
    assert record["resumed_at"] == [1]
    meta = {"name": "s", "backend": "optuna", "pruner": "ncp_pause", "epochs": 6}
    assert summarize_sweep(meta, [record])["seconds_saved"] == 3.0
    _, saved_cell = _seconds_saved([_normalise(record, 0)], 6)
    assert saved_cell.startswith("trial time saved 3 s of 12 s")


def test_a_pausing_sweeps_first_line_counts_paused_not_pruned() -> None:
    # Was: "[....] 0/10 trials (0 pruned, 0 running)", the first line of the main job
    # under ncp_pause, which never prunes a healthy trial.
    stream = io.StringIO()
    line = ProgressLine(10, 6, stream, pausing=True)
    line.update([TrialStatus(0, "RUNNING", 0)])
    assert "0/10 trials (0 paused, 1 running)" in stream.getvalue()
    diverged = [TrialStatus(0, "PRUNED", 1, last=float("nan"))]
    line.update(diverged)
    assert "(1 pruned, 0 running)" in stream.getvalue()  # a diverged trial is pruned
    asha = ProgressLine(10, 6, io.StringIO())
    asha.update([TrialStatus(0, "RUNNING", 0)])
    assert "(0 pruned, 1 running)" in asha.stream.getvalue()
    # the end-of-sweep summary of a pausing sweep that stopped nothing says it alike
    records = [{"number": n, "state": "COMPLETE", "params": {}, "val_accuracy": [0.5] * 6,
                "final": 0.5, "model_path": None, "seconds": 6.0, "epoch_seconds": [1.0] * 6}
               for n in range(2)]
    for pruner, words in (("ncp_pause (predictor=best, min_resource=1)", "0 paused"),
                          ("ncp (predictor=best)", "0 pruned")):
        meta = {"name": "s", "backend": "optuna", "pruner": pruner, "epochs": 6}
        assert f"2 trials: 2 complete, {words}, 0 failed" in format_summary(
            summarize_sweep(meta, records), "out")


def test_the_summary_says_pausing_for_exactly_the_names_the_registry_says_pause() -> None:
    from ncp_search.integrations import registry

    for host, table in registry.HOSTS.items():
        for name, entry in table.items():
            meta = {"name": "s", "backend": host, "epochs": 6,
                    "pruner": entry.describe(entry.defaults())}
            assert summarize_sweep(meta, [])["pausing"] is (entry.rule == "pause"), name
    assert summarize_sweep({"name": "s", "backend": "ray", "epochs": 6,
                            "pruner": "ncp_pause (predictor=best)"}, [])["pausing"] is True


def test_the_best_configurations_last_trial_is_the_studys_best_trial(tmp_path) -> None:
    import optuna

    import ncp_search
    from ncp_search.app.sweep.results import optuna_records

    def train(trial, start, stop, checkpoint):
        quality = trial.suggest_float("quality", 0.0, 1.0)
        return [quality * (epoch + 1) / 9 for epoch in range(start, stop)]

    study = optuna.create_study(direction="maximize")
    for quality in (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1):  # the first is best: it
        study.enqueue_trial({"quality": quality})  # pauses at its rung for the others
    policy = ncp_search.PausingPolicy(n_trials=9, max_resource=9)
    ncp_search.optimize_pausing(study, train, policy=policy, checkpoint_dir=tmp_path)
    meta = {"name": "s", "backend": "optuna", "epochs": 9, "pruner": "ncp_pause"}
    best = summarize_sweep(meta, optuna_records(study))["best"]
    assert len(best["trials"]) > 1  # a chain: paused, then resumed
    assert best["trials"][-1] == study.best_trial.number
    assert best["number"] == best["trials"][0]


def test_the_summary_names_every_trial_of_the_best_configuration() -> None:
    # under ncp_pause the best configuration is a chain of Optuna trials: the summary
    # names them all, the last one holding the final value (the study's best_trial)
    meta = {"name": "s", "backend": "optuna", "epochs": 6,
            "pruner": "ncp_pause (predictor=best, min_resource=1)"}
    chain = {"number": 1, "state": "COMPLETE", "params": {}, "val_accuracy": [0.9] * 6,
             "final": 0.9, "model_path": None, "seconds": 6.0, "epoch_seconds": [1.0] * 6,
             "trials": [1, 7, 12], "pauses": 2}
    other = {**chain, "number": 0, "final": 0.5, "val_accuracy": [0.5] * 6, "trials": [0]}
    best = summarize_sweep(meta, [other, chain])["best"]
    assert (best["number"], best["trials"]) == (1, [1, 7, 12])
    single = {k: v for k, v in chain.items() if k not in ("trials", "pauses")}
    assert summarize_sweep({**meta, "pruner": "ncp"}, [single])["best"]["trials"] == [1]


def test_the_summary_says_a_failed_trial_was_run_again() -> None:
    # after a kill and --resume the sweep's summary read "1 failed" although the
    # interrupted trial had been run again by the next: a new user reads a problem
    import optuna

    from ncp_search.app.sweep.results import optuna_records

    study = optuna.create_study(direction="maximize")
    killed = study.ask()
    killed.report(0.5, 0)
    study.tell(killed, state=optuna.trial.TrialState.FAIL)
    study.enqueue_trial({}, user_attrs={"retry_of": killed.number})
    again = study.ask()
    study.tell(again, 0.9)
    records = optuna_records(study)
    assert [r.get("retries") for r in records] == [None, [killed.number]]
    meta = {"name": "s", "backend": "optuna", "epochs": 1, "pruner": "ncp"}
    summary = summarize_sweep(meta, records)
    assert (summary["fail"], summary["failed_run_again"]) == (1, 1)
    assert "1 complete, 0 pruned, 1 failed (interrupted and run again)" in format_summary(
        summary, "out")
    queued = [*records[:1], {**records[1], "state": "WAITING"}]  # the retry never started
    assert summarize_sweep(meta, queued)["failed_run_again"] == 0
    failed = [r for r in records if r["state"] == "FAIL"]
    plain = summarize_sweep(meta, failed)  # no later trial ran it again
    assert plain["failed_run_again"] == 0
    assert format_summary(plain, "out").splitlines()[0].endswith("1 failed")


def test_progress_line_and_summary_show_seconds_saved() -> None:
    trials = [TrialStatus(0, "COMPLETE", 6, 0.9, 10.0, (3, 1, 1, 1, 1, 1)),
              TrialStatus(1, "PRUNED", 2, None, 6.0, (3, 1))]
    line = format_line(summarize(trials, epochs=6), budget=4)
    assert "epochs saved 4/12 (33%), trial time saved 4 s of 20 s (20%)" in line
    meta = {"name": "s", "backend": "optuna", "pruner": "ncp", "epochs": 6}
    records = [
        {"number": 0, "state": "COMPLETE", "params": {}, "val_accuracy": [.5] * 6,
         "final": 0.5, "model_path": None, "seconds": 10.0, "epoch_seconds": [3] + [1] * 5},
        {"number": 1, "state": "PRUNED", "params": {}, "val_accuracy": [.2, .3],
         "final": 0.3, "model_path": None, "seconds": 6.0, "epoch_seconds": [3, 1]},
    ]
    summary = summarize_sweep(meta, records)
    assert summary["seconds_saved"] == 4.0 and summary["seconds_without_pruning"] == 20.0
    text = format_summary(summary, "out")
    assert "time: trial time used 16 s, trial time saved 4 s of 20 s (20%)" in text
    assert "4.0 s per trial outside steady epochs" in text


def test_progress_line_summary_and_report_give_one_account_of_time(tmp_path) -> None:
    # Was: the last progress line "7 s of 38 s (18%)" and the summary under it "7 s of
    # 33 s (21%)": the line read Optuna's trial start/end, the summary the objective's
    # own "seconds" attribute; neither said these are trial-seconds, not the wall clock.
    import datetime

    import optuna

    from ncp_search.app.report.html import _normalise, _seconds_saved
    from ncp_search.app.sweep.optuna_backend import EPOCH_SECONDS_ATTR
    from ncp_search.app.sweep.progress import trial_time_text
    from ncp_search.app.sweep.results import optuna_records
    from ncp_search.app.sweep.run import optuna_status

    epochs = 6
    start = datetime.datetime(2026, 1, 1)
    study = optuna.create_study(direction="maximize")
    for number, (state, times, whole) in enumerate([
            ("COMPLETE", [3.0] + [1.0] * 5, 12.5), ("PRUNED", [3.0, 1.0], 7.25),
            ("PRUNED", [3.0], 4.0), ("COMPLETE", [2.5] + [1.5] * 5, 14.0)]):
        values = {step: 0.5 + 0.01 * step for step in range(len(times))}
        study.add_trial(optuna.trial.FrozenTrial(
            number=number, trial_id=number, state=getattr(optuna.trial.TrialState, state),
            value=values[len(times) - 1] if state == "COMPLETE" else None,
            intermediate_values=values, params={}, distributions={}, system_attrs={},
            # the objective's own timer says otherwise: it must not be read
            user_attrs={EPOCH_SECONDS_ATTR: times, "seconds": whole - 5.0},
            datetime_start=start, datetime_complete=start + datetime.timedelta(seconds=whole)))

    line = format_line(summarize(optuna_status(study), epochs), budget=4)
    meta = {"name": "s", "backend": "optuna", "pruner": "ncp", "epochs": epochs}
    records = optuna_records(study)
    summary = summarize_sweep(meta, records)
    text = format_summary({**summary, "wall_seconds": 20.0}, "out")
    used_cell, saved_cell = _seconds_saved([_normalise(r, i) for i, r in enumerate(records)],
                                           epochs)

    expected = trial_time_text(summary)
    assert expected == "trial time saved 9 s of 47 s (19%)"  # 4 x 1 s + 5 x 1 s; 37.75 used
    assert expected in line and expected in text and expected in saved_cell
    assert "trial time used 38 s" in text and "trial time used 38 s" in used_cell
    assert "each finished trial's own wall time, summed over trials and workers" in text
    assert "wall clock of this run: 20 s" in text
