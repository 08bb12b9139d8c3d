"""Coalescing: which queued requests one run can answer, and what that run asks for."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hostspec.runtime.coalescing import covers, merge
from hostspec.requests import SyncRequest

JAN, FEB, MAR, APR = (datetime(2026, m, 1, tzinfo=timezone.utc) for m in (1, 2, 3, 4))


def req(rid: str, scope: str = "all", **kw) -> SyncRequest:
    return SyncRequest(rid, "acme", "coursera", scope, origin=f"requests:0:{rid}", **kw)


def test_identical_scheduled_requests_merge_into_the_first_one():
    merged = merge(req("a"), req("b"))
    assert merged is not None and merged.request_id == "a" and merged.origin == "requests:0:a"
    assert (merged.scope, merged.mode, merged.learners, merged.courses) == ("all", "incremental", None, None)
    assert merged.merged == (("b", "requests:0:b", "all"),)


def test_scopes_are_united_and_a_chain_keeps_every_request_in_order():
    merged = merge(merge(req("a", "catalog"), req("b", "progress")), req("c", "catalog"))
    assert merged.scope == "all"
    assert [(rid, scope) for rid, _, scope in merged.merged] == [("b", "progress"), ("c", "catalog")]
    assert merged.answers[0] == ("a", "requests:0:a", "catalog")       # what the first one asked for


def test_a_full_sync_of_everything_covers_an_incremental_one_but_never_the_reverse():
    assert merge(req("a"), req("b", mode="full")).mode == "full"          # the later one covers the first
    assert merge(req("a", mode="full"), req("b")).mode == "full"
    assert merge(req("a"), req("b", mode="full", courses=("x",))) is None  # a replay would become a full re-read
    assert merge(req("a", "catalog"), req("b", "progress", mode="full")) is None


def test_when_the_later_request_covers_the_first_the_run_keeps_the_first_id():
    merged = merge(req("a", "progress"), req("b", mode="full"))
    assert (merged.request_id, merged.origin, merged.scope, merged.mode) == ("a", "requests:0:a", "all", "full")
    assert merged.merged == (("b", "requests:0:b", "all"),)


@pytest.mark.parametrize("first, later, expected", [
    ({"courses": ("x",)}, {"courses": ("y",)}, (None, ("x", "y"))),
    ({"learners": ("l1",)}, {"learners": ("l2",)}, (("l1", "l2"), None)),
    ({"learners": ("l1",), "courses": ("x",)}, {"learners": ("l1",), "courses": ("y",)}, (("l1",), ("x", "y"))),
    ({"learners": ("l1",), "courses": ("x",)}, {"courses": ("x", "y")}, (None, ("x", "y"))),   # contained
    ({"courses": ("x",)}, {}, (None, None)),                                                  # everything
])
def test_replay_filters_unite_when_one_filter_can_say_the_union(first, later, expected):
    merged = merge(req("a", mode="full", **first), req("b", mode="full", **later))
    assert (merged.learners, merged.courses) == expected


def test_learner_and_course_filters_that_would_widen_each_other_do_not_merge():
    # (l1 AND x) + (l2 AND y): as one filter (l1|l2 AND x|y) it would also replay l1 in y
    assert merge(req("a", learners=("l1",), courses=("x",)), req("b", learners=("l2",), courses=("y",))) is None
    assert merge(req("a", learners=("l1",)), req("b", courses=("y",))) is None


def test_date_ranges_merge_only_into_the_range_that_is_exactly_their_union():
    merged = merge(req("a", "progress", since=JAN, until=MAR), req("b", "progress", since=FEB, until=APR))
    assert (merged.since, merged.until) == (JAN, APR)
    assert merge(req("a", "progress", since=FEB), req("b", "progress", since=JAN, until=FEB)).until is None  # touch
    assert merge(req("a", "progress", since=JAN, until=FEB), req("b", "progress", since=MAR, until=APR)) is None
    assert merge(req("a", "progress", until=FEB), req("b", "progress", until=MAR)).until == MAR   # open starts
    # an open start reads back as far as the provider says, not "everything": it joins no dated start
    assert merge(req("a", "progress", since=JAN), req("b", "progress", until=FEB)) is None
    assert merge(req("a", "progress", until=APR), req("b", "progress", since=JAN, until=FEB)) is None
    # a request without a range reads its watermark window (or the provider's first-sync window)
    assert merge(req("a", "progress"), req("b", "progress", since=JAN, until=FEB)) is None
    assert merge(req("a", mode="full"), req("b", "progress", since=JAN, until=FEB)) is None


def test_a_filtered_and_an_unfiltered_incremental_catalog_never_merge():
    """An incremental catalog lists only the changes, unless it names courses (then all of them)."""
    assert merge(req("a", "catalog"), req("b", "catalog", courses=("x",))) is None
    assert merge(req("a", "progress"), req("b", "progress", courses=("x",))).courses is None   # progress: fine
    assert merge(req("a", "catalog", mode="full"), req("b", "catalog", mode="full", courses=("x",))).courses is None


def test_dry_runs_other_connections_and_providers_never_merge():
    assert merge(req("a"), req("b", dry_run=True)) is None
    assert merge(req("a"), SyncRequest("b", "other", "coursera")) is None
    assert merge(req("a"), SyncRequest("b", "acme", "linkedin")) is None


def test_a_lift_of_the_removal_guard_merges_only_with_another_lift():
    """A lift sent with a progress or subset request means nothing there: it must not reach the
    complete listing it would be merged with."""
    assert merge(req("a"), req("b", allow_mass_removal=True)) is None
    assert merge(req("a", allow_mass_removal=True), req("b", allow_mass_removal=True)).allow_mass_removal


def test_covers_is_what_running_the_first_does_for_the_second():
    assert covers(req("a", mode="full"), req("b", "progress", courses=("x",)))
    assert not covers(req("a", mode="full"), req("b", "progress", since=JAN, until=FEB))
    assert not covers(req("a", "catalog", mode="full"), req("b", "progress"))
    assert not covers(req("a", since=JAN, until=FEB), req("b", since=JAN))
    assert covers(req("a", since=JAN), req("b", since=FEB, until=MAR))
    assert not covers(req("a", until=MAR), req("b", since=FEB, until=MAR))
