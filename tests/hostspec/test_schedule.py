"""Which sync requests are due: one per job and slot, a missed slot caught up once."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from hostspec.errors import ConfigError
from hostspec.schedule import due, jobs_of

ENTRY = {"tenant": "acme", "provider": "coursera", "group_id": "g"}


def at(day, hour=12, minute=0):
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


def test_defaults_are_daily_catalog_then_statistics_on_cet():
    jobs = jobs_of("acme", ENTRY)
    assert [(j.name, j.scope, j.mode, j.cron.expression, j.cron.tz.key) for j in jobs] == [
        ("catalog", "catalog", "incremental", "45 8 * * *", "Europe/Paris"),
        ("progress", "progress", "incremental", "0 9 * * *", "Europe/Paris")]


def test_custom_schedule_weekly_full_and_jobs_off():
    jobs = jobs_of("acme", {**ENTRY, "schedule": {"timezone": "UTC", "catalog": "off", "full": "0 6 * * 0"}})
    assert [(j.name, j.mode) for j in jobs] == [("progress", "incremental"), ("full", "full")]
    assert jobs_of("acme", {**ENTRY, "enabled": False}) == []


@pytest.mark.parametrize("schedule, message", [
    ({"catalog": "every day"}, "schedule.catalog"), ({"timezone": "Nowhere/Land"}, "time zone"),
    ({"weekly": "0 0 * * 0"}, "unknown schedule keys weekly")])
def test_bad_schedules_name_the_connection_and_key(schedule, message):
    with pytest.raises(ConfigError, match=message) as info:
        jobs_of("acme", {**ENTRY, "schedule": schedule})
    assert "'acme'" in str(info.value)


def test_one_request_per_slot_and_deterministic_ids():
    jobs = jobs_of("acme", ENTRY)
    first = due(jobs, {}, at(28))
    assert [(s.job.name, s.at.isoformat()) for s in first] == [
        ("catalog", "2026-11-28T07:45:00+00:00"), ("progress", "2026-11-28T08:00:00+00:00")]
    last = {s.job.key: s.at.isoformat() for s in first}
    assert due(jobs, last, at(28, 20)) == []                           # same slots: nothing more today
    assert [s.request_id for s in due(jobs, {}, at(28, 13))] == [s.request_id for s in first]
    assert len({s.request_id for s in first}) == 2


def test_a_scheduler_down_for_days_catches_up_once():
    jobs = jobs_of("acme", ENTRY)
    last = {s.job.key: s.at.isoformat() for s in due(jobs, {}, at(24))}
    after_outage = due(jobs, last, at(28))
    assert [s.at.date().day for s in after_outage] == [28, 28]        # the latest slots, not four days' worth
    assert due(jobs, last, at(28, 7, 50)) != [] and len(due(jobs, last, at(28, 7, 50))) == 2
    assert [s.at for s in due(jobs, last, at(24) + timedelta(hours=1))] == []
