"""Consecutive date-range windows [a, b), [b, c) over the sandbox (real HTTP): every report row is in
exactly one of them, also a row exactly on a border (Coursera's activity bounds are exclusive)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector_coursera import plugin
from connector_coursera.report_window import ACTIVITY, ENROLLMENT, Window, ceil_ms
from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.provider import SyncContext
from tests.conftest import sandbox_connection

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sandbox():
    with CourseraSandbox(OrgSpec(contents=30, learners=20, enrollments=90)) as sb:
        yield sb


@pytest.fixture(scope="module")
def connection(sandbox, plugins):
    return sandbox_connection(sandbox, plugins)


@pytest.fixture(scope="module")
def rows(connection):
    """Every row a sync without a window lists, by id, with the instant that places it in a window."""
    listed = fetch(connection, None, None)
    assert len(listed) == len(set(listed)) > 0
    return {rid: (r["lastActivityAt"] if r.get("lastActivityAt") is not None else r["enrolledAt"])
            for rid, r in listed.items()}


def fetch(connection, since, until) -> dict[str, dict]:
    context = SyncContext(run_id="r", request_id="q", scope="progress", now=NOW)
    out: dict[str, dict] = {}
    for item in plugin.fetch_progress(connection=connection, context=context, since=since, until=until):
        if isinstance(item, dict):
            assert item["id"] not in out, f"{item['id']} listed twice by one window"
            out[item["id"]] = item
    return out


def at_ms(ms: int, micros: int = 0) -> datetime:
    return EPOCH + timedelta(milliseconds=ms, microseconds=micros)


def windows_of(borders: list[datetime]) -> list[tuple[datetime | None, datetime | None]]:
    ends = [None, *borders, None]
    return list(zip(ends, ends[1:]))


def assert_each_row_in_exactly_one(connection, rows, borders):
    seen: dict[str, int] = {}
    for since, until in windows_of(borders):
        for rid in fetch(connection, since, until):
            seen[rid] = seen.get(rid, 0) + 1
    missing = {rid: ms for rid, ms in rows.items() if rid not in seen}
    twice = {rid: rows.get(rid) for rid, n in seen.items() if n > 1}
    assert not missing and not twice and set(seen) == set(rows), (borders, missing, twice)


def test_a_row_exactly_on_a_border_is_in_the_later_window_only(sandbox, connection, rows):
    quiet = next(rid for rid in rows if sandbox.org.row(_index(sandbox, rid)).get("lastActivityAt") is None)
    active = next(rid for rid in rows if sandbox.org.row(_index(sandbox, rid)).get("lastActivityAt") is not None)
    for rid in (active, quiet):
        border = at_ms(rows[rid])
        assert rid not in fetch(connection, border - timedelta(days=1), border)
        assert rid in fetch(connection, border, border + timedelta(days=1))
    assert_each_row_in_exactly_one(connection, rows, sorted({at_ms(rows[active]), at_ms(rows[quiet])}))


@st.composite
def borders(draw, instants: list[int]):
    """1-4 strictly increasing borders: row instants (exact, or a millisecond either side) and
    arbitrary instants with microseconds around the data."""
    lo, hi = min(instants) - 86_400_000, max(instants) + 86_400_000
    on_rows = st.tuples(st.sampled_from(instants), st.sampled_from([-1, 0, 0, 1])).map(lambda t: at_ms(t[0] + t[1]))
    anywhere = st.tuples(st.integers(lo, hi), st.integers(0, 999)).map(lambda t: at_ms(*t))
    return sorted(set(draw(st.lists(st.one_of(on_rows, anywhere), min_size=1, max_size=4))))


def test_consecutive_windows_partition_the_rows_over_random_borders(connection, rows):
    @settings(max_examples=40, deadline=None, database=None)
    @given(borders(sorted(set(rows.values()))))
    def check(drawn):
        assert_each_row_in_exactly_one(connection, rows, drawn)

    check()


@pytest.mark.parametrize("by", [ACTIVITY, ENROLLMENT])
def test_the_request_holds_the_window_whichever_way_a_bound_reads(by):
    since, until = at_ms(1_757_000_000_000), at_ms(1_757_000_100_000, 500)    # until: 0.5 ms past a millisecond
    params = Window(by, since, until).params()
    assert params == {by.after: 1_756_999_999_999, by.before: 1_757_000_100_001}
    window = Window(by, since, until)
    on = {by.field: 1_757_000_000_000}
    assert window.holds(on) and window.holds({by.field: "1757000000000"})
    assert window.holds({by.field: "2025-09-04T15:33:20Z"})                  # the same instant, ISO
    assert not window.holds({by.field: 1_756_999_999_999}) and not window.holds({by.field: None})
    assert window.holds({by.field: 1_757_000_100_000}) and not window.holds({by.field: 1_757_000_100_001})
    assert ceil_ms(at_ms(5, 1)) == 6 and ceil_ms(at_ms(5)) == 5


def _index(sb, rid: str) -> int:
    return next(i for i in sb.report_rows() if sb.org.row(i)["id"] == rid)
