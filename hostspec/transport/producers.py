"""Plain producers: idempotent, keyed by murmur2, and a sink that reports failures.

:class:`KafkaSink` produces events and reports failures as :class:`DeliveryError` (a refusal as
:class:`PermanentDeliveryError`); :func:`publish` sends a few events and waits for them (a
request, a control record). Exactly-once writes are in :mod:`.transactions`.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable

from kafka import KafkaProducer
from kafka.errors import KafkaError
from kafka.partitioner.default import DefaultPartitioner

from hostspec.errors import DeliveryError, PermanentDeliveryError, TransportError
from hostspec.events import Event
from hostspec.transport.cloudevents import STRUCTURED
from hostspec.transport.config import KafkaConfig, principal_of
from hostspec.transport.kafka import REFUSALS, kafka_client, refused
from hostspec.transport.murmur2 import partition_for
from hostspec.transport.routing import Router


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
    return kafka_client(config, KafkaProducer, **settings)


class KafkaSink:
    """Produces each event to its type's topic, keyed by its partition key.

    ``flush`` returns once the broker acknowledged every event sent so far, or raises
    :class:`DeliveryError` if any of them failed.
    """

    def __init__(self, producer: KafkaProducer, topic_for: Callable[[str], str]):
        self._producer, self._topic_for = producer, topic_for
        self._route = Router(producer.partitions_for)
        self._failures: list[BaseException] = []
        self._lock = threading.Lock()
        self.sent = 0

    def _on_error(self, exc: BaseException) -> None:
        with self._lock:
            self._failures.append(exc)

    def _refused(self, exc: BaseException) -> PermanentDeliveryError:
        """Kafka refuses this principal the write: retrying cannot help."""
        return PermanentDeliveryError(refused(principal_of(getattr(self._producer, "config", {})), exc))

    def emit(self, event: Event) -> None:
        try:
            topic = self._topic_for(event.type)
            future = self._producer.send(topic, key=event.key.encode("utf-8"), value=event.to_bytes(),
                                         partition=self._route(topic, event), headers=STRUCTURED)
        except REFUSALS as exc:
            raise self._refused(exc) from None
        except KafkaError as exc:
            raise DeliveryError(f"cannot send {event.type} {event.id}: {type(exc).__name__}: {exc}") from None
        future.add_errback(self._on_error)
        self.sent += 1

    def send_raw(self, topic: str, key: str, value: bytes | None, partition: int | None = None,
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        """A record as it is (a compacted state record; an event already serialised, with
        ``headers=STRUCTURED``)."""
        try:
            future = self._producer.send(topic, key=key.encode("utf-8"), value=value, partition=partition,
                                         headers=headers)
        except REFUSALS as exc:
            raise self._refused(exc) from None
        except KafkaError as exc:
            raise DeliveryError(f"cannot send to {topic}: {type(exc).__name__}: {exc}") from None
        future.add_errback(self._on_error)

    def close(self, timeout_s: float = 10) -> None:
        self._producer.close(timeout=timeout_s)

    def flush(self, timeout_s: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise DeliveryError(f"flush failed: {type(exc).__name__}: {exc}") from None
        with self._lock:
            failures, self._failures = self._failures, []
        for failure in failures:
            if isinstance(failure, REFUSALS):
                raise self._refused(failure)
        if failures:
            raise DeliveryError(f"{len(failures)} events were not acknowledged; first: "
                                f"{type(failures[0]).__name__}: {failures[0]}")


def publish(config: KafkaConfig, topic: str, events: Iterable[Event], timeout_s: float = 30) -> None:
    producer = make_producer(config)
    try:
        sink = KafkaSink(producer, lambda _type: topic)
        for event in events:
            sink.emit(event)
        sink.flush(timeout_s)
    except PermanentDeliveryError as exc:
        raise TransportError(str(exc)) from None
    finally:
        producer.close(timeout=5)
