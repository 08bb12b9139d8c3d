"""Fenced transactions without a broker: the order of the steps, what each Kafka error means, the
checks kafka-python needs around it, and the producer pool's slots. (On the broker:
tests/integration/test_transport.py and tests/reliability/test_fleet.py.)"""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from kafka import errors as kerr

from hostspec.errors import (
    DeliveryError,
    EventTooLarge,
    PermanentDeliveryError,
    RunAbandoned,
    TransportError,
)
from hostspec.events import make_event
from hostspec.runtime.tasks import PartitionTask
from hostspec.transport import producer_pool
from hostspec.transport import transactions as tx
from hostspec.transport.config import KafkaConfig
from hostspec.transport.transactional_sink import TransactionalSink

MEMBER = SimpleNamespace(generation_id=3, member_id="m")


class Future:
    def __init__(self, partition=0, offset=0, done=True, error=None):
        self.is_done, self.exception = done, error
        self.value = SimpleNamespace(partition=partition, offset=offset)

    def succeeded(self):
        return self.is_done and self.exception is None


class FakeProducer:
    """Records the calls; ``fail`` maps a step to the exception it raises (once)."""

    def __init__(self, fail=None, unconfirmed=False):
        self.calls, self.fail, self.unconfirmed = [], dict(fail or {}), unconfirmed
        self.config = {"transaction_timeout_ms": 1000}
        self._next_offset = 100

    def partitions_for(self, topic):
        return set(range(12))

    def _step(self, name, *args):
        self.calls.append((name, *args))
        if name in self.fail:
            raise self.fail.pop(name)

    def begin_transaction(self):
        self._step("begin")

    def send_offsets_to_transaction(self, offsets, metadata):
        self._step("offsets", {tp.partition: o.offset for tp, o in offsets.items()}, metadata.generation_id)

    def send(self, topic, key=None, value=None, partition=None, headers=None):
        self._step("send", topic, partition)
        self._next_offset += 1
        return Future(partition or 0, self._next_offset, done=not self.unconfirmed)

    def commit_transaction(self):
        self._step("commit")

    def abort_transaction(self):
        self._step("abort")


def owner(metadata=lambda: MEMBER):
    t = PartitionTask(("req", 0), state_partition=0, membership=metadata)
    t.start_offset = 5
    t.start()
    t.fetched(5)
    t.fetched(6)
    return t


RECORDS = [tx.OutRecord("events", None, b"k", b"v"), tx.OutRecord("state", 0, b"s", b"{}")]


def test_offsets_go_first_then_records_then_the_commit():
    producer, t = FakeProducer(), owner()
    ends = tx.commit_fenced(producer, [t], RECORDS, finishing={("req", 0): [5]})
    assert [c[0] for c in producer.calls] == ["begin", "offsets", "send", "send", "commit"]
    assert producer.calls[1][1:] == ({0: 6}, 3)        # request 5 ends: 6 is the next one to do
    assert ends == {0: 103} and t.offset_to_commit([]) == 6


def test_a_stale_generation_is_retried_with_fresh_metadata_while_the_partition_is_ours():
    producer, t = FakeProducer(fail={"offsets": kerr.CommitFailedError("IllegalGenerationError")}), owner()
    tx.commit_fenced(producer, [t], RECORDS)
    assert [c[0] for c in producer.calls] == ["begin", "offsets", "abort", "begin", "offsets", "send", "send",
                                              "commit"]


def test_revoked_or_evicted_owners_commit_nothing():
    producer, t = FakeProducer(), owner(lambda: SimpleNamespace(generation_id=-1, member_id=""))
    with pytest.raises(RunAbandoned):
        tx.commit_fenced(producer, [t], RECORDS)
    t2 = owner()
    t2.revoke()
    with pytest.raises(RunAbandoned):
        tx.commit_fenced(producer, [t2], RECORDS)
    assert producer.calls == []                       # the broker is not even asked


def test_a_revocation_during_the_retries_stops_them():
    t = owner()
    producer = FakeProducer(fail={"offsets": kerr.CommitFailedError("RebalanceInProgress")})
    original = producer.abort_transaction

    def abort_then_revoke():
        original()
        threading.Thread(target=t.revoke).start()   # the group takes the partition away meanwhile

    producer.abort_transaction = abort_then_revoke
    with pytest.raises(RunAbandoned):
        tx.commit_fenced(producer, [t], RECORDS)
    assert [c[0] for c in producer.calls].count("commit") == 0


@pytest.mark.parametrize("error, expected", [
    (kerr.MessageSizeTooLargeError("too big"), PermanentDeliveryError),
    (kerr.TopicAuthorizationFailedError("no"), PermanentDeliveryError),
    (kerr.ProducerFencedError("fenced"), tx.ProducerBroken),
    (kerr.KafkaTimeoutError("slow"), DeliveryError),
])
def test_what_each_kafka_error_means(error, expected):
    with pytest.raises(expected) as raised:
        tx.commit_fenced(FakeProducer(fail={"commit": error}), [owner()], RECORDS)
    assert type(raised.value) is expected      # a transient error is not taken for a broken producer


def test_a_commit_whose_records_were_never_acknowledged_is_not_trusted():
    with pytest.raises(tx.ProducerBroken, match="not acknowledged"):
        tx.commit_fenced(FakeProducer(unconfirmed=True), [owner()], RECORDS)


def test_a_step_kafka_never_answers_gives_up_at_the_deadline():
    class Manager:
        def begin_commit(self):
            return SimpleNamespace(wait=lambda timeout_ms: False)       # never answered

        def send_offsets_to_transaction(self, offsets, metadata):
            return SimpleNamespace(wait=lambda timeout_ms: True)

        def begin_abort(self):
            return SimpleNamespace(wait=lambda timeout_ms: True)

    producer = FakeProducer()
    producer._transaction_manager, producer._sender = Manager(), SimpleNamespace(wakeup=lambda: None)
    with pytest.raises(tx.ProducerBroken, match="no answer"):
        tx.commit_fenced(producer, [owner()], RECORDS)


def test_the_sink_refuses_an_event_larger_than_kafka_takes_and_writes_nothing_between_checkpoints():
    producer, t = FakeProducer(), owner()
    sink = TransactionalSink(producer, lambda _t: "events", "state", t, finishing=[5], max_record_bytes=4_000)
    small = make_event("learning.sync.status.v1", _status(), key="k", source="/s", subject=None,
                       time=_now(), validate=False)
    big = make_event("learning.sync.status.v1", {**_status(), "worker": "x" * 5_000}, key="k", source="/s",
                     subject=None, time=_now(), validate=False)
    with pytest.raises(EventTooLarge):
        sink.emit(big)
    sink.emit(small)
    assert producer.calls == []
    written = []
    sink._on_state_written = written.append
    sink.checkpoint([("s", b"{}")], final=True)
    assert [c[0] for c in producer.calls] == ["begin", "offsets", "send", "send", "commit"] and written == []
    sink.applied()                        # told once the engine applied the batch locally too
    assert written == [103]               # after the state record (offset 102)


def test_a_failed_re_creation_leaves_the_slot_to_a_later_attempt(monkeypatch):
    made = []

    class Producer(FakeProducer):
        def init_transactions(self):
            if len(made) == 2:
                raise kerr.KafkaTimeoutError("coordinator loading")

        def close(self, timeout=None):
            pass

    def make(config, **kw):
        made.append(kw["transactional_id"])
        return Producer()

    monkeypatch.setattr(producer_pool, "make_producer", make)
    pool = producer_pool.ProducerPool(KafkaConfig(), "g.w", 1)
    slot, producer = pool.take()
    pool.give_back(slot, producer, broken=True)        # re-created lazily, by the next taker
    with pytest.raises(TransportError):
        pool.take()                                    # the re-creation fails ...
    slot, producer = pool.take()                       # ... and the slot is there for the next attempt
    assert slot == 0 and made == ["g.w-0", "g.w-0", "g.w-0"]


def _status():
    return {"request_id": "r", "run_id": "u", "tenant": "t", "connection": "c", "provider": "p", "scope": "all",
            "phase": "started", "dry_run": False, "counts": {}, "error": None, "started_at": None,
            "ended_at": None, "worker": "w"}


def _now():
    from datetime import datetime, timezone
    return datetime(2026, 12, 1, tzinfo=timezone.utc)


def test_a_poll_while_the_broker_is_away_returns_nothing_instead_of_raising(caplog):
    """kafka-python 3 raised KafkaConnectionError out of poll during a broker restart and the worker
    stopped (found by the long reliability campaign)."""
    from hostspec.transport.consumers import RequestConsumer

    class Away:
        calls = 0

        def poll(self, timeout_ms):
            Away.calls += 1
            if Away.calls <= 2:
                raise kerr.KafkaConnectionError("111 ECONNREFUSED")
            return {}

        def group_metadata(self):
            class M:
                state = "stable"
            return M()

    import logging
    caplog.set_level(logging.INFO, "hostspec.transport.kafka")
    consumer = RequestConsumer.__new__(RequestConsumer)
    consumer._consumer, consumer._unreachable_since = Away(), None
    assert consumer.poll(10) == [] and consumer.poll(10) == [] and consumer.poll(10) == []
    assert "Kafka unreachable" in caplog.text and "reachable again" in caplog.text
