"""Transports: where events go and where requests come from.

The Kafka clients are imported here and nowhere else in the host (the publisher's service is the
one other user of kafka-python): kafka-python by the modules of this package, confluent-kafka
(librdkafka) by :mod:`.librdkafka` alone, the worker's optional transactional producer
(``KAFKA_CLIENT=confluent``). Everything else sees the small interfaces they expose. JSON-lines and
in-memory sinks for the embedded default live in :mod:`hostspec.engine.sinks`.
"""
from __future__ import annotations

from hostspec.transport.config import KafkaConfig, TopicSpec, topic_specs

__all__ = ["KafkaConfig", "TopicSpec", "topic_specs"]
