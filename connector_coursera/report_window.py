"""A sync's window as ``enrollmentReports`` bounds, and the rows that belong to it.

The host's window is half-open: an instant t is in it when ``since <= t < until`` (either end may be
open). Consecutive windows [a, b) and [b, c) then share no instant and leave none out, also for a row
exactly on b.

Coursera's bounds are whole milliseconds; its activity bounds are documented exclusive and its
enrollment bounds inclusive (see :mod:`connector_coursera.contract`). The request asks for a
millisecond more on each side than the window: ``after = ceil_ms(since) - 1`` and
``before = ceil_ms(until)``, which for an exclusive bound is the window exactly and for an inclusive
one a millisecond more. The rows are then kept by the window itself, so the result is the window
whichever way Coursera reads a bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from marshmallow import ValidationError

from . import contract
from .api_schemas import Epoch

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_INSTANT = Epoch(contract.REPORT_TIMESTAMP_UNIT_S)


@dataclass(frozen=True)
class Filter:
    """One pair of report bounds: the row field they apply to and the two query parameters."""

    field: str
    after: str
    before: str


ACTIVITY = Filter("lastActivityAt", contract.REPORTS_LAST_ACTIVITY_AFTER, contract.REPORTS_LAST_ACTIVITY_BEFORE)
ENROLLMENT = Filter("enrolledAt", contract.REPORTS_ENROLLED_AFTER, contract.REPORTS_ENROLLED_BEFORE)


def ceil_ms(moment: datetime) -> int:
    """The first whole epoch millisecond at or after ``moment`` (exact; naive means UTC)."""
    return -(-((_aware(moment) - _EPOCH) // _MICROSECOND) // 1000)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


class Window:
    """Rows whose ``by.field`` lies in [since, until)."""

    def __init__(self, by: Filter, since: datetime | None = None, until: datetime | None = None):
        self.by = by
        self.since = None if since is None else _aware(since)
        self.until = None if until is None else _aware(until)
        self._first_ms = None if since is None else ceil_ms(since)       # the first millisecond in
        self._end_ms = None if until is None else ceil_ms(until)         # the first millisecond out

    def __repr__(self) -> str:
        return f"Window({self.by.field}, {self.since}, {self.until})"

    @property
    def bounded(self) -> bool:
        return self.since is not None or self.until is not None

    def params(self) -> dict[str, int]:
        """The query parameters asking for (at least) the window's rows."""
        out = {}
        if self._first_ms is not None and self._first_ms > 0:     # from the epoch on: every row
            out[self.by.after] = self._first_ms - 1
        if self._end_ms is not None:
            out[self.by.before] = self._end_ms
        return out

    def holds(self, row: Any) -> bool:
        """Whether ``row`` is the window's. A row whose instant cannot be read is kept (the
        mapping rejects it, saying why); a row without the instant is not the window's."""
        if not self.bounded:
            return True
        value = row.get(self.by.field) if isinstance(row, dict) else None
        if value is None:
            return False
        if type(value) is int:           # the documented type: whole milliseconds
            return ((self._first_ms is None or value >= self._first_ms)
                    and (self._end_ms is None or value < self._end_ms))
        try:
            moment = _INSTANT.deserialize(value)
        except ValidationError:
            return True
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)
