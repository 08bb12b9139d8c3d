"""The engine with throwaway providers: rejections, failures and statuses, no HTTP involved."""
from __future__ import annotations

from datetime import datetime, timezone

from marshmallow import Schema

from hostspec import ProviderInfo, ProviderTransientError, RecordRejected, hookimpl
from hostspec import events as ev
from hostspec.config.connections import connection_from_settings
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.errors import EventTooLarge
from hostspec.engine.plugins import get_plugin_manager
from hostspec.engine.sinks import MemorySink

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


class Toy:
    """Serves three catalog items: a good one, one it cannot map, one breaking the contract."""

    def __init__(self, records=None, fail_after=None, crash_on=None):
        self.records = records if records is not None else [{"id": "good"}, {"id": "unmappable"}, {"id": "bad-url"}]
        self.fail_after, self.crash_on, self.closed = fail_after, crash_on, False

    @hookimpl
    def provider_info(self):
        return ProviderInfo("toy", "0.0.1", "Toy", ("catalog", "progress"), Schema)

    @hookimpl
    def fetch_catalog(self):
        try:
            for n, record in enumerate(self.records):
                if self.fail_after is not None and n == self.fail_after:
                    raise ProviderTransientError("toy API is down")
                yield record
        finally:
            self.closed = True

    @hookimpl
    def map_course(self, record):
        if record["id"] == "unmappable":
            raise RecordRejected("unmappable", {"name": ["Missing data for required field."]})
        if record["id"] == self.crash_on:
            raise ZeroDivisionError("bug in provider")
        return {"external_id": record["id"], "title": f"Course {record['id']}", "description": None,
                "language": "en", "content_type": "course",
                "launch_url": "ftp://nope" if record["id"] == "bad-url" else f"https://toy.test/{record['id']}",
                "image_url": None, "duration_minutes": None, "difficulty_level": None, "sources": [],
                "subjects": [], "skills": [], "provider_updated_at": None}

    @hookimpl
    def fetch_progress(self):
        return iter(())


class LimitedSink(MemorySink):
    """Like a Kafka sink: an event above ``limit`` bytes is refused."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def emit(self, event):
        size = len(event.to_json().encode())
        if size > self.limit:
            raise EventTooLarge(event.type, size, self.limit)
        super().emit(event)


def run(toy, scope="catalog", sink=None):
    pm = get_plugin_manager(load_entry_points=False, plugins=[("toy", toy)])
    conn = connection_from_settings("t1", "toy", {}, pm, tenant="acme", group_id="g1")
    sink = sink if sink is not None else MemorySink()
    report = SyncEngine(pm, sink, clock=lambda: T0).run(SyncRequest("req-1", "t1", "toy", scope), conn)
    return report, sink


def test_bad_records_are_rejected_and_the_rest_delivered():
    report, sink = run(Toy())
    assert report.outcome == "partial"
    assert [e.data["external_id"] for e in sink.of_type(ev.COURSE_UPSERTED)] == ["good"]
    rejected = {e.data["record_id"]: e.data for e in sink.of_type(ev.RECORD_REJECTED)}
    assert rejected["unmappable"]["stage"] == "mapping"
    assert rejected["unmappable"]["errors"] == {"name": ["Missing data for required field."]}
    assert rejected["bad-url"]["stage"] == "validation" and "launch_url" in rejected["bad-url"]["errors"]
    assert rejected["bad-url"]["record"] == {"id": "bad-url"}


def test_status_events_open_and_close_the_run_with_counts():
    report, sink = run(Toy())
    statuses = sink.of_type(ev.SYNC_STATUS)
    assert [s.data["phase"] for s in statuses] == ["started", "partial"]
    assert sink.events[0] is statuses[0] and sink.events[-1] is statuses[-1]
    counts = statuses[-1].data["counts"]
    assert counts["catalog_fetched"] == 3 and counts["courses_emitted"] == 1 and counts["rejected"] == 2
    assert statuses[-1].data["request_id"] == "req-1"


def test_fetch_failure_ends_the_run_failed_and_closes_the_stream():
    toy = Toy(records=[{"id": "good"}, {"id": "good2"}], fail_after=1)
    report, sink = run(toy)
    assert report.outcome == "failed"
    assert report.error == {"kind": "provider_transient", "message": "toy API is down"}
    assert len(sink.of_type(ev.COURSE_UPSERTED)) == 1
    assert sink.of_type(ev.SYNC_STATUS)[-1].data["error"]["kind"] == "provider_transient"
    assert toy.closed


def test_bug_in_mapping_costs_one_record():
    report, sink = run(Toy(records=[{"id": "a"}, {"id": "boom"}, {"id": "b"}], crash_on="boom"))
    assert [e.data["external_id"] for e in sink.of_type(ev.COURSE_UPSERTED)] == ["a", "b"]
    (rej,) = sink.of_type(ev.RECORD_REJECTED)
    assert rej.data["reason"].startswith("ZeroDivisionError")


def test_host_fills_identity_locked_fields_and_fingerprint():
    _, sink = run(Toy(records=[{"id": "a"}]))
    (course,) = sink.of_type(ev.COURSE_UPSERTED)
    assert course.data["tenant"] == "acme" and course.data["group_id"] == "g1"
    assert course.data["locked_fields"] == ["title", "description"]
    assert course.data["fingerprint"] == ev.fingerprint(course.data, ev.COURSE_UPSERTED)
    assert course.key == "acme/t1/toy/course/a"
    assert course.data["as_of"] == "2026-03-01T00:00:00.000Z"
    assert course.data["provenance"]["title"] == "native" and course.data["provenance"]["image_url"] == "absent"
    # describing the content is not content: the fingerprint ignores both
    assert ev.fingerprint({**course.data, "provenance": {}, "as_of": None}, ev.COURSE_UPSERTED) == \
        course.data["fingerprint"]


def test_same_input_twice_gives_the_same_event_ids():
    _, first = run(Toy())
    _, second = run(Toy())
    content = lambda sink: [e.id for e in sink.events if e.type != ev.SYNC_STATUS]  # noqa: E731
    assert content(first) == content(second)


def test_unsupported_scope_fails_cleanly():
    class CatalogOnly(Toy):
        @hookimpl
        def provider_info(self):
            return ProviderInfo("toy", "0.0.1", "Toy", ("catalog",), Schema)

    report, _ = run(CatalogOnly(), scope="progress")
    assert report.outcome == "failed" and "does not support scope 'progress'" in report.error["message"]


def test_an_event_larger_than_the_transport_takes_is_rejected_with_a_bounded_copy():
    class Huge(Toy):
        @hookimpl
        def map_course(self, record):
            mapped = Toy.map_course(self, record)
            if record["id"] == "huge":
                mapped["description"] = "word " * 60_000        # a 300 KB course
            return mapped

    records = [{"id": "a"}, {"id": "huge", "blob": "x" * 300_000}, {"id": "b"}]
    report, sink = run(Huge(records=records), sink=LimitedSink(100_000))
    assert report.outcome == "partial" and [e.data["external_id"] for e in sink.of_type(ev.COURSE_UPSERTED)] == ["a", "b"]
    (rejected,) = sink.of_type(ev.RECORD_REJECTED)
    assert rejected.data["stage"] == "delivery" and rejected.data["reason"] == "the event is larger than Kafka accepts"
    assert "exceeds the 100000-byte limit" in rejected.data["errors"]["_schema"][0]
    assert rejected.data["record"]["blob"].startswith("x" * 100) and "[cut: 300000 characters" in rejected.data["record"]["blob"]
    assert len(rejected.to_json()) < 10_000


def test_every_outcome_leaves_a_request_done_marker_so_a_take_over_does_not_run_it_again():
    """A failed run and a dry run are done too: a worker taking the partition over reads the marker
    and skips the redelivered request instead of running it a second time."""
    from hostspec.engine.emit import REQUEST_DONE
    from hostspec.engine.state import StateDB

    pm = get_plugin_manager(load_entry_points=False, plugins=[("toy", Toy(records=[{"id": "a"}], fail_after=0))])
    conn = connection_from_settings("t1", "toy", {}, pm, tenant="acme", group_id="g1")
    state = StateDB()
    engine = SyncEngine(pm, MemorySink(), state=state, clock=lambda: T0)
    failed = engine.run(SyncRequest("req-failed", "t1", "toy", "catalog"), conn)
    dry = engine.run(SyncRequest("req-dry", "t1", "toy", "catalog", dry_run=True), conn)
    assert (failed.outcome, dry.outcome) == ("failed", "failed")
    for rid in ("req-failed", "req-dry"):
        marker = state.checkpoint(conn.state_scope, f"{REQUEST_DONE}{rid}")
        assert marker and marker["outcome"] == "failed", rid


def test_a_merged_run_gives_every_request_its_start_final_status_and_marker():
    """Requests coalesced into one run (hostspec.runtime.coalescing) each see their own status events and
    are remembered as done, with their own origin (a take-over then ends them silently)."""
    from hostspec.engine.emit import REQUEST_DONE
    from hostspec.engine.state import StateDB

    pm = get_plugin_manager(load_entry_points=False, plugins=[("toy", Toy(records=[{"id": "a"}]))])
    conn = connection_from_settings("t1", "toy", {}, pm, tenant="acme", group_id="g1")
    state, sink = StateDB(), MemorySink()
    request = SyncRequest("req-1", "t1", "toy", "catalog", origin="requests:0:10",
                          merged=(("req-2", "requests:0:11", "catalog"), ("req-3", "requests:0:12", "catalog")))
    report = SyncEngine(pm, sink, state=state, clock=lambda: T0).run(request, conn)
    statuses = [e.data for e in sink.of_type(ev.SYNC_STATUS)]
    assert [(s["request_id"], s["phase"], s.get("merged_into")) for s in statuses] == [
        ("req-1", "started", None), ("req-2", "started", "req-1"), ("req-3", "started", "req-1"),
        ("req-1", "completed", None), ("req-2", "completed", "req-1"), ("req-3", "completed", "req-1")]
    assert len({e.id for e in sink.of_type(ev.SYNC_STATUS)}) == 6
    assert {s["run_id"] for s in statuses} == {report.run_id}
    assert statuses[-1]["counts"] == statuses[3]["counts"] and statuses[3]["counts"]["courses_emitted"] == 1
    for rid, origin in (("req-1", "requests:0:10"), ("req-2", "requests:0:11"), ("req-3", "requests:0:12")):
        marker = state.checkpoint(conn.state_scope, f"{REQUEST_DONE}{rid}")
        assert (marker["outcome"], marker["origin"]) == ("completed", origin)
