"""Coalescing: the requests of a connection queued behind a running one become one run.

A scheduler, a replay and an impatient operator may all ask for the same connection while it is
busy. Running their requests one after the other repeats the same provider calls; running them
as one request covering their union does the work once (Kafka Connect's and Kafka Streams'
answer to a backlog of identical work is the same: the latest covers the rest).

:func:`merge` is the pure rule. Two requests merge when one request can say exactly their
union, without turning cheap work into an expensive one:

* the same connection, provider and ``dry_run``;
* scopes: the union (``catalog`` + ``progress`` = ``all``);
* mode: the same, unless one request covers the other whole (a full sync of everything covers
  an incremental one; an incremental sync never becomes a full re-read because a replay of two
  courses waits behind it);
* replay filters (``learners``, ``courses``, both applied together): the union when it is one
  such filter (one dimension equal, or one filter containing the other);
* date ranges: the smallest range holding both; an incremental request without a range (it
  starts at the connection's watermark) merges with another without one only;
* ``allow_mass_removal``: asked by either, granted to the merged run (an operator's explicit
  lift of the removal guard, now also answering the queued scheduled sync).

The merged request keeps the first request's id; :attr:`SyncRequest.merged` names the others,
each of which gets its own final status and request-done marker from the same run.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Optional

from .engine import SyncRequest

Names = Optional[frozenset[str]]          # None: every learner (or course)
_SCOPES = {frozenset({"catalog"}): "catalog", frozenset({"progress"}): "progress",
           frozenset({"catalog", "progress"}): "all"}


def merge(first: SyncRequest, later: SyncRequest) -> SyncRequest | None:
    """One request doing the work of both, or None when no single request can say their union."""
    if (first.connection, first.provider, first.dry_run) != (later.connection, later.provider, later.dry_run):
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
    return replace(merged, allow_mass_removal=first.allow_mass_removal or later.allow_mass_removal,
                   merged=(*first.merged, (later.request_id, later.origin), *later.merged))


def covers(a: SyncRequest, b: SyncRequest) -> bool:
    """Whether running ``a`` does all the work ``b`` asks for (scopes, mode, range and filters)."""
    if not set(a.scopes) >= set(b.scopes):
        return False
    if a.mode != b.mode and not (a.mode == "full" and not a.since and not a.until):
        return False
    if not _range_contains(a, b):
        return False
    return (_contains(_names(a.learners), _names(b.learners))
            and _contains(_names(a.courses), _names(b.courses)))


def _range_contains(a: SyncRequest, b: SyncRequest) -> bool:
    if not a.since and not a.until:
        # no range: a full sync reads everything; an incremental one only what its watermark says
        return a.mode == "full" or (not b.since and not b.until)
    if not b.since and not b.until:
        return False
    starts_before = a.since is None or (b.since is not None and a.since <= b.since)
    ends_after = a.until is None or (b.until is not None and b.until <= a.until)
    return starts_before and ends_after


def _window_union(a: SyncRequest, b: SyncRequest) -> tuple[datetime | None, datetime | None] | None:
    a_ranged, b_ranged = bool(a.since or a.until), bool(b.since or b.until)
    if not a_ranged and not b_ranged:
        return None, None
    if a_ranged != b_ranged:
        return None     # a watermark window and a date range: no one request holds both
    since = None if a.since is None or b.since is None else min(a.since, b.since)
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
