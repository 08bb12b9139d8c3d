"""The transactional producers of a worker: one per concurrent run, with stable ids, on
kafka-python or (``KAFKA_CLIENT=confluent``) librdkafka."""
from __future__ import annotations

import threading
from typing import Any

from kafka import KafkaProducer

from hostspec.errors import TransportError
from hostspec.transport.config import KafkaConfig
from hostspec.transport.kafka import REFUSALS, refusal
from hostspec.transport.producers import make_producer


class ProducerPool:
    """Transactional producers, one per concurrent run, with stable transactional ids.

    ``transactional.id`` is ``<prefix>-<slot>``. Fencing of stale members is done by the group
    metadata of each transaction (EOS v2), not by the id; a stable id (a stable ``--worker-id``)
    additionally lets a restarted worker abort its predecessor's open transactions at once
    instead of after ``transaction_timeout_ms``. A producer returned broken is closed and its
    slot re-created on the next :meth:`take`, in the taker's thread: a failed re-creation
    raises :class:`TransportError` there and leaves the slot free for a later attempt.
    """

    def __init__(self, config: KafkaConfig, prefix: str, size: int, *, transaction_timeout_ms: int = 60_000):
        self._config, self._prefix, self._timeout = config, prefix, transaction_timeout_ms
        self._free: list[tuple[int, KafkaProducer | None]] = []
        self._lock = threading.Condition()
        self._closed = False
        for slot in range(size):   # all at start: fences the previous incarnation's producers now
            self._free.append((slot, self._make(slot)))

    def _make(self, slot: int) -> Any:
        producer: Any
        try:
            if self._config.client == "confluent":
                # here, not at the top: confluent-kafka is optional (the extra "confluent")
                from hostspec.transport.librdkafka import TransactionalProducer

                producer = TransactionalProducer(self._config, transactional_id=f"{self._prefix}-{slot}",
                                                 transaction_timeout_ms=self._timeout)
            else:
                producer = make_producer(self._config, transactional_id=f"{self._prefix}-{slot}",
                                         transaction_timeout_ms=self._timeout)
        except ImportError as exc:
            raise TransportError(f"KAFKA_CLIENT=confluent needs the confluent-kafka package: {exc}") from None
        except TransportError:
            raise
        except Exception as exc:   # librdkafka refusing its settings (a missing CA file, no SASL password)
            raise TransportError(f"cannot create a Kafka producer: {type(exc).__name__}: {exc}") from None
        try:
            producer.init_transactions()
        except Exception as exc:
            try:
                producer.close(timeout=1)
            except Exception:
                pass
            if isinstance(exc, REFUSALS):   # e.g. the transactional id is not this principal's
                raise refusal(self._config, exc) from None
            raise TransportError(f"cannot start Kafka transactions: {type(exc).__name__}: {exc}") from None
        return producer

    def take(self) -> tuple[int, KafkaProducer]:
        with self._lock:
            while not self._free:
                self._lock.wait()
            slot, producer = self._free.pop()
        if producer is None:
            try:
                producer = self._make(slot)
            except BaseException:
                self.give_back(slot, None)
                raise
        return slot, producer

    def give_back(self, slot: int, producer: KafkaProducer | None, *, broken: bool = False) -> None:
        if broken and producer is not None:
            try:
                producer.close(timeout=5)
            except Exception:
                pass
            producer = None
        with self._lock:
            if self._closed and producer is not None:
                producer.close(timeout=5)
            else:
                self._free.append((slot, producer))
                self._lock.notify()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _slot, producer in self._free:
                if producer is not None:
                    producer.close(timeout=10)
            self._free.clear()


__all__ = ["ProducerPool"]
