"""Which report windows a progress fetch asks LinkedIn for, on a grid of whole UTC days.

A report summarizes its window (contract REPORTS), so lifetime totals are sums of windows that
never overlap (lifetime.py). Three kinds of window:

* ``day``: one UTC day. Recent days (``REPORT_SETTLE_DAYS`` and after), and every day after the
  connection's *horizon*, are read day by day: the same day read again (a retry, a replay, the
  next run's look-back) replaces its value instead of adding to it.
* ``history``: the first sync reads what lies before the recent days as one window (a few calls
  instead of one per day); each learner's value becomes its *base*. Its end is the horizon.
* ``listing``: a range before the horizon asked again (a full sync, a replay). Those days are
  already counted; the rows name the learners to send again, with totals from memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from . import contract

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Window:
    start_ms: int
    days: int
    kind: str                   # day | history | listing

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * DAY_MS


def day_floor(moment: datetime) -> int:
    ms = int(moment.timestamp() * 1000)
    return ms - ms % DAY_MS


def day_ceil(moment: datetime) -> int:
    ms = int(moment.timestamp() * 1000)
    return -(-ms // DAY_MS) * DAY_MS


def plan(since: datetime | None, until: datetime | None, now: datetime, first_sync_days: int,
         horizon_ms: int | None) -> tuple[list[Window], int | None]:
    """The windows covering ``since``..``until`` (``None``: a first sync's reach .. now), oldest
    first, and the connection's horizon once they are read (unchanged unless a first sync sets it)."""
    today_end = day_floor(now) + DAY_MS
    start = day_floor(since) if since else day_floor(now - timedelta(days=first_sync_days))
    end = min(day_ceil(until), today_end) if until else today_end
    recent = day_floor(now) - contract.REPORT_SETTLE_DAYS * DAY_MS
    if horizon_ms is None and since is None:      # a first sync: history up to the recent days
        cut = max(start, min(recent, end))
        return _spans(start, cut, "history") + _days(cut, end), cut
    if horizon_ms is None:                        # no memory yet, a bounded ask: day by day
        return _days(start, end), None
    return _spans(start, min(end, horizon_ms), "listing") + _days(max(start, horizon_ms), end), horizon_ms


def _spans(start: int, end: int, kind: str) -> list[Window]:
    out, step = [], contract.REPORT_WINDOW_MAX_DAYS * DAY_MS
    while start < end:
        out.append(Window(start, (min(end, start + step) - start) // DAY_MS, kind))
        start += step
    return out


def _days(start: int, end: int) -> list[Window]:
    return [Window(ms, 1, "day") for ms in range(start, end, DAY_MS)]


def as_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)
