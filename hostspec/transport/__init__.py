"""Transports: where events go and where requests come from.

Only :mod:`hostspec.transport.kafka` imports the Kafka client; everything else sees the small
interfaces it exposes. JSON-lines and in-memory sinks for the embedded default live in
:mod:`hostspec.sinks`.
"""
from __future__ import annotations

from .config import KafkaConfig, TopicSpec, topic_specs

__all__ = ["KafkaConfig", "TopicSpec", "topic_specs"]
