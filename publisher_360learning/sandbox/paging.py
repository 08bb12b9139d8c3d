"""The 360Learning sandbox's pagination: pages of a list endpoint, a ``next`` cursor carrying the
filters and the offset, ``Link`` headers in the configured form, and the API's bracket filters.

:class:`Paging` is mixed into :class:`publisher_360learning.sandbox.server.Learning360Sandbox`."""
from __future__ import annotations

import base64
import json
import re
import time
from typing import Any, Callable

from .errors import Problem

PAGE_SIZES = {"groups": 500, "users": 500, "integrations": 100, "operations": 20, "courses": 500,
              "course_stats": 500, "tags": 5000, "course_tags": 500, "catalog": 10_000}


class Paging:
    """One page of a list endpoint and its next link (``page_size``, ``cursor_ttl_s``, ``link_style``)."""

    def page(self, route: str, path: str, query: dict[str, list[str]],
             items_for: Callable[[list[tuple[str, str, Any]]], list[Any]]) -> tuple[list[Any], dict[str, str]]:
        """One page of a list endpoint; the cursor carries the filters and the offset."""
        if "next" in query:
            try:
                cursor = json.loads(base64.urlsafe_b64decode(query["next"][-1] + "=" * (-len(query["next"][-1]) % 4)))
                filters, offset = [tuple(f) for f in cursor["f"]], int(cursor["o"])
                valid = cursor["r"] == route and time.time() - float(cursor["t"]) <= self.cursor_ttl_s
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                raise Problem(400, "invalidCursor", "The next cursor is invalid or expired")
        else:
            filters, offset = parse_filters(query), 0
        items = items_for(filters)  # type: ignore[arg-type]
        size = self.page_size or PAGE_SIZES[route]
        chunk = items[offset:offset + size]
        headers = {}
        if offset + size < len(items):
            token = base64.urlsafe_b64encode(json.dumps(
                {"r": route, "o": offset + size, "f": filters, "t": time.time()}).encode()).decode().rstrip("=")
            headers["Link"] = f'<{self.next_link(path, token)}>; rel="next"'
        return chunk, headers

    def next_link(self, path: str, token: str) -> str:
        """The next page's URL as ``link_style`` writes it: ``absolute`` (``http://host/api/v2/x?next=…``),
        ``path`` (``/api/v2/x?next=…``), ``rootless`` (``api/v2/x?next=…``) or ``relative`` to the
        page (``x?next=…``, like the OpenAPI's example ``<my/resource/url>``). [sandbox] which form
        360Learning sends is not documented: the guide's URL may be absolute or not."""
        query = f"?next={token}"
        return {"absolute": self.url + path, "path": path, "rootless": path.lstrip("/"),
                "relative": path.rsplit("/", 1)[-1]}[self.link_style] + query



LINK_STYLES = ("absolute", "path", "rootless", "relative")


def checked_link_style(style: Any) -> str:
    if style not in LINK_STYLES:
        raise ValueError(f"link style must be one of {', '.join(LINK_STYLES)}")
    return str(style)


def parse_filters(query: dict[str, list[str]]) -> list[tuple[str, str, Any]]:
    """LHS bracket filters: ``mail[eq]=a``, ``status[ne]=x``, ``courseId[in][0]=…``, ``createdAt[gte]=…``."""
    filters: dict[tuple[str, str], Any] = {}
    for key, values in query.items():
        m = re.fullmatch(r"(\w+)\[(eq|ne|in|nin|lt|gte)\](?:\[\d+\])?", key)
        if not m:
            continue
        field, op = m.groups()
        if op in ("in", "nin"):
            filters.setdefault((field, op), []).extend(values)
        else:
            filters[(field, op)] = values[-1]
    return [(f, op, v) for (f, op), v in sorted(filters.items())]


def matches(item: dict[str, Any], filters: list[tuple[str, str, Any]]) -> bool:
    for field, op, value in filters:
        have = item.get(field)
        if field == "mail" and isinstance(have, str):
            have = have.casefold()
            value = [v.casefold() for v in value] if isinstance(value, list) else str(value).casefold()
        ok = {"eq": lambda: have == value, "ne": lambda: have != value, "in": lambda: have in value,
              "nin": lambda: have not in value, "lt": lambda: have is not None and str(have) < value,
              "gte": lambda: have is not None and str(have) >= value}[op]()
        if not ok:
            return False
    return True
