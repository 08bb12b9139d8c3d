"""Coalescing: the requests of a connection queued behind a running one become one run.

A scheduler, a replay and an impatient operator may all ask for the same connection while it is
busy. Running their requests one after the other repeats the same provider calls; running them
as one request covering their union does the work once (Kafka Connect's and Kafka Streams'
answer to a backlog of identical work is the same: the latest covers the rest).

:func:`merge` is the pure rule. Two requests merge when one request can say exactly their
union, without turning cheap work into an expensive one, and without coupling work that would
have succeeded alone to work that fails (the engine runs each scope even when another failed,
and each request's final status follows its own scopes):

* the same connection, provider, ``dry_run`` and ``allow_mass_removal``;
* scopes: the union (``catalog`` + ``progress`` = ``all``);
* mode: the same, unless one request covers the other whole (a full sync of everything covers
  an incremental one; an incremental sync never becomes a full re-read because a replay of two
  courses waits behind it);
* replay filters (``learners``, ``courses``, both applied together): the union when it is one
  such filter (one dimension equal, or one filter containing the other). An incremental catalog
  lists only the changes unless the request names courses, so with a catalog scope a filtered
  and an unfiltered incremental request never merge;
* date ranges: only with date ranges (a request without one reads what its watermark or the
  provider's first-sync window says, not "everything"), and only when they overlap or touch,
  into the range that is exactly their union; an open start joins only another open start.

The merged request keeps the first request's id; :attr:`SyncRequest.merged` names the others
(id, origin and the scope each asked for), each of which gets its own final status and
request-done marker from the same run.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import Optional

from hostspec.requests import SyncRequest

Names = Optional[frozenset[str]]          # None: every learner (or course)
_SCOPES = {frozenset({"catalog"}): "catalog", frozenset({"progress"}): "progress",
           frozenset({"catalog", "progress"}): "all"}


def merge(first: SyncRequest, later: SyncRequest) -> SyncRequest | None:
    """One request doing the work of both, or None when no single request can say their union."""
    if ((first.connection, first.provider, first.dry_run, first.allow_mass_removal)
            != (later.connection, later.provider, later.dry_run, later.allow_mass_removal)):
        return None
    if _ranged(first) != _ranged(later):
        return None
    if covers(first, later):
        merged = first
    elif covers(later, first):
        merged = replace(later, request_id=first.request_id, origin=first.origin, requested_by=first.requested_by)
    else:
        if first.mode != later.mode:
            return None
        window = _window_union(first, later)
        names = _names_union((_names(first.learners), _names(first.courses)),
                             (_names(later.learners), _names(later.courses)))
        if window is None or names is None:
            return None
        (since, until), (learners, courses) = window, names
        merged = replace(first, scope=_SCOPES[frozenset(first.scopes) | frozenset(later.scopes)],
                         since=since, until=until, learners=_tuple(learners), courses=_tuple(courses))
        if not (covers(merged, first) and covers(merged, later)):
            return None     # e.g. a filtered and an unfiltered incremental catalog listing
    return replace(merged, asked_scope=first.asked_scope or first.scope,
                   merged=(*first.merged, (later.request_id, later.origin, later.asked_scope or later.scope),
                           *later.merged))


def covers(a: SyncRequest, b: SyncRequest) -> bool:
    """Whether running ``a`` does all the work ``b`` asks for (scopes, mode, range and filters)."""
    if not set(a.scopes) >= set(b.scopes):
        return False
    if a.mode != b.mode and not (a.mode == "full" and not _ranged(a)):
        return False
    if _ranged(a) != _ranged(b) or not _lists_catalog_for(a, b):
        return False
    if _ranged(a) and not _range_contains(a, b):
        return False
    return (_contains(_names(a.learners), _names(b.learners))
            and _contains(_names(a.courses), _names(b.courses)))


def _ranged(r: SyncRequest) -> bool:
    return bool(r.since or r.until)


def _complete_listing(r: SyncRequest) -> bool:
    """A catalog run lists every item when full or filtered by course, else only the changes."""
    return r.mode == "full" or bool(r.courses)


def _lists_catalog_for(a: SyncRequest, b: SyncRequest) -> bool:
    """``a``'s catalog listing holds what ``b``'s would emit (course filters aside)."""
    if "catalog" not in b.scopes:
        return True
    if _complete_listing(b):
        return _complete_listing(a)
    return not _complete_listing(a) or not a.courses    # the changes, or every item


def _range_contains(a: SyncRequest, b: SyncRequest) -> bool:
    """``a``'s date range holds ``b``'s (an open start holds only an open start: what it reaches
    back to is the provider's choice; an open end is now)."""
    starts_before = (b.since is None) if a.since is None else (b.since is not None and a.since <= b.since)
    ends_after = a.until is None or (b.until is not None and b.until <= a.until)
    return starts_before and ends_after


def _window_union(a: SyncRequest, b: SyncRequest) -> tuple[datetime | None, datetime | None] | None:
    """The range that is exactly the union of two ranges (they overlap or touch), else None."""
    if not _ranged(a):
        return None, None
    if (a.since is None) != (b.since is None):
        return None
    far = datetime.max.replace(tzinfo=timezone.utc)
    near = datetime.min.replace(tzinfo=timezone.utc)
    a_since, b_since = a.since or near, b.since or near
    a_until, b_until = a.until or far, b.until or far
    if b_since > a_until or a_since > b_until:
        return None     # a gap between them: their hull would read what neither asked for
    since = None if a.since is None else min(a.since, b.since)     # type: ignore[type-var]
    until = None if a.until is None or b.until is None else max(a.until, b.until)
    return since, until


def _names(values: tuple[str, ...] | None) -> Names:
    return frozenset(values) if values else None


def _contains(a: Names, b: Names) -> bool:
    return a is None or (b is not None and b <= a)


def _names_union(a: tuple[Names, Names], b: tuple[Names, Names]) -> tuple[Names, Names] | None:
    """The (learners, courses) filter selecting what either selects, if one filter can say it."""
    if _contains(a[0], b[0]) and _contains(a[1], b[1]):
        return a
    if _contains(b[0], a[0]) and _contains(b[1], a[1]):
        return b
    if a[0] == b[0]:
        return a[0], _join(a[1], b[1])
    if a[1] == b[1]:
        return _join(a[0], b[0]), a[1]
    return None


def _join(a: Names, b: Names) -> Names:
    return None if a is None or b is None else a | b


def _tuple(names: Names) -> tuple[str, ...] | None:
    return tuple(sorted(names)) if names is not None else None


__all__ = ["covers", "merge"]
