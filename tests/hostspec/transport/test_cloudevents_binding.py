"""The CloudEvents Kafka protocol binding: structured mode out, both modes in (issue 16)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

from hostspec.requests import SyncRequest
from hostspec.transport.cloudevents import STRUCTURED, STRUCTURED_TYPE, structured_value
from hostspec.runtime.worker import Refusal, admit

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)


def binary_mode(event_body: dict) -> tuple[list[tuple[str, bytes]], bytes]:
    """What a Java or Go CloudEvents SDK writes in binary mode: attributes in ce_ headers."""
    headers = [(f"ce_{k}", str(v).encode()) for k, v in event_body.items()
               if k not in ("data", "datacontenttype")]
    headers.append(("content-type", b"application/json"))
    return headers, json.dumps(event_body["data"]).encode()


def test_a_request_in_binary_mode_is_read_like_one_in_structured_mode(plugins):
    from hostspec.config.connections import ConnectionStore

    store = ConnectionStore({"acme": {"tenant": "acme", "provider": "coursera", "group_id": "g1",
                                      "settings": {"org_id": "o", "client_id": "c", "client_secret": "s"}}},
                            source="<test>")
    event = SyncRequest("req-1", "acme", "coursera", "catalog").to_event(NOW)
    headers, value = binary_mode(event.body)
    rebuilt = structured_value(headers, value)
    admitted = admit(rebuilt, store, plugins)
    assert not isinstance(admitted, Refusal), admitted
    request, connection = admitted
    assert (request.request_id, request.scope, connection.name) == ("req-1", "catalog", "acme")


def test_a_structured_record_or_one_without_headers_is_left_as_it_is():
    value = b'{"specversion": "1.0"}'
    assert structured_value(STRUCTURED, value) is value
    assert structured_value(None, value) is value
    assert structured_value([("other", b"x")], b"\x80") == b"\x80"


def test_the_structured_header_is_the_bindings_content_type():
    assert STRUCTURED == [("content-type", b"application/cloudevents+json; charset=UTF-8")]
    assert STRUCTURED_TYPE.startswith("application/cloudevents+json")


def test_every_event_record_of_a_transaction_carries_the_header_and_state_records_none():
    from hostspec import events as ev
    from hostspec.events import make_event
    from hostspec.transport import transactional_sink

    sent = []

    class Producer:
        def partitions_for(self, topic):
            return {0, 1, 2}

    class Owner:
        tp, state_partition = ("req", 0), 0

    sink = transactional_sink.TransactionalSink(Producer(), lambda _t: "events", "state", Owner(), finishing=[5])
    sink._route = lambda topic, event: 0
    monkey = transactional_sink.commit_fenced
    try:
        transactional_sink.commit_fenced = lambda producer, owners, records, **kw: sent.extend(records) or {0: 1}
        status = make_event(ev.SYNC_STATUS, {"request_id": "r", "run_id": "u", "tenant": "t", "connection": "c",
                                             "provider": "p", "scope": "all", "phase": "started", "dry_run": False,
                                             "counts": {k: 0 for k in ("catalog_fetched", "courses_emitted",
                                                                       "courses_unchanged", "courses_removed",
                                                                       "progress_fetched", "stats_emitted",
                                                                       "stats_unchanged", "rejected", "skipped")},
                                             "error": None, "started_at": None, "ended_at": None, "worker": None},
                            key="t/c/p/sync", source="/x", subject="c", time=NOW)
        sink.emit(status)
        sink.checkpoint([("e\x1fk", b"{}")], final=False)
    finally:
        transactional_sink.commit_fenced = monkey
    assert [(r.topic, r.headers) for r in sent] == [("events", STRUCTURED), ("state", None)]
