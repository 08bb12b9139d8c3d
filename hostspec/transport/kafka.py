"""The only module that imports the Kafka client (kafka-python).

It offers the worker and the CLI four small things: topic creation, a sink that produces events
and reports failures as :class:`DeliveryError`, a request consumer with manual commits and
pause/resume by partition, and helpers to publish a request and follow status events. Client
errors are wrapped once, here, into the host's errors.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.partitioner.default import DefaultPartitioner
from kafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from ..errors import DeliveryError, TransportError
from ..events import Event
from .config import KafkaConfig, TopicSpec
from .murmur2 import partition_for

log = logging.getLogger(__name__)
Partition = tuple[str, int]


class InboundMessage(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @property
    def tp(self) -> Partition:
        return (self.topic, self.partition)


def _unpark(consumer: KafkaConsumer, tp: TopicPartition) -> None:
    """Work around a kafka-python 3.0 fetcher bug that stalls a resumed partition for good.

    While a partition is paused, the fetcher parks the records it had already fetched for it
    (KAFKA-7548). It restores them only when its in-line slot is ``None``; an exhausted slot is
    falsy but not ``None``, so the parked records stay parked, and a partition with parked
    records is never fetched again: ``poll()`` returns nothing more for it, silently. The
    reliability suite's load test found it (requests left unprocessed); the regression test is
    ``tests/integration/test_transport.py``. Dropping the parked data is safe: the consumer's
    position still points at its first record, which is fetched again.
    """
    fetcher = getattr(consumer, "_fetcher", None)
    parked = getattr(fetcher, "_paused_partition_records", None)
    if isinstance(parked, dict) and tp in parked:
        records = parked.pop(tp)
        if records is not None and hasattr(records, "drain"):
            records.drain()
    completions = getattr(fetcher, "_paused_completed_fetches", None)
    if isinstance(completions, dict):
        completions.pop(tp, None)


def _unreachable(config: KafkaConfig, exc: Exception) -> TransportError:
    return TransportError(f"cannot reach Kafka at {config.bootstrap_servers} "
                          f"({config.security_protocol}): {type(exc).__name__}: {exc}")


# -- topics ---------------------------------------------------------------------------------------
def ensure_topics(config: KafkaConfig, specs: Iterable[TopicSpec], *, replication_factor: int = 1,
                  timeout_s: float = 30) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    specs = list(specs)
    try:
        admin = KafkaAdminClient(**config.client_kwargs(), request_timeout_ms=int(timeout_s * 1000))
    except (KafkaError, ValueError) as exc:  # kafka-python raises ValueError for unreachable bootstraps
        raise _unreachable(config, exc) from None
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        created = []
        for spec in missing:
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, replication_factor,
                                              topic_configs=dict(spec.configs))], timeout_ms=int(timeout_s * 1000))
                created.append(spec.name)
            except TopicAlreadyExistsError:  # another worker created it meanwhile
                pass
        if created:
            log.info("created topics %s", ", ".join(created))
        return created
    except KafkaError as exc:
        raise TransportError(f"cannot create topics: {type(exc).__name__}: {exc}") from None
    finally:
        admin.close()


# -- producing ------------------------------------------------------------------------------------
class KeyPartitioner(DefaultPartitioner):
    """The default partitioner's choice for keyed records (Java-compatible murmur2), computed
    faster: a quicker hash and no re-sorting of the partition list for every record."""

    def __init__(self) -> None:
        self._sorted: dict[str, list[int]] = {}

    def partition(self, topic, key, serialized_key, value, serialized_value, cluster):
        if serialized_key is None:
            return super().partition(topic, key, serialized_key, value, serialized_value, cluster)
        partitions = cluster.partitions_for_topic(topic)
        if partitions is None:
            raise ValueError(f"Topic {topic} not found in ClusterMetadata")
        ordered = self._sorted.get(topic)
        if ordered is None or len(ordered) != len(partitions):
            ordered = self._sorted[topic] = sorted(partitions)
        return ordered[partition_for(serialized_key, len(ordered))]


def make_producer(config: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """An idempotent producer (acks=all): every acknowledged event is written exactly once per send."""
    settings = {"acks": "all", "enable_idempotence": True, "linger_ms": 10, "batch_size": 256 * 1024,
                "max_request_size": config.max_request_bytes, "retries": 2**31 - 1,
                "delivery_timeout_ms": 120_000, "max_in_flight_requests_per_connection": 5,
                "partitioner": KeyPartitioner()}
    settings.update(overrides)
    try:
        return KafkaProducer(**config.client_kwargs(), **settings)
    except (KafkaError, ValueError) as exc:  # kafka-python raises ValueError for unreachable bootstraps
        raise _unreachable(config, exc) from None


class KafkaSink:
    """Produces each event to its type's topic, keyed by its partition key.

    ``flush`` returns once the broker acknowledged every event sent so far, or raises
    :class:`DeliveryError` if any of them failed.
    """

    def __init__(self, producer: KafkaProducer, topic_for: Callable[[str], str]):
        self._producer, self._topic_for = producer, topic_for
        self._failures: list[str] = []
        self._lock = threading.Lock()
        self.sent = 0

    def _on_error(self, exc: BaseException) -> None:
        with self._lock:
            self._failures.append(f"{type(exc).__name__}: {exc}")

    def emit(self, event: Event) -> None:
        try:
            future = self._producer.send(self._topic_for(event.type), key=event.key.encode("utf-8"),
                                         value=event.to_json().encode("utf-8"))
        except KafkaError as exc:
            raise DeliveryError(f"cannot send {event.type} {event.id}: {type(exc).__name__}: {exc}") from None
        future.add_errback(self._on_error)
        self.sent += 1

    def send_raw(self, topic: str, key: str, value: bytes | None) -> None:
        """A record that is not an event (a compacted state record)."""
        try:
            future = self._producer.send(topic, key=key.encode("utf-8"), value=value)
        except KafkaError as exc:
            raise DeliveryError(f"cannot send to {topic}: {type(exc).__name__}: {exc}") from None
        future.add_errback(self._on_error)

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise DeliveryError(f"flush failed: {type(exc).__name__}: {exc}") from None
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise DeliveryError(f"{len(failures)} events were not acknowledged; first: {failures[0]}")


# -- consuming requests ---------------------------------------------------------------------------
class _Listener(ConsumerRebalanceListener):
    def __init__(self, on_assigned: Callable[[set[Partition]], None], on_revoked: Callable[[set[Partition]], None]):
        self._assigned, self._revoked = on_assigned, on_revoked

    def on_partitions_revoked(self, revoked):
        self._revoked({(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_assigned(self, assigned):
        self._assigned({(tp.topic, tp.partition) for tp in assigned})


class RequestConsumer:
    """A group member on the requests topic (or any topics): manual commits, pause/resume per partition.

    Not thread-safe: use it from one thread (the worker's poll loop).
    """

    def __init__(self, config: KafkaConfig, topic: str | list[str], group_id: str, *,
                 on_assigned: Callable[[set[Partition]], None], on_revoked: Callable[[set[Partition]], None],
                 session_timeout_ms: int = 45_000, max_poll_records: int = 50,
                 group_instance_id: str | None = None, max_poll_interval_ms: int = 300_000):
        """:param group_instance_id: join as a static member: a restart under the same id gets its
        partitions back at once, without a rebalance."""
        static = {"group_instance_id": group_instance_id} if group_instance_id else {}
        try:
            self._consumer = KafkaConsumer(
                **config.client_kwargs(), group_id=group_id, enable_auto_commit=False,
                auto_offset_reset="earliest", isolation_level="read_committed",
                session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=max(500, session_timeout_ms // 10),
                max_poll_records=max_poll_records, max_poll_interval_ms=max_poll_interval_ms, **static)
        except (KafkaError, ValueError) as exc:
            raise _unreachable(config, exc) from None
        self._consumer.subscribe([topic] if isinstance(topic, str) else list(topic), listener=_Listener(on_assigned, on_revoked))

    def poll(self, timeout_ms: int = 200) -> list[InboundMessage]:
        batches = self._consumer.poll(timeout_ms=timeout_ms)
        out = []
        for records in batches.values():
            out.extend(InboundMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records)
        return out

    def pause(self, tp: Partition) -> None:
        self._consumer.pause(TopicPartition(*tp))

    def resume(self, tp: Partition) -> None:
        topic_partition = TopicPartition(*tp)
        self._consumer.resume(topic_partition)
        _unpark(self._consumer, topic_partition)

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def group_metadata(self) -> Any:
        """The current group generation, for fencing transactional offset commits (KIP-447)."""
        return self._consumer.group_metadata()

    def seek(self, tp: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(*tp), offset)

    def lag(self) -> dict[Partition, int]:
        """Records after this member's position, per assigned partition (asks the broker)."""
        tps = list(self._consumer.assignment())
        if not tps:
            return {}
        try:
            ends = self._consumer.end_offsets(tps)
            return {(tp.topic, tp.partition): max(0, ends[tp] - self._consumer.position(tp)) for tp in tps}
        except KafkaError as exc:
            log.debug("lag not measured: %s", exc)
            return {}

    def commit(self, tp: Partition, next_offset: int) -> bool:
        """Commit ``next_offset`` for ``tp``; False when the group moved on (the new owner redoes it)."""
        return self.commit_many({tp: next_offset})

    def commit_many(self, offsets: dict[Partition, int]) -> bool:
        """Commit the next offset of several partitions at once; False when the group moved on."""
        if not offsets:
            return True
        try:
            self._consumer.commit({TopicPartition(*tp): OffsetAndMetadata(n, "", -1) for tp, n in offsets.items()})
            return True
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit of %s failed: %s", offsets, exc)
            return False

    def close(self) -> None:
        self._consumer.close(autocommit=False)


# -- requesting and following -----------------------------------------------------------------------
def publish(config: KafkaConfig, topic: str, events: Iterable[Event], timeout_s: float = 30) -> None:
    producer = make_producer(config)
    try:
        sink = KafkaSink(producer, lambda _type: topic)
        for event in events:
            sink.emit(event)
        sink.flush(timeout_s)
    finally:
        producer.close(timeout=5)


class Follower:
    """Reads a topic from its current end (or start) without joining a group."""

    def __init__(self, config: KafkaConfig, topic: str, *, from_start: bool = False):
        try:
            self._consumer = KafkaConsumer(**config.client_kwargs(), enable_auto_commit=False,
                                           isolation_level="read_committed", group_id=None)
        except (KafkaError, ValueError) as exc:
            raise _unreachable(config, exc) from None
        partitions = self._consumer.partitions_for_topic(topic) or set()
        if not partitions:
            self._consumer.close()
            raise TransportError(f"topic {topic} does not exist (start a worker once to create it)")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        (self._consumer.seek_to_beginning if from_start else self._consumer.seek_to_end)(*tps)
        for tp in tps:  # resolve positions now, so nothing published after this point is missed
            self._consumer.position(tp)

    def to_end(self, timeout_s: float = 30) -> Iterator[InboundMessage]:
        """Every record from the current position to the end the topic had when called."""
        tps = list(self._consumer.assignment())
        ends = self._consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(self._consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=200).values():
                for r in records:
                    yield InboundMessage(r.topic, r.partition, r.offset, r.key, r.value)

    def messages(self, deadline: float) -> Iterator[InboundMessage]:
        while time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=200).values():
                for r in records:
                    yield InboundMessage(r.topic, r.partition, r.offset, r.key, r.value)

    def close(self) -> None:
        self._consumer.close()


# -- exactly-once: transactions ---------------------------------------------------------------------
class TransactionalSink:
    """A run's events, state records and request offset, committed together in Kafka transactions.

    The first event after a checkpoint begins a transaction; :meth:`checkpoint` adds the batch's
    state records (to the compacted state topic) and, on the final checkpoint, the request's
    offset (``send_offsets_to_transaction`` with the consumer's group metadata, so a stale member
    is fenced by the broker), then commits. A failure aborts the transaction (nothing of the batch
    becomes visible to ``read_committed`` consumers) and raises :class:`DeliveryError`.
    """

    def __init__(self, producer: KafkaProducer, topic_for: Callable[[str], str], state_topic: str,
                 offset: tuple[Partition, int] | None = None, group_metadata: Any = None):
        self._producer, self._topic_for, self._state_topic = producer, topic_for, state_topic
        self._offset, self._group_metadata = offset, group_metadata
        self._open = False
        self.broken = False
        self.transactions = 0

    def _begin(self) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open = True

    def _fail(self, what: str, exc: Exception) -> DeliveryError:
        try:
            if self._open:
                self._producer.abort_transaction()
        except Exception:  # fenced or fatal: this producer cannot be used again
            self.broken = True
        self._open = False
        return DeliveryError(f"{what}: {type(exc).__name__}: {exc}")

    def emit(self, event: Event) -> None:
        try:
            self._begin()
            self._producer.send(self._topic_for(event.type), key=event.key.encode("utf-8"),
                                value=event.to_json().encode("utf-8"))
        except KafkaError as exc:
            raise self._fail(f"cannot send {event.type}", exc) from None

    def checkpoint(self, state_records: list[tuple[str, bytes | None]], *, final: bool) -> None:
        try:
            self._begin()
            for key, value in state_records:
                self._producer.send(self._state_topic, key=key.encode("utf-8"), value=value)
            if final and self._offset is not None:
                (topic, partition), next_offset = self._offset
                self._producer.send_offsets_to_transaction(
                    {TopicPartition(topic, partition): OffsetAndMetadata(next_offset, "", -1)},
                    self._group_metadata)
            self._producer.commit_transaction()
            self._open = False
            self.transactions += 1
        except KafkaError as exc:
            raise self._fail("transaction not committed", exc) from None

    def abort(self) -> None:
        """Abandon the open transaction, if any (a run given up on purpose)."""
        if self._open:
            self._fail("abandoned", RuntimeError("run abandoned"))


class ProducerPool:
    """Transactional producers, one per concurrent run, with stable transactional ids.

    ``transactional.id`` is ``<prefix>-<slot>``: with a stable prefix (a stable ``--worker-id``)
    a restarted worker fences its predecessor's producers and aborts their open transactions at
    once; otherwise those transactions end by timeout (``transaction_timeout_ms``).
    """

    def __init__(self, config: KafkaConfig, prefix: str, size: int, *, transaction_timeout_ms: int = 60_000):
        self._config, self._prefix, self._timeout = config, prefix, transaction_timeout_ms
        self._free: list[tuple[int, KafkaProducer]] = []
        self._lock = threading.Condition()
        for slot in range(size):
            self._free.append((slot, self._make(slot)))

    def _make(self, slot: int) -> KafkaProducer:
        producer = make_producer(self._config, transactional_id=f"{self._prefix}-{slot}",
                                 transaction_timeout_ms=self._timeout)
        try:
            producer.init_transactions()
        except KafkaError as exc:
            raise TransportError(f"cannot start Kafka transactions: {type(exc).__name__}: {exc}") from None
        return producer

    def take(self) -> tuple[int, KafkaProducer]:
        with self._lock:
            while not self._free:
                self._lock.wait()
            return self._free.pop()

    def give_back(self, slot: int, producer: KafkaProducer, *, broken: bool = False) -> None:
        if broken:
            try:
                producer.close(timeout=5)
            except Exception:
                pass
            producer = self._make(slot)
        with self._lock:
            self._free.append((slot, producer))
            self._lock.notify()

    def close(self) -> None:
        with self._lock:
            for _slot, producer in self._free:
                producer.close(timeout=10)
            self._free.clear()


class StateChangelog:
    """Reads the compacted state topic (read_committed) into a local state database."""

    def __init__(self, config: KafkaConfig, topic: str):
        try:
            self._consumer = KafkaConsumer(**config.client_kwargs(), group_id=None, enable_auto_commit=False,
                                           isolation_level="read_committed", max_poll_records=5000)
        except KafkaError as exc:
            raise _unreachable(config, exc) from None
        partitions = self._consumer.partitions_for_topic(topic) or set()
        self._tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(self._tps)
        self._consumer.seek_to_beginning(*self._tps)
        self._lock = threading.Lock()

    def catch_up(self, apply: Callable[[list[tuple[str, bytes | None]]], None], *, timeout_s: float = 120) -> int:
        """Apply every committed record up to the topic's current end; returns how many."""
        with self._lock:
            ends = self._consumer.end_offsets(self._tps)
            deadline = time.monotonic() + timeout_s
            count = 0
            while any(self._consumer.position(tp) < ends[tp] for tp in self._tps):
                if time.monotonic() > deadline:
                    raise TransportError(f"state topic not read to its end within {timeout_s:.0f}s")
                batch = [(r.key.decode("utf-8"), r.value)
                         for records in self._consumer.poll(timeout_ms=200).values() for r in records]
                if batch:
                    apply(batch)
                    count += len(batch)
            return count

    def close(self) -> None:
        self._consumer.close()
