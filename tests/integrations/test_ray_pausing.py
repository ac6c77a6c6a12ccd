"""NCPScheduler with a PausingPolicy, through Tune's hooks with a stand-in controller."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install 'ncp-search[ray]'")

from ray.tune.experiment import Trial as TuneTrial  # noqa: E402
from ray.tune.schedulers import TrialScheduler  # noqa: E402

from ncp_search.core.pausing import PausingPolicy  # noqa: E402
from ncp_search.integrations.ray.pausing import NoCheckpointError  # noqa: E402
from ncp_search.integrations.ray.scheduler import NCPScheduler  # noqa: E402

PAUSE, STOP, CONTINUE = TrialScheduler.PAUSE, TrialScheduler.STOP, TrialScheduler.CONTINUE


class FakeTrial:
    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id
        self.status = TuneTrial.PENDING


class FakeController:
    """What the scheduler calls on Tune's controller: get_trials, stop_trial (which, as
    Tune's, calls the scheduler's on_trial_remove for a PAUSED or PENDING trial)."""

    def __init__(self, trials, scheduler=None):
        self.trials = trials
        self.stopped = []
        self.scheduler = scheduler

    def get_trials(self):
        return self.trials

    def stop_trial(self, trial):
        if self.scheduler is not None and trial.status in (TuneTrial.PAUSED,
                                                           TuneTrial.PENDING):
            self.scheduler.on_trial_remove(self, trial)
        trial.status = TuneTrial.TERMINATED
        self.stopped.append(trial.trial_id)


def result(t, acc, checkpoint="checkpoint_000000"):
    return {"training_iteration": t, "acc": acc, "checkpoint_dir_name": checkpoint}


def scheduler_for(n, path=None, **settings):
    policy = PausingPolicy(n_trials=n, max_resource=4, reduction_factor=2, keep_min=1,
                           first_step=1, **settings)
    return NCPScheduler(metric="acc", mode="max", max_t=4, policy=policy,
                        state_path=None if path is None else str(path))


def run_to_first_rung(scheduler, controller, values):
    answers = {}
    for trial, value in zip(controller.trials, values):
        trial.status = TuneTrial.RUNNING
        answer = scheduler.on_trial_result(controller, trial, result(1, value))
        answers[trial.trial_id] = answer
        if answer == PAUSE:
            trial.status = TuneTrial.PAUSED
        elif answer == STOP:
            trial.status = TuneTrial.TERMINATED
            scheduler.on_trial_complete(controller, trial, result(1, value))
    return answers


def test_trials_pause_at_the_rung_and_the_best_resume_when_it_closes(tmp_path):
    scheduler = scheduler_for(4, tmp_path / "journal.jsonl")
    controller = FakeController([FakeTrial(k) for k in "abcd"])
    for trial in controller.trials:
        scheduler.on_trial_add(controller, trial)
    answers = run_to_first_rung(scheduler, controller, [0.5, 0.9, 0.7, 0.6])
    # a, b, c pause and wait; d arrives last, closes the rung and is not promoted
    assert answers == {"a": PAUSE, "b": PAUSE, "c": PAUSE, "d": STOP}
    assert sorted(controller.stopped) == ["a"]  # paused for good: stopped
    first = scheduler.choose_trial_to_run(controller)
    assert first.trial_id == "b"  # the best promoted trial resumes first
    first.status = TuneTrial.RUNNING
    second = scheduler.choose_trial_to_run(controller)
    assert second.trial_id == "c"
    assert scheduler.choose_trial_to_run(controller) is None  # the rest wait or ended
    # b is resumed from its checkpoint: it reports epoch 2 (its next rung)
    assert scheduler.on_trial_result(controller, first, result(2, 0.92)) == PAUSE
    # the journal brings the policy back after a restore
    restored = scheduler_for(4, tmp_path / "journal.jsonl")
    for trial in controller.trials:
        restored.on_trial_add(controller, trial)
    assert restored.policy.status("b") == "paused" and restored.policy.status("a") == \
        "dropped"
    assert restored.policy.status("c") == "promoted"  # resumed again after the restore


def test_a_pause_without_a_checkpoint_is_a_clear_error():
    scheduler = scheduler_for(2)
    controller = FakeController([FakeTrial("a"), FakeTrial("b")])
    for trial in controller.trials:
        scheduler.on_trial_add(controller, trial)
    with pytest.raises(NoCheckpointError, match="reported no checkpoint"):
        scheduler.on_trial_result(controller, controller.trials[0], result(1, 0.5, None))


def test_more_trials_than_the_policy_was_given_is_a_clear_error():
    scheduler = scheduler_for(1)
    scheduler.on_trial_add(None, FakeTrial("a"))
    with pytest.raises(ValueError, match="num_samples"):
        scheduler.on_trial_add(None, FakeTrial("b"))


def test_a_diverged_trial_stops_and_its_bracket_goes_on():
    scheduler = scheduler_for(2)
    controller = FakeController([FakeTrial("a"), FakeTrial("b")])
    for trial in controller.trials:
        scheduler.on_trial_add(controller, trial)
    a, b = controller.trials
    assert scheduler.on_trial_result(controller, a, result(1, 0.5)) == PAUSE
    a.status = TuneTrial.PAUSED
    assert scheduler.on_trial_result(controller, b, result(1, float("nan"))) == STOP
    assert scheduler.choose_trial_to_run(controller).trial_id == "a"


def test_a_concurrency_limit_that_starves_the_rung_is_warned_about():
    # Tune's max_concurrent_trials counts paused trials: with 2 of 4 trials created and
    # both paused at the first rung, nothing can start and the rung never closes.
    scheduler = scheduler_for(4)
    controller = FakeController([FakeTrial("a"), FakeTrial("b")])
    for trial in controller.trials:
        scheduler.on_trial_add(controller, trial)
    run_to_first_rung(scheduler, controller, [0.5, 0.9])
    with pytest.warns(RuntimeWarning, match="max_concurrent_trials"):
        assert scheduler.choose_trial_to_run(controller) is None


def test_a_promoted_trial_waits_while_the_one_handed_before_is_still_staged():
    # Tune's controller stages whatever choose_trial_to_run returns, slot or not: handing
    # every promoted trial at once let Tune start them in its own order, not best first
    # (seen on real Tune runs of the recorded tables: 0-1 of 5 rungs in order).
    scheduler = scheduler_for(4)
    controller = FakeController([FakeTrial(k) for k in "abcd"])
    for trial in controller.trials:
        scheduler.on_trial_add(controller, trial)
    run_to_first_rung(scheduler, controller, [0.5, 0.9, 0.7, 0.6])
    first = scheduler.choose_trial_to_run(controller)
    assert first.trial_id == "b"
    first.status = TuneTrial.PENDING  # staged by Tune's controller, no actor yet
    assert scheduler.choose_trial_to_run(controller) is None
    first.status = TuneTrial.RUNNING
    assert scheduler.choose_trial_to_run(controller).trial_id == "c"


def test_a_trial_completed_before_a_restore_runs_again_to_its_end(tmp_path):
    # Was: after Tuner.restore from a snapshot taken while it ran, Tune ran a trial the
    # journal had completed again; the policy stopped it at its first result and the
    # scheduler recorded that epoch's value as its final.
    scheduler = scheduler_for(2, tmp_path / "journal.jsonl")
    controller = FakeController([FakeTrial(k) for k in "ab"])
    for trial in controller.trials:
        scheduler.on_trial_add(controller, trial)
    assert run_to_first_rung(scheduler, controller, [0.9, 0.5]) == {"a": PAUSE, "b": STOP}
    star = scheduler.choose_trial_to_run(controller)
    star.status = TuneTrial.RUNNING
    assert [scheduler.on_trial_result(controller, star, result(t, v))
            for t, v in ((2, 0.91), (3, 0.92), (4, 0.93))] == [CONTINUE] * 3
    scheduler.on_trial_complete(controller, star, result(4, 0.93))
    restored = scheduler_for(2, tmp_path / "journal.jsonl")
    for trial in controller.trials:
        restored.on_trial_add(controller, trial)
    star.status = TuneTrial.RUNNING  # Tune starts the PENDING trial from its checkpoint
    assert [restored.on_trial_result(controller, star, result(t, v))
            for t, v in ((3, 0.92), (4, 0.93))] == [CONTINUE] * 2
    assert restored.state()["tracks"]["a"]["final"] is None  # out until it completes
    restored.on_trial_complete(controller, star, result(4, 0.93))
    assert restored.state()["tracks"]["a"]["final"] == pytest.approx(0.93)
    assert restored.num_stopped == 1  # b only


def test_trials_paused_for_good_count_as_stopped_not_removed(tmp_path):
    # Was: Tune calls on_trial_remove for the PAUSED trials the scheduler stops when
    # their rung closes; they were journaled as removed (the user's doing), left out of
    # num_stopped (2 of 8 on a real 10-trial run) and their rung values dropped.
    scheduler = scheduler_for(4, tmp_path / "journal.jsonl")
    controller = FakeController([FakeTrial(k) for k in "abcd"], scheduler)
    for trial in controller.trials:
        scheduler.on_trial_add(controller, trial)
    assert run_to_first_rung(scheduler, controller, [0.5, 0.9, 0.7, 0.6]) == {
        "a": PAUSE, "b": PAUSE, "c": PAUSE, "d": STOP}
    assert controller.stopped == ["a"]
    assert scheduler.num_stopped == 2 and scheduler.policy.status("a") == "dropped"
    state = scheduler.state()
    assert state["tracks"]["a"]["stopped"] and not state["tracks"]["a"]["removed"]
    assert dict(state["rungs"])[1.0]["a"] == pytest.approx(0.5)
    restored = scheduler_for(4, tmp_path / "journal.jsonl")
    restored.on_trial_add(controller, controller.trials[0])
    assert restored.num_stopped == 2 and restored.policy.status("a") == "dropped"
    # a trial the user removes while it waits is still removed
    other = scheduler_for(2)
    controller = FakeController([FakeTrial("x"), FakeTrial("y")], other)
    for trial in controller.trials:
        other.on_trial_add(controller, trial)
    run_to_first_rung(other, controller, [0.5])
    controller.stop_trial(controller.trials[0])
    assert other.policy.status("x") == "out" and other.state()["tracks"]["x"]["removed"]


def test_a_trial_dropped_before_a_restore_is_stopped_before_tune_starts_it(tmp_path):
    # Was: Tune's snapshot held the dropped trials as PAUSED; Tuner.restore made them
    # PENDING and Tune started them itself, so each trained one more epoch before the
    # policy stopped it at its first result (7 of 10 trials of a killed real sweep).
    scheduler = scheduler_for(4, tmp_path / "journal.jsonl")
    controller = FakeController([FakeTrial(k) for k in "abcd"], scheduler)
    for trial in controller.trials:
        scheduler.on_trial_add(controller, trial)
    run_to_first_rung(scheduler, controller, [0.5, 0.9, 0.7, 0.6])
    restored = scheduler_for(4, tmp_path / "journal.jsonl")
    controller = FakeController([FakeTrial(k) for k in "abcd"], restored)
    for trial in controller.trials:  # all PENDING again, as after Tuner.restore
        restored.on_trial_add(controller, trial)
    assert restored.policy.dropped() == ["a", "d"] and restored.num_stopped == 2
    chosen = restored.choose_trial_to_run(controller)
    assert chosen.trial_id == "b" and controller.stopped == ["a", "d"]
    assert controller.trials[0].status == TuneTrial.TERMINATED
    assert restored.num_stopped == 2  # the same stops, not counted twice


class FakeCache:
    """Tune's actor cache: the idle actors per resources, in the order Tune reuses them."""

    def __init__(self, queue):
        self._cached_objects = {"1 CPU": list(queue)}


def where_paused_scheduler(n, flag, **settings):
    policy = PausingPolicy(n_trials=n, max_resource=4, reduction_factor=2, keep_min=1,
                           first_step=1, **settings)
    return NCPScheduler(metric="acc", mode="max", max_t=4, policy=policy,
                        resume_where_paused=flag)


def paused_on_two_actors(scheduler, names):
    """a, c paused on actor X and b on Y (d, on Y, closes the rung and is dropped)."""
    controller = FakeController([FakeTrial(k) for k in names])
    x, y = object(), object()
    for trial in controller.trials:
        trial.placement_group_factory = "1 CPU"
        scheduler.on_trial_add(controller, trial)
    controller._trial_to_actor = {trial: (x, y)[i % 2] for i, trial in
                                  enumerate(controller.trials[:4])}
    controller._actor_cache = FakeCache([])
    for trial, value in zip(controller.trials[:4], [0.9, 0.8, 0.5, 0.6]):
        trial.status = TuneTrial.RUNNING
        answer = scheduler.on_trial_result(controller, trial, result(1, value))
        trial.status = TuneTrial.PAUSED if answer == PAUSE else TuneTrial.TERMINATED
    controller._trial_to_actor = {}
    return controller, x, y


def test_a_promoted_trial_is_handed_over_when_the_actor_that_paused_it_is_reused_next():
    # Was: the best promoted trial went to whichever actor Tune reused next, so with 2
    # actors about half the resumes of a sweep loaded their checkpoint, though the
    # sweep's trainable keeps each paused trial's models in the memory of its actor.
    chosen = {}
    for flag in (False, True):
        scheduler = where_paused_scheduler(4, flag)
        controller, x, y = paused_on_two_actors(scheduler, "abcd")
        assert scheduler.policy.promoted() == ["a", "b"]
        controller._actor_cache = FakeCache([y, x])  # Tune reuses Y next
        first = scheduler.choose_trial_to_run(controller)
        first.status = TuneTrial.RUNNING
        controller._trial_to_actor = {first: y}
        controller._actor_cache = FakeCache([x])
        chosen[flag] = [first.trial_id, scheduler.choose_trial_to_run(controller).trial_id]
    assert chosen == {False: ["a", "b"], True: ["b", "a"]}
    # where Tune's actor cache cannot be read, the order is as without the option
    scheduler = where_paused_scheduler(4, True)
    controller, x, y = paused_on_two_actors(scheduler, "abcd")
    del controller._actor_cache
    with pytest.warns(RuntimeWarning, match="cannot read which actor Tune reuses next"):
        assert scheduler.choose_trial_to_run(controller).trial_id == "a"


def test_a_promoted_trial_whose_actor_is_busy_waits_while_new_trials_may_start():
    scheduler = where_paused_scheduler(6, True, bracket_size=4)
    controller, x, y = paused_on_two_actors(scheduler, "abcdef")
    e, f = controller.trials[4:]
    e.status = TuneTrial.RUNNING  # the second bracket's first trial, on actor X
    controller._trial_to_actor = {e: x}
    controller._actor_cache = FakeCache([y])
    b = scheduler.choose_trial_to_run(controller)
    assert b.trial_id == "b"  # paused on Y, the actor Tune reuses next
    b.status = TuneTrial.RUNNING
    z = object()  # a third actor, idle
    controller._trial_to_actor = {e: x, b: y}
    controller._actor_cache = FakeCache([z])
    assert scheduler.choose_trial_to_run(controller) is f  # a waits for X: a new trial
    f.status = TuneTrial.RUNNING
    controller._trial_to_actor = {e: x, b: y, f: z}
    controller._actor_cache = FakeCache([])
    # nothing new left to start: a resumes where a slot frees, from its checkpoint
    assert scheduler.choose_trial_to_run(controller).trial_id == "a"
    assert scheduler.policy.status("a") == "running"


def run_on_two_actors(flag):
    """A study of 6 trials (brackets of 4 and 2) run to its end on 2 actors, as Tune's
    controller runs it: each free actor (in the order Tune reuses them) takes what the
    scheduler chooses; the running trial with the fewest steps reports next. Returns
    the policy's fates, each trial's steps and the order of the trials handed over."""
    scheduler = where_paused_scheduler(6, flag, bracket_size=4)
    controller = FakeController([FakeTrial(k) for k in "abcdef"], scheduler)
    quality = dict(zip("abcdef", [0.5, 0.9, 0.7, 0.6, 0.8, 0.4]))
    for trial in controller.trials:
        trial.placement_group_factory = "1 CPU"
        scheduler.on_trial_add(controller, trial)
    free, running, steps, handed = [object(), object()], {}, dict.fromkeys("abcdef", 0), []
    controller._trial_to_actor = {}
    for _ in range(500):
        while free:
            controller._actor_cache = FakeCache(free)
            chosen = scheduler.choose_trial_to_run(controller)
            if chosen is None:
                break
            actor = free.pop(0)  # Tune reuses its first cached actor
            chosen.status = TuneTrial.RUNNING
            running[actor] = chosen
            controller._trial_to_actor[chosen] = actor
            handed.append(chosen.trial_id)
        if not running:
            break
        actor, trial = min(running.items(), key=lambda item: (steps[item[1].trial_id],
                                                              item[1].trial_id))
        steps[trial.trial_id] += 1
        step = steps[trial.trial_id]
        answer = scheduler.on_trial_result(controller, trial, result(
            step, quality[trial.trial_id] * (1 + step) / 5))
        if answer == CONTINUE and step < 4:
            continue
        trial.status = TuneTrial.PAUSED if answer == PAUSE else TuneTrial.TERMINATED
        if answer != PAUSE:
            scheduler.on_trial_complete(controller, trial, result(step, 0.0))
        del running[actor], controller._trial_to_actor[trial]
        free.append(actor)  # cached behind the actors already idle
    fates = {k: scheduler.policy.status(k) for k in "abcdef"}
    return fates, steps, handed


def test_resuming_where_paused_changes_the_order_and_no_decision():
    fates, steps, handed = run_on_two_actors(False)
    where_fates, where_steps, where_handed = run_on_two_actors(True)
    assert (where_fates, where_steps) == (fates, steps)
    assert where_handed != handed  # the option did reorder the work
    assert set(fates.values()) == {"done", "dropped"} and max(steps.values()) == 4
