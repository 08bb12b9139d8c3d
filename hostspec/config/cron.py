"""Five-field cron expressions (minute hour day-of-month month day-of-week) in a time zone.

Fields take ``*``, numbers, ranges ``a-b``, lists ``a,b`` and steps ``*/n`` or ``a-b/n``;
day-of-week is 0-6 from Sunday (7 is Sunday too). As in cron, when both day fields are
restricted a day matches either. Shortcuts: ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``.

:meth:`Cron.previous` answers the one question a scheduler asks: the latest slot at or before
a moment, computed day by day (never minute by minute).
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MACROS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
           "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}
_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_NAMES = ["minute", "hour", "day of month", "month", "day of week"]


class CronError(ValueError):
    pass


def _field(text: str, index: int) -> frozenset[int]:
    low, high = _BOUNDS[index]
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                start, end = (int(x) for x in body.split("-", 1))
            else:
                start = end = int(body)
        except ValueError:
            raise CronError(f"{_NAMES[index]}: {part!r} is not a number, range or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise CronError(f"{_NAMES[index]}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


class Cron:
    def __init__(self, expression: str, tz: str = "UTC"):
        self.expression = expression.strip()
        fields = _MACROS.get(self.expression, self.expression).split()
        if len(fields) != 5:
            raise CronError(f"{expression!r}: expected 5 fields (minute hour day month weekday) or a @shortcut")
        self.minutes, self.hours, self.days, self.months, self.weekdays = (
            _field(f, i) for i, f in enumerate(fields))
        self._any_day, self._any_weekday = fields[2] == "*", fields[4] == "*"
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"unknown time zone {tz!r}") from None
        self._times = sorted(time(h, m) for h in self.hours for m in self.minutes)

    def __repr__(self) -> str:
        return f"Cron({self.expression!r}, tz={self.tz.key!r})"

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, (day.isoweekday() % 7) in self.weekdays
        if self._any_day or self._any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next(self, moment: datetime) -> datetime | None:
        """The earliest slot after ``moment`` (aware), in UTC; None if none within 400 days."""
        local = moment.astimezone(self.tz)
        for ahead in range(0, 400):
            day = local.date() + timedelta(days=ahead)
            if not self._day_matches(day):
                continue
            for at in self._times:
                slot = datetime.combine(day, at, tzinfo=self.tz)
                if slot > local:
                    return slot.astimezone(timezone.utc)
        return None

    def previous(self, moment: datetime) -> datetime | None:
        """The latest slot at or before ``moment`` (aware), in UTC; None if none within 400 days."""
        local = moment.astimezone(self.tz)
        for back in range(0, 400):
            day = local.date() - timedelta(days=back)
            if not self._day_matches(day):
                continue
            for at in reversed(self._times):
                slot = datetime.combine(day, at, tzinfo=self.tz)
                if slot <= local:
                    return slot.astimezone(timezone.utc)
        return None
