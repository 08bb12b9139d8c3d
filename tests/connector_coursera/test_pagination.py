"""Paging: every form of ``next`` is accepted; a page whose cursor does not advance is fetched
again, and a cursor that keeps not advancing stops the fetch."""
from __future__ import annotations

import pytest

from connector_coursera.errors import PaginationLoop, UnexpectedShape
from connector_coursera.pagination import iter_pages, parse_next


@pytest.mark.parametrize("value, expected", [
    (None, None), ("", None), (3, 3), ("100", 100), (200.0, 200),
    ("https://api.coursera.com/ent/api/x?start=300&limit=100", 300), ("b64cursor==", "b64cursor=="),
])
def test_parse_next_forms(value, expected):
    assert parse_next(value) == expected


@pytest.mark.parametrize("value", [True, {"a": 1}, "https://x.test/no-start"])
def test_parse_next_refuses_nonsense(value):
    with pytest.raises(UnexpectedShape):
        parse_next(value)


def pages(bodies):
    calls = []

    def get(start):
        calls.append(start)
        return bodies[len(calls) - 1]

    return get, calls


def test_pages_until_next_is_absent():
    get, calls = pages([{"elements": [1, 2], "paging": {"next": "2", "total": 5}},
                        {"elements": [3, 4], "paging": {"next": 4, "total": 5}},
                        {"elements": [5], "paging": {"total": 5}}])
    pages_seen = list(iter_pages(get, "t"))
    assert [x for page, _ in pages_seen for x in page] == [1, 2, 3, 4, 5]
    assert [nxt for _, nxt in pages_seen] == [2, 4, None]
    assert calls == [0, 2, 4]


def test_resume_starts_at_the_given_cursor():
    get, calls = pages([{"elements": [5], "paging": {"total": 5}}])
    assert list(iter_pages(get, "t", start=4)) == [([5], None)]
    assert calls == [4]


def test_short_page_with_next_keeps_going():
    get, _ = pages([{"elements": [1], "paging": {"next": "2"}}, {"elements": [2], "paging": {}}])
    assert [x for page, _ in iter_pages(get, "t") for x in page] == [1, 2]


@pytest.mark.parametrize("bodies", [
    [{"elements": [1], "paging": {"next": "0"}}] * 3,
    [{"elements": [1], "paging": {"next": "5"}}] + [{"elements": [2], "paging": {"next": "3"}}] * 3,
    [{"elements": [1], "paging": {"next": "c1"}}] + [{"elements": [2], "paging": {"next": "c1"}}] * 3,
    [{"elements": [], "paging": {"next": str(n)}} for n in range(1, 10)],
])
def test_loop_guard(bodies):
    get, _ = pages(bodies)
    with pytest.raises(PaginationLoop):
        list(iter_pages(get, "t"))


def test_a_page_repeating_its_cursor_once_is_fetched_again_not_yielded_twice():
    get, calls = pages([{"elements": [1, 2], "paging": {"next": "2"}},
                        {"elements": [3, 4], "paging": {"next": "2"}},      # stale answer
                        {"elements": [3, 4], "paging": {"next": "4"}},
                        {"elements": [5], "paging": {}}])
    assert [x for page, _ in iter_pages(get, "t") for x in page] == [1, 2, 3, 4, 5]
    assert calls == [0, 2, 2, 4]


@pytest.mark.parametrize("body", [{"elements": {"a": 1}}, [], {"elements": [], "paging": []}])
def test_wrong_shapes(body):
    get, _ = pages([body])
    with pytest.raises(UnexpectedShape):
        list(iter_pages(get, "t"))
