"""Paging helpers for provider fetch hooks: they turn an API's pages into the stream a fetch hook
yields (items, :class:`~hostspec.provider.ExpectedCount`, :class:`~hostspec.provider.PageEnd`,
:class:`~hostspec.provider.ListingTotal`),
so a provider writes only the call that fetches one page::

    def fetch_catalog(connection, context):
        with AcmeClient(connection.settings, calls=context.calls) as client:
            yield from offset_pages(lambda offset, limit: client.get("/courses", offset=offset, limit=limit),
                                    page_size=100, start=context.resume or 0)

A resumed run passes ``context.resume`` (the cursor of the last committed :class:`PageEnd`) as
``start``.

When the API's answer carries a count, each helper yields a :class:`ListingTotal` (the last
page's count) after the last item: from ``fetch_catalog`` it arms the host's removal guard (a
listing cut short removes nothing); from ``fetch_progress`` the host ignores it.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

from hostspec.errors import ProviderSystemError
from hostspec.provider import ExpectedCount, ListingTotal, PageEnd

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


def _read(page: Any, items: str, total: str | None, what: str) -> tuple[list[Any], int | None]:
    """A page's list under ``items`` and its count under ``total`` (None: none stated)."""
    found = _lookup(page, items) if isinstance(page, Mapping) else _MISSING
    if not isinstance(found, list):
        raise ProviderSystemError(f"{what} has no list under {items!r}")
    return found, _count(_lookup(page, total)) if total is not None and isinstance(page, Mapping) else None


def offset_pages(fetch_page: Callable[[int, int], Mapping[str, Any]], *, page_size: int, items: str = "items",
                 total: str | None = "total", start: int = 0) -> Iterator[Any]:
    """Offset/limit paging with an optional total.

    Calls ``fetch_page(offset, page_size)`` (positionally: the offset, then the limit) and expects
    the decoded page: a mapping holding a list under ``items``, and the total under ``total`` when
    the API gives one (``None``: it never does). Both keys may be dotted paths into nested
    objects (``items="elements", total="paging.total"``).

    Yields :class:`~hostspec.provider.ExpectedCount` once, when the first page states the total;
    then each item; then :class:`~hostspec.provider.PageEnd` (``cursor`` = the next offset) after
    each page that is followed by another; after the last page, :class:`ListingTotal` (the
    latest stated total) when the pages state one. Stops after an empty page, when the next offset reaches
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
        found, stated = _read(page, items, total, f"the page at offset {offset}")
        if first and stated is not None:
            yield ExpectedCount(stated)
        known_total, first = stated if stated is not None else known_total, False
        yield from found
        offset += len(found)
        if not found or (known_total is not None and offset >= known_total):
            break
        if known_total is None and len(found) < page_size:
            break       # no total to go by: a short page is the last (with a total, a server may cap the limit)
        yield PageEnd(cursor=offset)
    if known_total is not None:
        yield ListingTotal(known_total)


def cursor_pages(fetch_page: Callable[[Any], tuple[Any, ...]], *, start: Any = None) -> Iterator[Any]:
    """Cursor paging: ``fetch_page(cursor)`` returns ``(items, next_cursor)``, or
    ``(items, next_cursor, total)`` when the answer states a count (``total`` None when it does
    not); ``next_cursor`` is None on the last page; the first call gets ``start``
    (``context.resume`` of a resumed run).

    Yields each item, then :class:`~hostspec.provider.PageEnd` (``cursor`` = the next cursor)
    while there is a next page; after the last page, :class:`ListingTotal` (the latest stated
    total) when a page stated one.

    :raise ProviderSystemError: a next cursor equal to the one just fetched (paging would loop).
    """
    cursor, known_total = start, None
    while True:
        answer = fetch_page(cursor)
        found, nxt = answer[0], answer[1]
        if len(answer) > 2 and _count(answer[2]) is not None:
            known_total = answer[2]
        yield from found
        if nxt is None:
            if known_total is not None:
                yield ListingTotal(known_total)
            return
        if nxt == cursor:
            raise ProviderSystemError(f"the page at cursor {cursor!r:.80} names itself as the next page; "
                                      "stopping to avoid a loop")
        yield PageEnd(cursor=nxt)
        cursor = nxt


def _root(path: str) -> str:
    """The first segment of a URL path, as a prefix: ``/api-2.0/orgs/1/courses`` → ``/api-2.0/``."""
    first = path.lstrip("/").split("/", 1)[0]
    return f"/{first}/" if first else "/"


def next_link_pages(fetch_page: Callable[[str], Mapping[str, Any]], first_url: str, *, items: str = "results",
                    next: str = "next", total: str | None = "count", start: str | None = None,
                    root: str | None = None) -> Iterator[Any]:
    """Paging by absolute ``next`` links (page numbers or cursors the API writes into the URL).

    Calls ``fetch_page(url)`` with ``first_url`` (or ``start``, the ``context.resume`` of a
    resumed run), then with each page's ``next`` URL until a page has none; expects the decoded
    page: a list under ``items``, the next URL under ``next``, the count under ``total`` (dotted
    paths allowed; ``total=None``: the API states none).

    A ``next`` URL (and ``start``) must keep the scheme and host of ``first_url`` and stay under
    its path ``root`` (default: its first path segment, ``/api-2.0/``), so that the credentials
    the caller sends never follow a link elsewhere.

    Yields :class:`ExpectedCount` when the first page states a count, each item,
    :class:`PageEnd` (``cursor`` = the next URL) between pages, and :class:`ListingTotal` (the
    latest count) after the last page when the pages state one.

    :raise ProviderSystemError: a page without its list, a ``next`` that is not a string, leads
        elsewhere (another scheme, host or path root) or names the page just fetched.
    """
    base = urlsplit(first_url)
    prefix = root if root is not None else _root(base.path)

    def allowed(url: str) -> str:
        link = urlsplit(url)
        if (link.scheme, link.netloc) != (base.scheme, base.netloc) or not (link.path + "/").startswith(prefix):
            raise ProviderSystemError(f"a next link leads elsewhere ({link.scheme}://{link.netloc}{link.path[:60]}), "
                                      f"not under {base.scheme}://{base.netloc}{prefix}: refusing to follow it")
        return url

    url = allowed(start) if isinstance(start, str) else first_url
    known_total, first = None, True
    while True:
        page = fetch_page(url)
        found, stated = _read(page, items, total, "a page")
        if first and stated is not None:
            yield ExpectedCount(stated)
        known_total, first = stated if stated is not None else known_total, False
        yield from found
        nxt = _lookup(page, next)
        if nxt is None or nxt is _MISSING or nxt == "":
            break
        if not isinstance(nxt, str):
            raise ProviderSystemError(f"a page's {next!r} is not a URL")
        if allowed(nxt) == url:
            raise ProviderSystemError("a page names itself as the next page; stopping to avoid a loop")
        yield PageEnd(cursor=nxt)
        url = nxt
    if known_total is not None:
        yield ListingTotal(known_total)


def advancing_pages(fetch_page: Callable[[Any], tuple[list[Any], Any]], what: str, *, start: Any = 0,
                    loop_error: Callable[[str], Exception] = ProviderSystemError, max_refetch: int = 2,
                    max_empty: int = 3, next_name: str = "next",
                    start_name: str = "cursor") -> Iterator[tuple[list[Any], Any]]:
    """Each page's items with the next cursor, until a page names none; ``fetch_page(cursor)``
    returns ``(items, next cursor or None)``; the first call gets ``start``.

    A page whose next cursor does not advance (a cursor seen before, or a number not above the
    one just fetched) is not yielded: it is fetched again (a gateway cache or a replica lagging
    behind answers such pages now and then), and paging goes on once it advances.

    :raise loop_error: the next cursor still does not advance after ``max_refetch`` fresh
        fetches, or ``max_empty`` empty pages in a row still announce a next page. The message
        names the cursors as ``next_name`` and ``start_name``.
    """
    seen: set[Any] = {start}
    empty_in_a_row = 0
    refetches = 0
    while True:
        items, nxt = fetch_page(start)
        stuck = nxt is not None and (nxt in seen or (isinstance(nxt, int) and isinstance(start, int) and nxt <= start))
        if stuck and refetches < max_refetch:
            refetches += 1
            continue
        if stuck:
            raise loop_error(f"{what}: {next_name}={nxt!r} after {start_name}={start!r} does not advance "
                             f"after {max_refetch} fresh fetches; stopping to avoid a loop")
        refetches = 0
        yield items, nxt
        if nxt is None:
            return
        empty_in_a_row = empty_in_a_row + 1 if not items else 0
        if empty_in_a_row >= max_empty:
            raise loop_error(f"{what}: {empty_in_a_row} empty pages in a row still announce a next page "
                             f"({next_name.rsplit('.', 1)[-1]}={nxt!r}); stopping to avoid a loop")
        seen.add(nxt)
        start = nxt


def _origin(url: str) -> str:
    """A URL's scheme and host, lowercased (``https://api.example.com``); "" for a relative URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def linked_pages(fetch_page: Callable[[str], tuple[list[Any], str | None]], first: str, *, home: str,
                 refuse: Callable[[str], Exception] = ProviderSystemError) -> Iterator[Any]:
    """Every item of pages chained by next links (a ``Link: <…>; rel="next"`` header, say):
    ``fetch_page(url)`` returns the page's items and the absolute URL of the next page (None on
    the last); the first call gets ``first``.

    A next link is followed only on the scheme and host of ``home`` (the credentials the caller
    sends never go anywhere else) and never to a page already read.

    :raise refuse: (called with the reason) a next link elsewhere or to a page already read.
    """
    url: str | None = first
    seen: set[str] = set()
    while url:
        items, url = fetch_page(url)
        yield from items
        if url in seen:
            raise refuse("the next link repeats a page already read")
        if url:
            if _origin(url) != _origin(home):
                raise refuse(f"the next link points to another host ({_origin(url)}); not followed with the token")
            seen.add(url)


__all__ = ["advancing_pages", "cursor_pages", "linked_pages", "next_link_pages", "offset_pages"]
