"""Paging helpers for provider fetch hooks: they turn an API's pages into the stream a fetch hook
yields (items, :class:`~hostspec.provider.ExpectedCount`, :class:`~hostspec.provider.PageEnd`),
so a provider writes only the call that fetches one page::

    def fetch_catalog(connection, context):
        with AcmeClient(connection.settings, calls=context.calls) as client:
            yield from offset_pages(lambda offset, limit: client.get("/courses", offset=offset, limit=limit),
                                    page_size=100, start=context.resume or 0)

A resumed run passes ``context.resume`` (the cursor of the last committed :class:`PageEnd`) as
``start``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

from .errors import ProviderSystemError
from .provider import ExpectedCount, PageEnd

_MISSING = object()


def _lookup(page: Mapping[str, Any], key: str) -> Any:
    """``page[key]``; a dotted key (``"paging.total"``) walks nested objects when no key of that
    exact name exists."""
    if key in page:
        return page[key]
    value: Any = page
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def offset_pages(fetch_page: Callable[[int, int], Mapping[str, Any]], *, page_size: int, items: str = "items",
                 total: str | None = "total", start: int = 0) -> Iterator[Any]:
    """Offset/limit paging with an optional total.

    Calls ``fetch_page(offset, page_size)`` (positionally: the offset, then the limit) and expects
    the decoded page: a mapping holding a list under ``items``, and the total under ``total`` when
    the API gives one (``None``: it never does). Both keys may be dotted paths into nested
    objects (``items="elements", total="paging.total"``).

    Yields :class:`~hostspec.provider.ExpectedCount` once, when the first page states the total;
    then each item; then :class:`~hostspec.provider.PageEnd` (``cursor`` = the next offset) after
    each page that is followed by another. Stops after an empty page, when the next offset reaches
    the total (the latest page's), or, when the API states no total, after a page with fewer than
    ``page_size`` items (with a total, a short page may just be the server capping the limit).

    :param start: the offset to begin at (``context.resume`` of a resumed run).
    :raise ProviderSystemError: a page that is not a mapping or has no list under ``items``.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be at least 1, not {page_size}")
    offset, known_total, first = start, None, True
    while True:
        page = fetch_page(offset, page_size)
        found = _lookup(page, items) if isinstance(page, Mapping) else _MISSING
        if not isinstance(found, list):
            raise ProviderSystemError(f"the page at offset {offset} has no list under {items!r}")
        stated = _count(_lookup(page, total)) if total is not None else None
        if stated is not None:
            if first:
                yield ExpectedCount(stated)
            known_total = stated
        first = False
        yield from found
        offset += len(found)
        if not found or (known_total is not None and offset >= known_total):
            return
        if known_total is None and len(found) < page_size:
            return      # no total to go by: a short page is the last (with a total, a server may cap the limit)
        yield PageEnd(cursor=offset)


def cursor_pages(fetch_page: Callable[[Any], tuple[Sequence[Any], Any]], *, start: Any = None) -> Iterator[Any]:
    """Cursor paging: ``fetch_page(cursor)`` returns ``(items, next_cursor)``, ``next_cursor`` None
    on the last page; the first call gets ``start`` (``context.resume`` of a resumed run).

    Yields each item, then :class:`~hostspec.provider.PageEnd` (``cursor`` = the next cursor)
    while there is a next page.

    :raise ProviderSystemError: a next cursor equal to the one just fetched (paging would loop).
    """
    cursor = start
    while True:
        found, nxt = fetch_page(cursor)
        yield from found
        if nxt is None:
            return
        if nxt == cursor:
            raise ProviderSystemError(f"the page at cursor {cursor!r:.80} names itself as the next page; "
                                      "stopping to avoid a loop")
        yield PageEnd(cursor=nxt)
        cursor = nxt


__all__ = ["cursor_pages", "offset_pages"]
