"""CloudEvent building: validation on the way out, deterministic ids, keys, parsing of input."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from marshmallow import ValidationError

from hostspec import events as ev

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)


def course_data(**overrides):
    data = {"tenant": "acme", "connection": "acme-coursera", "provider": "coursera",
            "group_id": "65a1b2c3d4e5f60718293a4b", "external_id": "abc", "title": "T",
            "description": None, "locked_fields": ["title", "description"], "language": "en",
            "content_type": "course", "launch_url": "https://www.coursera.org/learn/t",
            "image_url": None, "duration_minutes": 60, "difficulty_level": None, "sources": [],
            "subjects": [], "skills": [], "provider_updated_at": None}
    data.update(overrides)
    data["fingerprint"] = ev.fingerprint(data)
    return data


def stat_data(**overrides):
    data = {"tenant": "acme", "connection": "acme-coursera", "provider": "coursera",
            "group_id": "65a1b2c3d4e5f60718293a4b", "course_external_id": "abc",
            "learner": {"email": "a@b.test", "provider_id": "a@b.test"}, "attempt_id": "a~1",
            "completion_status": "in_progress", "progress_percent": 40.0, "score_percent": None, "result": None,
            "first_activity_at": "2026-01-01T00:00:00.000Z", "last_activity_at": "2026-01-02T00:00:00.000Z",
            "completed_at": None, "time_spent_seconds": 600,
            "provenance": {"completion_status": "derived", "progress_percent": "native"},
            "as_of": "2026-01-03T00:00:00.000Z"}
    data.update(overrides)
    data["fingerprint"] = ev.fingerprint(data)
    return data


def build(data, time=NOW):
    return ev.make_event(ev.COURSE_UPSERTED, data, key=ev.partition_key("acme", "acme-coursera", "coursera", "course/abc"),
                         source="/test", subject="abc", time=time)


def test_envelope_has_every_cloudevents_attribute():
    body = build(course_data()).body
    assert body["specversion"] == "1.0" and body["datacontenttype"] == "application/json"
    assert body["time"] == "2026-01-02T03:04:05.678Z"
    assert body["dataschema"] == "urn:learning-connectors:schema:learning.course.upserted.v1"
    assert body["partitionkey"] == "acme/acme-coursera/coursera/course/abc"
    ev.parse_event(build(course_data()).to_json())  # round trip validates


def test_same_content_same_id_even_at_another_time():
    assert build(course_data()).id == build(course_data(), time=datetime(2030, 1, 1, tzinfo=timezone.utc)).id


def test_changed_content_changes_id_and_fingerprint():
    a, b = course_data(), course_data(title="Other")
    assert a["fingerprint"] != b["fingerprint"]
    assert build(a).id != build(b).id


def test_fingerprint_ignores_freshness_only():
    base = {"x": 1, "as_of": "2026-01-01T00:00:00Z"}
    assert ev.fingerprint(base) == ev.fingerprint({**base, "as_of": "2027-01-01T00:00:00Z"})
    assert ev.fingerprint(base) != ev.fingerprint({**base, "x": 2})


def test_outgoing_event_breaking_the_contract_is_refused():
    with pytest.raises(ValidationError) as excinfo:
        build(course_data(launch_url="javascript:alert(1)", surprise=True))
    assert "launch_url" in excinfo.value.messages and "surprise" in excinfo.value.messages


@pytest.mark.parametrize("raw, field", [
    (b"\xff\xfe not utf8", "_schema"),
    (b"{not json", "_schema"),
    (b"[1, 2]", "_schema"),
    (b'{"specversion": "1.0"}', "id"),
])
def test_parse_rejects_malformed_input_with_messages(raw, field):
    with pytest.raises(ValidationError) as excinfo:
        ev.parse_event(raw)
    assert field in excinfo.value.messages


def test_parse_names_unknown_and_unexpected_types():
    body = build(course_data()).body
    with pytest.raises(ValidationError, match="unknown event type"):
        ev.parse_event({**body, "type": "learning.thing.v9"})
    with pytest.raises(ValidationError, match="expected learning.sync.requested.v1"):
        ev.parse_event(body, expected_type=ev.SYNC_REQUESTED)


def test_sync_request_gets_defaults():
    req = ev.make_event(ev.SYNC_REQUESTED, {"connection": "c", "provider": "coursera"},
                        key="k", source="/test", subject="c", time=NOW)
    parsed = ev.parse_event(req.to_json(), expected_type=ev.SYNC_REQUESTED)
    assert parsed.data["scope"] == "all"


def test_naive_datetimes_are_refused():
    with pytest.raises(ValueError):
        ev.isoformat(datetime(2026, 1, 1))


def test_regression_unhashable_type_is_a_validation_error_not_a_crash():
    """Found by the reliability fuzzing: ``"type": []`` raised TypeError out of parse_event."""
    from marshmallow import ValidationError

    for bad_type in ([], {}, 3, None):
        with pytest.raises(ValidationError) as info:
            ev.parse_event({"specversion": "1.0", "type": bad_type, "data": {}})
        assert "type" in info.value.messages


def test_regression_events_are_strict_json_even_with_nan_in_a_record():
    """Found by the reliability fuzzing: a NaN inside a dead letter's record was written as bare NaN."""
    import json
    from datetime import datetime, timezone

    data = {"stage": "validation", "reason": "r", "errors": None, "record_id": "x",
            "record": {"grade": float("nan"), "hours": float("inf")}, "request_id": None, "run_id": None,
            "tenant": None, "connection": None, "provider": None, "origin": None, "raw_value": None,
            "raw_encoding": None}
    event = ev.make_event(ev.RECORD_REJECTED, data, key="k", source="s", subject=None,
                          time=datetime.now(timezone.utc))
    body = json.loads(event.to_json(), parse_constant=lambda name: pytest.fail(f"bare {name}"))
    assert body["data"]["record"] == {"grade": "nan", "hours": "inf"}


def test_canonical_bytes_are_the_canonical_json_byte_for_byte():
    """Fingerprints stay what they were when orjson writes them (state compares equal)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hostspec.events import canonical_bytes, canonical_json

    scalars = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | \
        st.floats(allow_nan=False, allow_infinity=False) | st.text()
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                          st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)

    @settings(max_examples=500, deadline=None, database=None, derandomize=True)
    @given(values)
    def same(value):
        assert canonical_bytes(value) == canonical_json(value).encode("utf-8")

    same()
    for value in (1e-05, 1e16, 68.3, {"a": [0.0001, 123456789.123, -0.0]}, "é\u2028\x1f", float("nan"), [float("inf")],
                  {"p": 50.0, "q": [1, {"r": (2.5e-07,)}]}, (9.99e-05,), {"deep": [[[-1e22]]]}, 5e-324):
        assert canonical_bytes(value) == canonical_json(value).encode("utf-8")


def test_event_ids_are_the_uuid5_of_type_key_and_content():
    """The id is written out by hand for speed; it stays ``uuid.uuid5`` (ids of events already
    sent must not change: a consumer recognises a redelivery by its id)."""
    import uuid

    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(st.text(), st.text(), st.text())
    def same(type_, key, content):
        assert ev.event_id(type_, key, content) == str(uuid.uuid5(ev.ID_NAMESPACE, f"{type_}\n{key}\n{content}"))

    same()


def test_event_bytes_read_as_the_event():
    import json as json_

    from connector_coursera.sandbox import OrgSpec
    from tests.conftest import sandbox_sync_events

    for event in sandbox_sync_events(OrgSpec(contents=5, learners=4, enrollments=10)).events:
        assert json_.loads(event.to_bytes()) == json_.loads(event.to_json())
