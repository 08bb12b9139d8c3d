"""Cron expressions: parsing and the latest slot at or before a moment."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hostspec.config.cron import Cron, CronError


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_daily_slot_in_a_time_zone():
    cron = Cron("45 8 * * *", "Europe/Paris")               # 07:45 UTC in winter
    assert cron.previous(utc(2026, 11, 28, 7, 44)) == utc(2026, 11, 27, 7, 45)
    assert cron.previous(utc(2026, 11, 28, 7, 45)) == utc(2026, 11, 28, 7, 45)
    assert Cron("45 8 * * *", "Europe/Paris").previous(utc(2026, 7, 1, 12)) == utc(2026, 7, 1, 6, 45)  # summer


def test_lists_ranges_steps_and_macros():
    assert Cron("*/15 9-10 * * 1-5").previous(utc(2026, 11, 28, 12)) == utc(2026, 11, 27, 10, 45)  # Sat → Fri
    assert Cron("0 6 * * 0").previous(utc(2026, 11, 28, 12)) == utc(2026, 11, 22, 6)                # Sunday
    assert Cron("0 6 * * 7").previous(utc(2026, 11, 28, 12)) == utc(2026, 11, 22, 6)                # 7 is Sunday
    assert Cron("@daily").previous(utc(2026, 11, 28, 12)) == utc(2026, 11, 28)
    assert Cron("0 0 1,15 * *").previous(utc(2026, 11, 28)) == utc(2026, 11, 15)


def test_restricted_day_of_month_and_week_match_either():
    # the 1st of the month OR any Monday
    assert Cron("0 0 1 * 1").previous(utc(2026, 11, 28)) == utc(2026, 11, 23)


@pytest.mark.parametrize("expression, message", [
    ("* * * *", "5 fields"), ("61 * * * *", "minute"), ("* 24 * * *", "hour"), ("* * 0 * *", "day of month"),
    ("x * * * *", "minute"), ("*/0 * * * *", "minute")])
def test_bad_expressions_say_which_field(expression, message):
    with pytest.raises(CronError, match=message):
        Cron(expression)


def test_unknown_time_zone():
    with pytest.raises(CronError, match="time zone"):
        Cron("0 0 * * *", "Mars/Olympus")
