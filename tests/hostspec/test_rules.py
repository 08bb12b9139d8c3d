"""Each learning rule, with a record that satisfies it and one that breaks it."""
from __future__ import annotations

import pytest

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


def test_every_rule_is_registered():
    public = [getattr(rules, n) for n in dir(rules)
              if callable(getattr(rules, n)) and getattr(getattr(rules, n), "__module__", "") == rules.__name__
              and not n.startswith("_") and n != "check_stat"]
    assert set(public) == set(rules.RULES)
