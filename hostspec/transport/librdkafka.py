"""The worker's transactional producer on librdkafka (confluent-kafka), behind kafka-python's shape.

``KAFKA_CLIENT=confluent`` makes :class:`~.producer_pool.ProducerPool` build these instead of
kafka-python producers (this module is imported only then). Only the worker's transactional output moves: its
consumer, its rebalance handling and every other producer stay on kafka-python. The reason is cost:
kafka-python spends about 40 µs of Python per record sent (accumulator, futures, its sender thread
under the GIL); librdkafka does that work in C threads (see BENCHMARKS.md).

:class:`TransactionalProducer` offers exactly what :func:`~.transactions.transact` calls on a
kafka-python producer, so the fencing, the retries and the classification of failures stay in one
place. Errors come back as the kafka-python exception of the same Kafka protocol error code
(``kafka.errors.for_code``): both clients speak the broker's codes, and the classification in
:mod:`.transactions` is written in them. librdkafka's own (negative) codes are mapped below.

The group metadata that fences each transaction (KIP-447) comes from the kafka-python consumer;
librdkafka takes it in its own serialized form, which :func:`group_metadata_bytes` writes.
"""
from __future__ import annotations

import logging
import struct
import threading
import time
from typing import Any, NamedTuple

import confluent_kafka as ck
from kafka import errors as kerr

from hostspec.transport.config import KafkaConfig
from hostspec.transport.stuck import Stuck

log = logging.getLogger(__name__)
STEP_MARGIN_S = 5.0         # a transaction may take transaction_timeout_ms + this, then the producer is given up
ABORT_TIMEOUT_S = 30.0      # as transact() gives kafka-python's abort
PARTITIONS_TTL_S = 60.0     # how long a topic's partition list is trusted
INIT_SLICE_S = 1.0          # init_transactions is asked again this often (a timed-out call resumes)


class RecordMetadata(NamedTuple):
    partition: int
    offset: int


class Delivery:
    """A record's acknowledgement, as kafka-python's future shows it to :func:`~.transactions.transact`."""

    __slots__ = ("value", "exception")

    def __init__(self) -> None:
        self.value: RecordMetadata | None = None
        self.exception: BaseException | None = None

    def succeeded(self) -> bool:
        return self.value is not None and self.exception is None

    def _done(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.exception = translate(err)
        else:
            self.value = RecordMetadata(msg.partition(), msg.offset())


def group_metadata_bytes(metadata: Any) -> bytes:
    """kafka-python's ``ConsumerGroupMetadata`` in librdkafka's serialized form.

    What ``rd_kafka_consumer_group_metadata_write`` writes: ``CGMDv2:``, the generation as a
    native int32, the group id and member id NUL-terminated, then a byte telling whether the
    group instance id is absent (1) or present (0, followed by it NUL-terminated).
    """
    instance = metadata.group_instance_id
    tail = b"\x01" if instance is None else b"\x00" + instance.encode("utf-8") + b"\x00"
    return (b"CGMDv2:" + struct.pack("=i", metadata.generation_id) + metadata.group_id.encode("utf-8") + b"\x00"
            + metadata.member_id.encode("utf-8") + b"\x00" + tail)


# Kafka refuses this principal: said as such even when librdkafka makes the producer fatal for it
# (a transactional id not granted is), so that the caller names the missing right.
REFUSED = frozenset({ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, ck.KafkaError.GROUP_AUTHORIZATION_FAILED,
                     ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED, ck.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                     ck.KafkaError.SASL_AUTHENTICATION_FAILED})


def translate(error: Any) -> BaseException:
    """A librdkafka ``KafkaError`` as the kafka-python exception :mod:`.transactions` classifies."""
    code, text = error.code(), error.str()
    if code in REFUSED:
        return kerr.for_code(code)(text)
    if code == ck.KafkaError._AUTHENTICATION:     # SASL or TLS refused while connecting
        return kerr.SaslAuthenticationFailedError(text)
    if error.fatal() or code in (ck.KafkaError._FENCED, ck.KafkaError._FATAL):
        return kerr.ProducerFencedError(text)
    if code == ck.KafkaError._TIMED_OUT:       # a transactional step's timeout: outcome unknown, producer given up
        return Stuck(text)
    if code == ck.KafkaError._STATE:
        return kerr.IllegalStateError(text)
    if code == ck.KafkaError._MSG_TIMED_OUT:
        return kerr.KafkaTimeoutError(text)
    if code >= 0:
        return kerr.for_code(code)(text)
    return kerr.KafkaConnectionError(f"{error.name()}: {text}")   # other local errors: transient


class TransactionalProducer:
    """A confluent-kafka transactional producer with the calls :func:`~.transactions.transact` makes.

    As :func:`~.transactions.transact` bounds kafka-python's steps, one deadline bounds a whole
    transaction here: ``transaction_timeout_ms`` + :data:`STEP_MARGIN_S` from its begin; past it a
    step raises :class:`~.stuck.Stuck` (outcome unknown: the producer is replaced).
    """

    def __init__(self, config: KafkaConfig, *, transactional_id: str, transaction_timeout_ms: int = 60_000,
                 linger_ms: int = 10):
        self.config = {"transaction_timeout_ms": transaction_timeout_ms}
        self._span = transaction_timeout_ms / 1000 + STEP_MARGIN_S
        self._deadline = 0.0
        self._refused: BaseException | None = None    # the transaction can take no more records
        settings = config.librdkafka_settings()
        settings.update({"transactional.id": transactional_id, "transaction.timeout.ms": transaction_timeout_ms,
                         "enable.idempotence": True, "acks": "all", "linger.ms": linger_ms,
                         # keyed records without a partition land where the Java client (and
                         # kafka-python's partitioner) puts them: murmur2 of the key
                         "partitioner": "murmur2_random"})
        self._refusal: BaseException | None = None      # the broker refused the credentials
        self._producer = ck.Producer({**settings, "error_cb": self._on_error}, logger=log)
        self._partitions: dict[str, tuple[float, set[int]]] = {}
        self._lock = threading.Lock()

    def _call(self, step: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return step(*args, **kwargs)
        except ck.KafkaException as exc:
            raise translate(exc.args[0]) from None

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise Stuck("no answer from Kafka within the transaction's deadline")
        return left

    def _on_error(self, error: Any) -> None:
        """librdkafka's errors outside any call (its threads'): a refusal of the credentials is kept."""
        if error.code() in (ck.KafkaError._AUTHENTICATION, ck.KafkaError.SASL_AUTHENTICATION_FAILED):
            self._refusal = translate(error)

    def init_transactions(self) -> None:
        """Register the transactional id (fencing its earlier producers). librdkafka keeps trying a
        broker that refuses the credentials until the call times out: asked in short slices, the
        refusal ends it at once."""
        deadline = time.monotonic() + self._span
        while True:
            try:
                self._call(self._producer.init_transactions, min(INIT_SLICE_S, max(0.1, deadline - time.monotonic())))
                return
            except Stuck:
                self._producer.poll(0)        # serves error_cb
                if self._refusal is not None:
                    raise self._refusal from None
                if time.monotonic() >= deadline:
                    raise

    def begin_transaction(self) -> None:
        self._deadline, self._refused = time.monotonic() + self._span, None
        self._call(self._producer.begin_transaction)

    def send_offsets_to_transaction(self, offsets: dict[Any, Any], group_metadata: Any) -> None:
        positions = [ck.TopicPartition(tp.topic, tp.partition, meta.offset) for tp, meta in offsets.items()]
        self._call(self._producer.send_offsets_to_transaction, positions, group_metadata_bytes(group_metadata),
                   self._left())

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None, partition: int | None = None,
             headers: list[tuple[str, bytes]] | None = None) -> Delivery:
        delivery = Delivery()
        if self._refused is not None:
            delivery.exception = self._refused
            return delivery
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": delivery._done}
        if partition is not None:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                self._call(self._producer.produce, topic, **kwargs)
                return delivery
            except BufferError:       # the local queue is full: let librdkafka send some first
                self._producer.poll(0.05)
            except kerr.IllegalStateError as exc:
                # a record already refused put the transaction in its abortable state, and librdkafka
                # takes no more records: stop sending; the commit raises the refusal itself (what
                # it means is then judged by its code), and the transaction is aborted
                self._refused = delivery.exception = exc
                return delivery

    def commit_transaction(self) -> None:
        # commit_transaction serves the delivery callbacks before it returns; poll(0) hands over any
        # still queued (none, measured), so that no Delivery is judged before its callback ran
        self._call(self._producer.commit_transaction, self._left())
        self._producer.poll(0)

    def abort_transaction(self) -> None:
        self._call(self._producer.abort_transaction, ABORT_TIMEOUT_S)
        self._producer.poll(0)

    def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, from metadata at most :data:`PARTITIONS_TTL_S` old (partitions
        may be added to a topic while the worker runs)."""
        now = time.monotonic()
        with self._lock:
            seen, known = self._partitions.get(topic, (0.0, set()))
        if not known or now - seen > PARTITIONS_TTL_S:
            found = self._call(self._producer.list_topics, topic, self._span).topics.get(topic)
            if found is None or found.error is not None:
                raise kerr.UnknownTopicOrPartitionError(f"topic {topic} not found")
            known = set(found.partitions)
            with self._lock:
                self._partitions[topic] = (now, known)
        return known

    def close(self, timeout: float = 10) -> None:
        """Stop the producer for good: queued records dropped, an open transaction aborted
        (librdkafka's ``close``), within ``timeout`` seconds; past it the close goes on in the
        background and the producer is dropped anyway."""
        producer = self._producer
        try:
            producer.purge()
        except Exception:
            pass

        def close() -> None:
            try:
                producer.close()
            except ck.KafkaException as exc:   # a producer in a fatal state says why again: it is given up anyway
                log.debug("librdkafka producer closed: %s", exc)

        closer = threading.Thread(target=close, name="librdkafka-close", daemon=True)
        closer.start()
        closer.join(timeout)
