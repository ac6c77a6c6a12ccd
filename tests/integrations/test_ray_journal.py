"""The scheduler journal is validated, never trusted; Tune's hooks never raise for it."""

from __future__ import annotations

import json
import os
import random

import pytest

pytest.importorskip("ray.tune", reason="optional dependency: pip install 'ncp-search[ray]'")

from ncp_search.integrations.ray.journal import FORMAT, Journal, parse_event  # noqa: E402
from ncp_search.integrations.ray.scheduler import NCPScheduler  # noqa: E402
from tests.integrations.tune_fakes import Trial  # noqa: E402

VALID = [
    {"e": "result", "id": "a", "t": 1, "v": 0.5, "s": {"beta_eff": 0.1}},
    {"e": "decision", "id": "a", "t": 1, "p": 0.5, "stop": False, "rung": 1.0},
    {"e": "result", "id": "b", "t": 1, "v": None},
    {"e": "complete", "id": "a", "final": 0.9},
    {"e": "error", "id": "b"},
    {"e": "remove", "id": "c"},
]


def hostile_lines(rng: random.Random, n: int) -> list[str]:
    """Lines a damaged, edited or planted journal may hold."""
    fixed = [
        '{"e": "result", "id": "x", "t": 1, "v": ' + "9" * 400 + "}",  # 400 digits
        '{"e": "result", "id": "x", "t": ' + "9" * 5000 + ', "v": 0.5}',  # 5,000 digits
        "[" * 100_000 + "]" * 100_000,  # 100,000 deep
        '{"e": "result", "id": "x", "t": [1], "v": 0.5}',  # a list where a number belongs
        '["e", "result"]', '"just a string"', "null", "", "{", "\x00\xff",
        '{"e": "result", "id": "x", "t": NaN, "v": 0.5}',
        '{"e": "result", "id": "x", "t": Infinity, "v": 0.5}',
        '{"e": "decision", "id": "x", "t": 1, "p": 0.5, "stop": "yes"}',
        '{"e": "result", "id": ' + '"x' * 1000 + '", "t": 1, "v": 0.5}',
        '{"e": "result", "id": "x", "t": 1, "v": 0.5, "s": {"a": {"b": 1}}}',
        '{"e": "result", "id": "x", "t": 1, "v": 0.5, "extra": 1}',
        '{"e": "complete", "id": 7, "final": 0.5}',
        '{"e": "result", "id": "x", "t": 1e400, "v": 0.5}',
        '{"e": "result", "id": "x", "t": true, "v": 0.5}',
    ]
    lines = list(fixed)
    alphabet = '{}[]":,0123456789.eE-+ abcdefghijklmnopqrstuvwxyzNaInfity\\'
    while len(lines) < n:
        kind = rng.random()
        if kind < 0.4:  # random bytes of JSON-ish text
            lines.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))))
        elif kind < 0.8:  # a valid event with one field damaged
            event = dict(rng.choice(VALID))
            key = rng.choice(sorted(event))
            event[key] = rng.choice([None, "s", [], {}, 10**20,
                                     -1, True, {"nested": [1, 2]}, "x" * 300])
            try:
                lines.append(json.dumps(event))
            except ValueError:
                continue
        else:  # a valid line cut short
            text = json.dumps(rng.choice(VALID))
            lines.append(text[: rng.randint(0, len(text) - 1)])
    return lines


def test_ten_thousand_hostile_lines_raise_nothing_and_lose_no_valid_line(tmp_path):
    rng = random.Random(0)
    hostile = hostile_lines(rng, 10_000)
    accepted_hostile = [line for line in hostile if parse_event(line) is not None]
    valid_positions = []
    body = []
    for line in hostile:
        body.append(line)
        if rng.random() < 0.05:
            valid_positions.append(len(body))
            body.append(json.dumps(rng.choice(VALID)))
    path = tmp_path / "journal.jsonl"
    path.write_text(json.dumps({"format": FORMAT}) + "\n" + "\n".join(body) + "\n",
                    encoding="utf-8")
    warned = []
    events = Journal(str(path), lambda key, message: warned.append(key)).read()
    assert events is not None
    assert len(events) == len(valid_positions) + len(accepted_hostile)
    assert warned == ["journal-lines"]
    # what a damaged line may still be accepted as is schema-valid: replaying it into a
    # scheduler raises nothing, and its hooks keep deciding
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=5, state_path=str(path))
    with pytest.warns(RuntimeWarning, match="skipped"):
        scheduler.on_trial_add(None, Trial("fresh"))
    for t in range(1, 6):
        scheduler.on_trial_result(None, Trial("fresh"), {"training_iteration": t, "acc": 0.5})


def test_hostile_results_never_raise_out_of_the_hooks():
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=5)
    trial = Trial("t")
    scheduler.on_trial_add(None, trial)
    weird = [None, "0.5", [0.5], {"v": 1}, float("nan"), float("inf"), 10**400, -(10**400),
             True, 1e308, -1e308, object()]
    for i, value in enumerate(weird):
        for time_value in (i + 1, None, "1", float("nan"), 10**400):
            answer = scheduler.on_trial_result(
                None, trial, {"training_iteration": time_value, "acc": value})
            assert answer in ("CONTINUE", "STOP")
        scheduler.on_trial_complete(None, Trial(f"c{i}"), {"acc": value})


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_journal_degrades_to_deciding_without_persisting(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    _unwritable_case(folder / "journal.jsonl")


def test_a_journal_that_cannot_be_written_warns_once_and_decides(tmp_path):
    # Was (full disk): every trial ended ERROR and nothing was stopped. A directory at
    # the journal's path makes every write fail, as a full disk does.
    path = tmp_path / "journal.jsonl"
    path.mkdir()
    _unwritable_case(path)


def _unwritable_case(path) -> None:
    scheduler = NCPScheduler(metric="acc", mode="max", max_t=9, state_path=str(path))
    with pytest.warns(RuntimeWarning) as caught:
        good, bad = Trial("good"), Trial("bad")
        for trial in (good, bad):
            scheduler.on_trial_add(None, trial)
        answers = []
        for t in range(1, 4):
            scheduler.on_trial_result(None, good, {"training_iteration": t, "acc": 0.9})
            answers.append(scheduler.on_trial_result(
                None, bad, {"training_iteration": t, "acc": 0.1}))
    assert "STOP" in answers
    assert sum("journal" in str(w.message) for w in caught) == 1
