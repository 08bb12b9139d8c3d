"""A tenant's course and stat events land at one partition index, whatever their keys."""
from __future__ import annotations

from datetime import datetime, timezone

from hostspec import events as ev
from hostspec.transport.murmur2 import partition_for
from hostspec.transport.routing import Router, tenant_partition
from tests.hostspec.test_events import course_data, stat_data

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def event(type_, data, key):
    return ev.make_event(type_, data, key=key, source="/t", subject=None, time=NOW)


def test_course_and_stat_events_of_a_tenant_share_a_partition_index():
    route = Router({"courses": range(6), "stats": range(12), "status": range(3)}.get)
    for tenant in ("acme", "globex", "initech", "t-42"):
        course = event(ev.COURSE_UPSERTED, {**course_data(), "tenant": tenant}, f"{tenant}/c/coursera/course/abc")
        stats = [event(ev.LEARNER_STAT_UPSERTED, stat_data(tenant=tenant, course_external_id=f"c{i}"),
                       f"{tenant}/c/coursera/stat/c{i}/x") for i in range(20)]
        at_6 = route("courses", course)
        assert at_6 == tenant_partition(tenant, 6)
        assert {route("stats", s) % 6 for s in stats} == {at_6}     # 12 = 2 × 6: the same index modulo 6
        # by key they would have spread over the partitions
        assert len({partition_for(s.key.encode(), 12) for s in stats}) > 1


def test_other_events_keep_kafkas_partitioning_by_key():
    route = Router(lambda topic: range(3))
    rejected = ev.make_event(ev.RECORD_REJECTED, {
        "stage": "delivery", "reason": "x", "errors": {}, "record_id": "r", "record": None, "request_id": None,
        "run_id": None, "tenant": "acme", "connection": "c", "provider": "coursera", "origin": None,
        "raw_value": None, "raw_encoding": None}, key="acme/c/x", source="/t", subject="r", time=NOW)
    assert route("dead", rejected) is None
