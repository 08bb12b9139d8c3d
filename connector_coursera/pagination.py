"""Generators over Coursera's paged lists, with a guard against cursors that do not advance.

Coursera pages with ``start``/``limit`` and answers ``paging.next`` only while more rows exist.
``next`` arrives as a number, a numeric string, a URL carrying ``start=``, or (cursor mode) an
opaque token; all four are accepted. Paging stops only when ``next`` is absent.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from hostspec.kit import advancing_pages

from . import contract
from .errors import PaginationLoop, UnexpectedShape

Cursor = int | str
MAX_EMPTY_PAGES = 3
MAX_REFETCH = 2  # a page whose next cursor does not advance is fetched again this many times


def parse_next(value: Any) -> Cursor | None:
    """The next ``start`` from a ``paging.next`` value; None when there is no next page."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise UnexpectedShape(f"paging.next is a boolean ({value})")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        if value.isdigit():
            return int(value)
        if "://" in value or value.startswith("/"):
            starts = parse_qs(urlsplit(value).query).get(contract.PAGE_START)
            if not starts:
                raise UnexpectedShape("paging.next is a URL without a start parameter")
            return parse_next(starts[0])
        return value  # opaque cursor token
    raise UnexpectedShape(f"paging.next has unexpected type {type(value).__name__}")


def iter_pages(get_page: Callable[[Cursor], Any], what: str,
               start: Cursor = 0) -> Iterator[tuple[list[Any], Cursor | None]]:
    """Yield each page's ``elements`` with the next cursor, until ``paging.next`` is absent.

    :param get_page: fetches the page at a ``start`` value and returns the decoded body.
    :param start: where to begin (a cursor from an earlier run, to resume).
    :raise UnexpectedShape: a body without a list of elements or with a non-object paging.
    :raise PaginationLoop: ``next`` still repeats an earlier cursor or goes backwards after
        ``MAX_REFETCH`` fresh fetches of the page, or too many empty pages in a row still
        announce a next page.

    A page whose ``next`` does not advance is not yielded: it is fetched again (a gateway cache
    or a replica lagging behind answers such pages now and then), and paging goes on once it
    advances (:func:`hostspec.kit.paging.advancing_pages`).
    """
    def page(cursor: Cursor) -> tuple[list[Any], Cursor | None]:
        body = get_page(cursor)
        if not isinstance(body, dict):
            raise UnexpectedShape(f"{what}: page at start={cursor!r} is not a JSON object")
        elements = body.get("elements")
        paging = body.get("paging", {})
        if not isinstance(elements, list):
            raise UnexpectedShape(f"{what}: page at start={cursor!r} has no list of elements")
        if not isinstance(paging, dict):
            raise UnexpectedShape(f"{what}: page at start={cursor!r} has a non-object paging")
        return elements, parse_next(paging.get("next"))

    return advancing_pages(page, what, start=start, loop_error=PaginationLoop, max_refetch=MAX_REFETCH,
                           max_empty=MAX_EMPTY_PAGES, next_name="paging.next", start_name="start")
