"""Dead letters for refused requests: raw bytes kept, origin named, failed status when the id is known."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone

from hostspec import events as ev
from hostspec.bounded import EVENT_LIMIT, digest
from hostspec.runtime.dead_letters import MAX_ID_CHARS, MAX_RAW_CHARS, refused_request, request_id_of

NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)


def refuse(value, **kw):
    return refused_request(topic="req", partition=2, offset=41, value=value, reason="because",
                           errors={"x": ["y"]}, now=NOW, **kw)


def test_unreadable_bytes_travel_as_base64_without_status():
    (dead,) = refuse(b"\x80\x81binary")
    assert dead.type == ev.RECORD_REJECTED
    assert dead.data["origin"] == {"topic": "req", "partition": 2, "offset": 41}
    assert dead.data["raw_encoding"] == "base64" and base64.b64decode(dead.data["raw_value"]) == b"\x80\x81binary"


def test_readable_request_id_gives_a_failed_status():
    value = json.dumps({"id": "req-7", "type": "nonsense"}).encode()
    dead, status = refuse(value, connection="acme", provider="coursera", worker="w9")
    assert dead.data["request_id"] == "req-7" and dead.data["raw_value"] == value.decode()
    assert status.type == ev.SYNC_STATUS and status.data["phase"] == "failed"
    assert status.data["error"] == {"kind": "invalid_request", "message": "because"} and status.data["worker"] == "w9"


def test_oversized_values_are_cut_and_ids_stay_distinct_per_offset():
    raw = b"a" * (MAX_RAW_CHARS * 3)
    (dead,) = refuse(raw)
    kept, note = dead.data["raw_value"].split("…", 1)
    assert kept == "a" * MAX_RAW_CHARS
    assert note == f"[cut: {len(raw)} characters, sha256 {digest(raw)}]"   # says what was cut, and which
    other = refused_request(topic="req", partition=2, offset=42, value=b"a", reason="r", errors=None, now=NOW)[0]
    assert other.id != dead.id


def test_request_id_of_ignores_anything_not_a_json_object_with_a_string_id():
    assert request_id_of(b'{"id": "a"}') == "a"
    for value in (None, b"", b"[1]", b'{"id": 3}', b"\xff"):
        assert request_id_of(value) is None


def test_a_refusal_is_never_larger_than_the_limit_whatever_it_refuses():
    """A 300,000-character id and 60,000 unknown keys (which marshmallow echoes one by one) give
    dead letters and statuses of bounded size, so they always fit in a Kafka message."""
    long_id = json.dumps({"id": "x" * 300_000, "type": "learning.sync.requested.v1", "data": {}}).encode()
    many_keys = {"id": "r1", "type": "learning.sync.requested.v1", "data": {f"k{i}": i for i in range(60_000)}}
    errors = {"data": {f"k{i}": ["Unknown field."] for i in range(60_000)}}
    for value, errs in ((long_id, {"id": ["x" * 300_000]}), (json.dumps(many_keys).encode(), errors)):
        assert len(value) > 300_000
        events = refused_request(topic="req", partition=0, offset=1, value=value, reason="r" * 50_000, errors=errs,
                                 now=NOW)
        for event in events:
            assert len(event.to_json().encode()) <= EVENT_LIMIT, event.type
        assert events[0].data["request_id"] in ("r1", f"{'x' * MAX_ID_CHARS}…[cut: 300000 characters, "
                                                      f"sha256 {digest('x' * 300_000)}]")


def test_a_refused_request_naming_its_connection_has_a_status_naming_it_and_no_null_attribute():
    """cloudevents' strict reader refuses ``"subject": null`` (issue 16): a refused request's
    events name the connection and provider it gave, and leave out what is unknown."""
    value = json.dumps({"id": "req-9", "type": "learning.sync.requested.v1",
                        "data": {"connection": "acme", "provider": "coursera", "scope": "everything"}}).encode()
    events = refused_request(topic="t", partition=0, offset=7, value=value, reason="invalid", errors={}, now=NOW)
    status = next(e for e in events if e.type == ev.SYNC_STATUS)
    assert (status.data["connection"], status.data["provider"], status.body["subject"]) == ("acme", "coursera", "acme")
    nameless = refused_request(topic="t", partition=0, offset=8, value=b'{"id": "req-10", "data": {"connection": 5}}',
                               reason="invalid", errors={}, now=NOW)
    for event in [*events, *nameless]:
        assert all(v is not None for k, v in event.body.items() if k != "data"), event.body
        ev.parse_event(event.to_json())
    assert next(e for e in nameless if e.type == ev.SYNC_STATUS).body["subject"] == "req-10"
