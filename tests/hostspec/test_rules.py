"""Each learning rule, with a record that satisfies it and one that breaks it."""
from __future__ import annotations

import pytest
from marshmallow import ValidationError

from hostspec import events as ev
from hostspec import rules

OK_COMPLETED = {"completion_status": "completed", "progress_percent": 100, "completed_at": "2026-01-02T00:00:00Z",
                "first_activity_at": "2026-01-01T00:00:00Z", "last_activity_at": "2026-01-02T00:00:00Z"}


@pytest.mark.parametrize("rule, good, bad, field", [
    (rules.completed_means_full_progress, OK_COMPLETED,
     {**OK_COMPLETED, "progress_percent": 80}, "progress_percent"),
    (rules.completed_means_full_progress, OK_COMPLETED,
     {**OK_COMPLETED, "completed_at": None}, "completed_at"),
    (rules.completion_date_only_when_completed, {"completion_status": "in_progress", "completed_at": None},
     {"completion_status": "in_progress", "completed_at": "2026-01-01T00:00:00Z"}, "completed_at"),
    (rules.last_activity_not_before_first, OK_COMPLETED,
     {**OK_COMPLETED, "last_activity_at": "2025-12-31T23:59:59Z"}, "last_activity_at"),
    (rules.not_started_has_no_progress, {"completion_status": "not_started", "progress_percent": 0},
     {"completion_status": "not_started", "progress_percent": 30}, "progress_percent"),
])
def test_rule_accepts_good_and_flags_bad(rule, good, bad, field):
    assert rule(good) == {}
    assert field in rule(bad)


def test_check_stat_gathers_every_violation():
    errors = rules.check_stat({"completion_status": "completed", "progress_percent": 50, "completed_at": None,
                               "first_activity_at": "2026-01-02T00:00:00Z", "last_activity_at": "2026-01-01T00:00:00Z"})
    assert set(errors) == {"progress_percent", "completed_at", "last_activity_at"}


def test_every_record_rule_is_registered():
    value_rules = {rules.percent_in_range, rules.not_negative}
    transforms = {rules.keep_completion, rules.completion_memo, rules.check_stat}
    public = {getattr(rules, n) for n in dir(rules)
              if callable(getattr(rules, n)) and getattr(getattr(rules, n), "__module__", "") == rules.__name__
              and not n.startswith("_")}
    assert public - value_rules - transforms == set(rules.RULES)


@pytest.mark.parametrize("rule, good, bad", [
    (rules.percent_in_range, [0, 55.5, 100, None], [-0.1, 100.01, 250]),
    (rules.not_negative, [0, 3600, None], [-1]),
])
def test_value_rules(rule, good, bad):
    for value in good:
        rule(value)
    for value in bad:
        with pytest.raises(ValidationError):
            rule(value)


def test_value_rules_guard_the_event_fields():
    from tests.hostspec.test_events import stat_data

    ev.validate_data(ev.LEARNER_STAT_UPSERTED, stat_data())
    for field, value in (("progress_percent", 101), ("score_percent", -5), ("time_spent_seconds", -1)):
        with pytest.raises(ValidationError) as excinfo:
            ev.validate_data(ev.LEARNER_STAT_UPSERTED, stat_data(**{field: value}))
        assert field in excinfo.value.messages


IN_PROGRESS = {"completion_status": "in_progress", "progress_percent": 40.0, "completed_at": None,
               "result": None, "score_percent": None,
               "provenance": {"completion_status": "derived", "progress_percent": "native"}}


def test_keep_completion_leaves_a_first_or_still_completed_record_alone():
    assert rules.keep_completion(None, IN_PROGRESS) == IN_PROGRESS
    memo = rules.completion_memo(OK_COMPLETED)
    assert rules.keep_completion(memo, {**OK_COMPLETED, "result": "passed"})["completed_at"] == OK_COMPLETED["completed_at"]


def test_keep_completion_never_lets_a_completed_attempt_regress():
    memo = rules.completion_memo({**OK_COMPLETED, "result": "passed", "score_percent": 88.0})
    kept = rules.keep_completion(memo, IN_PROGRESS)
    assert kept["completion_status"] == "completed" and kept["progress_percent"] == 100.0
    assert kept["completed_at"] == OK_COMPLETED["completed_at"] and kept["score_percent"] == 88.0
    assert kept["provenance"]["completion_status"] == "retained"
    assert kept["provenance"]["progress_percent"] == "retained"
    assert rules.check_stat({**kept, "first_activity_at": None, "last_activity_at": None}) == {}
    assert IN_PROGRESS["completion_status"] == "in_progress"  # pure: the input is untouched


def test_completion_memo_only_for_completed():
    assert rules.completion_memo(IN_PROGRESS) is None
    assert rules.completion_memo(OK_COMPLETED)["completed_at"] == OK_COMPLETED["completed_at"]


def test_naive_dates_are_rejected_never_a_crash():
    naive = {**OK_COMPLETED, "first_activity_at": "2026-01-01T00:00:00", "last_activity_at": "2025-01-01T00:00:00Z"}
    assert rules.last_activity_not_before_first(naive) == {}  # cannot compare: the field validator speaks
    from tests.hostspec.test_events import stat_data

    with pytest.raises(ValidationError) as excinfo:
        ev.validate_data(ev.LEARNER_STAT_UPSERTED, stat_data(first_activity_at="2026-01-01T00:00:00"))
    assert "first_activity_at" in excinfo.value.messages
