"""A run's output, buffered between checkpoints and written in fenced transactions.

Nothing is open while a provider is called: events are serialized once, size-checked and kept
in memory; a checkpoint writes them with the state records in one transaction
(:func:`~hostspec.transport.transactions.commit_fenced`; the design is :mod:`.transactions`').
"""
from __future__ import annotations

from typing import Callable, Collection

from kafka import KafkaProducer

from hostspec.errors import EventTooLarge
from hostspec.events import Event
from hostspec.transport.cloudevents import STRUCTURED
from hostspec.transport.routing import Router
from hostspec.transport.transactions import OutRecord, Owner, ProducerBroken, commit_fenced

RECORD_OVERHEAD = 1_024          # bytes kept for the record's key, headers and batch framing


class TransactionalSink:
    """A run's events, buffered, and written with its state records at each checkpoint.

    ``emit`` serializes and size-checks an event (:class:`EventTooLarge` for one Kafka would
    refuse) and keeps it; ``checkpoint`` writes the buffer, the state records (to the owner's
    state partition) and the owner's input offset in one fenced transaction
    (:func:`commit_fenced`); the final checkpoint also marks the request finished. Nothing is
    written between checkpoints.
    """

    def __init__(self, producer: KafkaProducer, topic_for: Callable[[str], str], state_topic: str,
                 owner: Owner, *, finishing: Collection[int] = (), max_record_bytes: int = 1_048_576,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_state_written: Callable[[int], None] | None = None):
        """:param on_state_written: told the offset after the last state record of a checkpoint,
        once the engine has applied that checkpoint locally too (:meth:`applied`): where a later
        read-back of the connection's state may start."""
        self._producer, self._topic_for, self._state_topic = producer, topic_for, state_topic
        self._owner, self._finishing, self._should_stop = owner, finishing, should_stop
        self._on_state_written = on_state_written
        self.max_event_bytes = max_record_bytes - RECORD_OVERHEAD
        self._route = Router(producer.partitions_for)
        self._buffer: list[OutRecord] = []
        self._written: int | None = None
        self.broken = False
        self.transactions = 0

    def emit(self, event: Event) -> None:
        value = event.to_bytes()
        if len(value) > self.max_event_bytes:
            raise EventTooLarge(event.type, len(value), self.max_event_bytes)
        topic = self._topic_for(event.type)
        self._buffer.append(OutRecord(topic, self._route(topic, event), event.key.encode("utf-8"), value, STRUCTURED))

    def checkpoint(self, state_records: list[tuple[str, bytes | None]], *, final: bool) -> None:
        records = self._buffer + [OutRecord(self._state_topic, self._owner.state_partition, k.encode("utf-8"), v)
                                  for k, v in state_records]
        try:
            ends = commit_fenced(self._producer, [self._owner], records,
                                 finishing={self._owner.tp: list(self._finishing)} if final and self._owner.tp else None,
                                 should_stop=self._should_stop)
        except ProducerBroken:
            self.broken = True
            raise
        self._buffer = []
        self.transactions += 1
        self._written = ends.get(self._owner.state_partition) if state_records else None

    def applied(self) -> None:
        """The last checkpoint's state is in the local database too (called by the engine)."""
        if self._written is not None and self._on_state_written is not None:
            self._on_state_written(self._written)
        self._written = None

    def abort(self) -> None:
        """Forget what was emitted since the last checkpoint (a run given up)."""
        self._buffer = []


__all__ = ["TransactionalSink"]
