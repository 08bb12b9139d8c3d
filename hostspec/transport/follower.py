"""Reading a topic without joining a group: a command following the status events of its request."""
from __future__ import annotations

import time
from typing import Iterator

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from hostspec.errors import TransportError
from hostspec.transport.admin import await_topics
from hostspec.transport.cloudevents import structured_value
from hostspec.transport.config import KafkaConfig
from hostspec.transport.consumers import InboundMessage
from hostspec.transport.kafka import kafka_client


class Follower:
    """Reads a topic from its current end (or start) without joining a group."""

    def __init__(self, config: KafkaConfig, topic: str, *, from_start: bool = False):
        self._consumer = kafka_client(config, KafkaConsumer, enable_auto_commit=False, isolation_level="read_committed",
                                 group_id=None)
        try:
            if not await_topics(self._consumer, [topic], timeout_s=5, config=config)[topic]:
                raise TransportError(f"topic {topic} does not exist (start a worker once to create it)")
        except TransportError:
            self._consumer.close()
            raise
        partitions = self._consumer.partitions_for_topic(topic) or set()
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
                    yield InboundMessage(r.topic, r.partition, r.offset, r.key, structured_value(r.headers, r.value))

    def messages(self, deadline: float) -> Iterator[InboundMessage]:
        while time.monotonic() < deadline:
            for records in self._consumer.poll(timeout_ms=200).values():
                for r in records:
                    yield InboundMessage(r.topic, r.partition, r.offset, r.key, structured_value(r.headers, r.value))

    def close(self) -> None:
        self._consumer.close()
