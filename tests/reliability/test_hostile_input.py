"""Hostile input, property-based (hypothesis): sync requests and Coursera records.

Nothing crashes; every bad input is refused with a reason (a dead letter), and the good ones are
not affected. Oversized values, non-UTF-8 bytes, NaN and infinities included.
"""
from __future__ import annotations

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.bounded import EVENT_LIMIT
from hostspec.config.connections import ConnectionStore
from hostspec.runtime.dead_letters import MAX_RAW_CHARS, refused_request
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.plugins import get_plugin_manager
from hostspec.engine.sinks import MemorySink
from hostspec.runtime.worker import Refusal, admit
from tests.conftest import sandbox_connection

from .conftest import plan

PLUGINS = get_plugin_manager()
STORE = ConnectionStore({"acme": {"tenant": "acme", "provider": "coursera", "group_id": "g",
                                  "settings": {"org_id": "o", "client_id": "c", "client_secret": "s"}}},
                        source="<test>")
NOW = __import__("datetime").datetime(2026, 11, 28, tzinfo=__import__("datetime").timezone.utc)

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                      st.text(max_size=40), st.just("x" * 70_000), st.just("\u0000\ud7ff\U0001f600"))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                          max_leaves=12)
GOOD = json.loads(SyncRequest("r-1", "acme", "coursera", "all", "fuzz").to_event(NOW).to_json())


@st.composite
def mutated_request(draw) -> bytes:
    doc = json.loads(json.dumps(GOOD))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(["envelope", "data"]))
        target = doc if where == "envelope" or not isinstance(doc.get("data"), dict) else doc["data"]
        key = draw(st.sampled_from(sorted(target) + ["extra", "learners", "since", "until", "mode", "scope"]))
        action = draw(st.sampled_from(["set", "drop"]))
        if action == "drop":
            target.pop(key, None)
        else:
            target[key] = draw(json_value)
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


hostile_request = st.one_of(
    st.binary(max_size=300),                                           # anything at all, non-UTF-8 included
    st.binary(min_size=1, max_size=50).map(lambda b: b"\xff\xfe" + b), # certainly not UTF-8
    json_value.map(lambda v: json.dumps(v).encode()),                  # JSON, not a CloudEvent
    mutated_request(),                                                 # a CloudEvent, broken somewhere
    st.just(json.dumps({**GOOD, "data": {**GOOD["data"], "learners": ["x"] * 60_000}}).encode()),  # oversized
    st.just(json.dumps({**GOOD, "data": {**GOOD["data"], "connection": "nobody"}}).encode()),
    st.just(json.dumps({**GOOD, "data": {**GOOD["data"], "provider": "udemy"}}).encode()),
)

seen = {"requests": 0, "refused": 0, "crashes": 0}


@settings(max_examples=plan("fuzz_requests"), deadline=None, suppress_health_check=list(HealthCheck))
@given(hostile_request)
def test_hostile_requests_are_refused_with_a_reason(value):
    seen["requests"] += 1
    try:
        result = admit(value, STORE, PLUGINS)
    except Exception:
        seen["crashes"] += 1
        raise
    if not isinstance(result, Refusal):
        request, connection = result                                   # a mutation that stayed valid
        assert connection.name == "acme" and request.provider == "coursera"
        return
    seen["refused"] += 1
    assert result.reason
    events = refused_request(topic="t", partition=0, offset=7, value=value, reason=result.reason,
                             errors=result.errors, now=NOW)
    dead = events[0].data
    json.loads(events[0].to_json())                                    # serialisable, strict JSON
    assert dead["stage"] == "request" and dead["reason"] == result.reason and dead["origin"]["offset"] == 7
    assert all(len(e.to_json().encode()) <= EVENT_LIMIT for e in events)   # always fits in a Kafka message
    raw, cut_note = (dead["raw_value"].split("…[cut: ", 1) + [None])[:2]
    restored = raw.encode("utf-8") if dead["raw_encoding"] == "utf-8" else base64.b64decode(raw)
    assert restored == value[:len(restored)]
    assert (len(restored) == len(value)) == (cut_note is None) and (cut_note is None or len(raw) == MAX_RAW_CHARS)


def test_request_fuzzing_figures(figures):
    """Runs after the property above (file order) and reports what it saw."""
    figures.add("hostile requests tried", seen["requests"], f">= {plan('fuzz_requests')}",
                seen["requests"] >= plan("fuzz_requests"))
    figures.add("refused with a reason", seen["refused"])
    figures.add("crashes", seen["crashes"], "0", seen["crashes"] == 0)


# -- Coursera records -------------------------------------------------------------------------------
CONTENT_FIELDS = ["name", "description", "contentType", "languageCode", "estimatedLearningTime", "partners",
                  "programs", "url", "skills", "previewImageUrl", "difficultyLevel", "lastUpdatedAt", "extraField"]
ROW_FIELDS = ["overallProgress", "isCompleted", "completedAt", "grade", "lastActivityAt", "enrolledAt",
              "approxTotalCourseHrs", "email", "membershipState", "contentType", "deletedAt", "extraField"]
hostile_value = st.one_of(json_leaf, st.floats(), st.just(float("nan")), st.just(float("inf")),
                          st.just(-1), st.just(10**18), st.lists(json_leaf, max_size=3),
                          st.dictionaries(st.text(max_size=5), json_leaf, max_size=3))
mutation = st.one_of(
    st.tuples(st.just("content"), st.integers(0, 9), st.sampled_from(CONTENT_FIELDS), hostile_value),
    st.tuples(st.just("row"), st.integers(0, 29), st.sampled_from(ROW_FIELDS), hostile_value))
SPEC = OrgSpec(contents=10, learners=10, enrollments=30, deleted_member_every=0)
record_stats = {"cases": 0, "rejected": 0, "events": 0, "failed_runs": 0}


def _no_constants(name: str):
    raise AssertionError(f"{name} in an event: not strict JSON")


def _keyed(sink: MemorySink) -> dict[tuple[str, str], str]:
    return {(e.type, e.key): e.data.get("fingerprint") for e in sink.events
            if e.type in (ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED)}


def test_hostile_coursera_records_cost_one_rejection_each(plugins):
    with CourseraSandbox(SPEC) as sb:
        connection = sandbox_connection(sb, plugins, page_size=100)

        def sync() -> tuple:
            sink = MemorySink()
            report = SyncEngine(plugins, sink).run(SyncRequest("r", connection.name, "coursera", "all"), connection)
            return report, sink

        _, clean = sync()
        baseline = _keyed(clean)
        pristine = [dict(c) for c in sb.org.contents]

        @settings(max_examples=plan("fuzz_records"), deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(mutation, min_size=1, max_size=3))
        def check(mutations):
            sb.org.contents[:] = [dict(c) for c in pristine]
            sb.org.progress_overrides.clear()
            sb.org.version += 1
            touched_content, touched_rows = set(), set()
            for kind, index, fieldname, value in mutations:
                if kind == "content":
                    sb.org.contents[index][fieldname] = value
                    touched_content.add(sb.org.contents[index]["contentId"])
                else:
                    sb.org.progress_overrides.setdefault(index, {})[fieldname] = value
                    touched_rows.add(index)
            report, sink = sync()
            record_stats["cases"] += 1
            record_stats["failed_runs"] += report.outcome == "failed"
            assert report.outcome in ("completed", "partial"), report.error   # never the whole run
            rejected = sink.of_type(ev.RECORD_REJECTED)
            record_stats["rejected"] += len(rejected)
            assert len(rejected) == report.counts.rejected
            for event in rejected:
                assert event.data["reason"] and event.data["stage"] in ("mapping", "validation")
            for event in sink.events:                                 # every event is strict JSON
                json.loads(event.to_json(), parse_constant=_no_constants)
            got = _keyed(sink)
            record_stats["events"] += len(got)
            untouched_rows = {sb.org.row(i)["id"] for i in range(SPEC.enrollments) if i not in touched_rows}
            for (type_, key), fingerprint in baseline.items():
                entity = key.split("/", 4)[-1]
                if type_ == ev.COURSE_UPSERTED and entity.split("/")[-1] not in touched_content:
                    assert got.get((type_, key)) == fingerprint, key
                if type_ == ev.LEARNER_STAT_UPSERTED and any(key.endswith(r.split("~")[0]) and r.split("~")[-1] in key
                                                              for r in untouched_rows) and not touched_content:
                    assert got.get((type_, key)) == fingerprint, key

        check()


def test_record_fuzzing_figures(figures):
    figures.add("hostile Coursera record sets", record_stats["cases"], f">= {plan('fuzz_records')}",
                record_stats["cases"] >= plan("fuzz_records"))
    figures.add("records rejected (dead letters)", record_stats["rejected"])
    figures.add("runs failed by a bad record", record_stats["failed_runs"], "0", record_stats["failed_runs"] == 0)
