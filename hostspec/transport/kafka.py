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
from kafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata, TopicPartition

from ..errors import DeliveryError, TransportError
from ..events import Event
from .config import KafkaConfig, TopicSpec

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
def make_producer(config: KafkaConfig, **overrides: Any) -> KafkaProducer:
    """An idempotent producer (acks=all): every acknowledged event is written exactly once per send."""
    settings = {"acks": "all", "enable_idempotence": True, "linger_ms": 10, "batch_size": 256 * 1024,
                "max_request_size": config.max_request_bytes, "retries": 2**31 - 1,
                "delivery_timeout_ms": 120_000, "max_in_flight_requests_per_connection": 5}
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

    def checkpoint(self, state_records: list[tuple[str, bytes | None]], *, final: bool) -> None:
        if state_records:
            raise DeliveryError("KafkaSink keeps no state; use TransactionalSink for stateful runs")
        self.flush()

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
    """A group member on the requests topic: manual commits, pause/resume per partition.

    Not thread-safe: use it from one thread (the worker's poll loop).
    """

    def __init__(self, config: KafkaConfig, topic: str, group_id: str, *,
                 on_assigned: Callable[[set[Partition]], None], on_revoked: Callable[[set[Partition]], None],
                 session_timeout_ms: int = 45_000, max_poll_records: int = 50):
        try:
            self._consumer = KafkaConsumer(
                **config.client_kwargs(), group_id=group_id, enable_auto_commit=False,
                auto_offset_reset="earliest", isolation_level="read_committed",
                session_timeout_ms=session_timeout_ms, heartbeat_interval_ms=max(500, session_timeout_ms // 10),
                max_poll_records=max_poll_records)
        except (KafkaError, ValueError) as exc:
            raise _unreachable(config, exc) from None
        self._consumer.subscribe([topic], listener=_Listener(on_assigned, on_revoked))

    def poll(self, timeout_ms: int = 200) -> list[InboundMessage]:
        batches = self._consumer.poll(timeout_ms=timeout_ms)
        out = []
        for records in batches.values():
            out.extend(InboundMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records)
        return out

    def pause(self, tp: Partition) -> None:
        self._consumer.pause(TopicPartition(*tp))

    def resume(self, tp: Partition) -> None:
        self._consumer.resume(TopicPartition(*tp))

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def seek(self, tp: Partition, offset: int) -> None:
        self._consumer.seek(TopicPartition(*tp), offset)

    def commit(self, tp: Partition, next_offset: int) -> bool:
        """Commit ``next_offset`` for ``tp``; False when the group moved on (the new owner redoes it)."""
        try:
            self._consumer.commit({TopicPartition(*tp): OffsetAndMetadata(next_offset, "", -1)})
            return True
        except (CommitFailedError, KafkaError) as exc:
            log.warning("commit of %s@%d failed: %s", tp, next_offset, exc)
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

    def messages(self, deadline: float) -> Iterator[InboundMessage]:
        while time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=200).values():
                for r in records:
                    yield InboundMessage(r.topic, r.partition, r.offset, r.key, r.value)

    def close(self) -> None:
        self._consumer.close()
