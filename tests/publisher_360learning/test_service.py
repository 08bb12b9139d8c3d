"""The publisher's loop with a fake consumer and sink: one connection's failure waits in its own
lane while the others are delivered and committed; nothing is committed past an event not
finished; unexpected errors are retried then dead-lettered; a per-company publisher skips the
others' events."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from hostspec import events as ev
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.transport.kafka import InboundMessage
from publisher_360learning.delivery import Deliverer, Outcome
from publisher_360learning.errors import TransientError
from publisher_360learning.ledger import Ledger
from publisher_360learning.service import PublisherService, ServiceSettings
from tests.hostspec.test_events import stat_data

TOPIC = "learning.learner-stats"


class FakeConsumer:
    def __init__(self):
        self.seeks, self.commits, self.paused = [], [], set()

    def seek(self, tp, offset):
        self.seeks.append((tp, offset))

    def pause(self, tp):
        self.paused.add(tp)

    def resume(self, tp):
        self.paused.discard(tp)

    def commit_many(self, offsets):
        self.commits.append(dict(offsets))
        return True


class FakeSink:
    def __init__(self):
        self.events = []

    def emit(self, event):
        self.events.append(event)

    def flush(self, timeout_s=None):
        pass


class Scripted(Deliverer):
    """Delivers every connection, except those in ``failing`` (an exception to raise)."""

    def __init__(self, failing=None):
        super().__init__({}, Ledger())
        self.failing, self.delivered = dict(failing or {}), []

    def deliver_connection(self, connection, items):
        if connection in self.failing:
            raise self.failing[connection]
        self.delivered.extend((connection, i.data["course_external_id"]) for i in items)
        out = Outcome()
        out.counts["stat_delivered"] = len(items)
        return out


def service(deliverer, **settings) -> PublisherService:
    svc = PublisherService(deliverer, KafkaConfig(), Topics(),
                           ServiceSettings(batch_seconds=0, commit_interval_s=0, max_batch_failures=3, **settings))
    svc._consumer, svc._sink = FakeConsumer(), FakeSink()
    svc._pool = ThreadPoolExecutor(4)
    svc._units = 6
    return svc


def message(offset: int, connection: str, partition: int = 3) -> InboundMessage:
    event = ev.make_event(ev.LEARNER_STAT_UPSERTED,
                          stat_data(connection=connection, course_external_id=f"c{offset}"),
                          key="k", source="t", subject=None, time=datetime.now(timezone.utc))
    return InboundMessage(TOPIC, partition, offset, b"k", event.to_json().encode())


def cycle(svc, messages=(), rounds=20):
    svc._take(list(messages))
    for _ in range(rounds):
        svc._dispatch()
        time.sleep(0.01)
        svc._finish_done()
        svc._commit()
        if not svc._running:
            break


def test_a_failing_connection_waits_in_its_lane_and_holds_only_the_commit_behind_it():
    down = Scripted({"globex": TransientError("503 from globex's 360Learning")})
    svc = service(down)
    cycle(svc, [message(0, "acme"), message(1, "globex"), message(2, "acme"), message(3, "initech")])
    assert sorted(down.delivered) == [("acme", "c0"), ("acme", "c2"), ("initech", "c3")]
    assert svc._consumer.commits[-1] == {(TOPIC, 3): 1}          # not past globex's event at offset 1
    lane = svc._lanes["globex"]
    assert lane.state == "retrying" and len(lane.queue) == 1 and lane.not_before > time.monotonic()
    # globex recovers: its event is delivered after its wait, and the commit moves on
    del down.failing["globex"]
    lane.not_before = 0
    cycle(svc)
    assert ("globex", "c1") in down.delivered and svc._consumer.commits[-1] == {(TOPIC, 3): 4}


def test_a_disabled_bulk_api_is_a_configuration_wait_of_that_company():
    svc = service(Scripted({"globex": TransientError("bulk off", status=503, code="bulkAPIDisabled")}))
    cycle(svc, [message(0, "globex"), message(1, "acme")])
    assert svc._lanes["globex"].state == "config" and svc._lanes["globex"].not_before - time.monotonic() > 30
    assert svc._lanes["acme"].state == "ok"


def test_unexpected_errors_are_retried_then_dead_lettered_and_committed():
    svc = service(Scripted({"acme": ZeroDivisionError("bug")}))
    cycle(svc, [message(0, "acme")])
    for _ in range(2):
        svc._lanes["acme"].not_before = 0
        cycle(svc)
    dead = [e for e in svc._sink.events if e.type == ev.RECORD_REJECTED]
    assert len(dead) == 1 and dead[0].data["reason"] == "publisher_error"
    assert svc._consumer.commits[-1] == {(TOPIC, 3): 1}


def test_a_per_company_publisher_skips_other_connections_without_dead_letters():
    deliverer = Scripted()
    svc = service(deliverer, connections=frozenset({"acme"}))
    cycle(svc, [message(0, "acme"), message(1, "globex")])
    assert deliverer.delivered == [("acme", "c0")] and not svc._sink.events
    assert svc._consumer.commits[-1] == {(TOPIC, 3): 2} and svc.totals["skipped_other_publisher"] == 1


def test_a_malformed_event_is_dead_lettered_and_does_not_hold_the_partition():
    deliverer = Scripted()
    svc = service(deliverer)
    cycle(svc, [InboundMessage(TOPIC, 3, 0, b"k", b"{not json"), message(1, "acme")])
    assert [e.data["reason"] for e in svc._sink.events] == ["malformed_event"]
    assert svc._consumer.commits[-1] == {(TOPIC, 3): 2}


def test_revocation_waits_for_the_lane_delivering_those_partitions():
    import threading

    release = threading.Event()

    class Slow(Scripted):
        def deliver_connection(self, connection, items):
            release.wait(5)
            return super().deliver_connection(connection, items)

    svc = service(Slow())
    svc._take([message(0, "acme")])
    svc._dispatch()
    barrier = svc._revoked({(TOPIC, 3)})
    assert barrier() is False              # the delivery of partition 3 is still running
    release.set()
    deadline = time.monotonic() + 5
    while not barrier() and time.monotonic() < deadline:
        time.sleep(0.01)                   # the poll loop is blocked in the rebalance: no help from it
    assert barrier()
