"""The request consumer on the real broker: pausing and resuming partitions loses nothing."""
from __future__ import annotations

import time

import pytest
from kafka import KafkaProducer

from hostspec.transport.config import KafkaConfig, TopicSpec
from hostspec.transport.kafka import RequestConsumer, ensure_topics

pytestmark = pytest.mark.kafka


def test_regression_pause_resume_never_stalls_a_partition(bootstrap, prefix):
    """kafka-python 3.0 kept records parked after resume() and never fetched the partition again;
    the worker then left requests unprocessed (found by the reliability load test)."""
    config = KafkaConfig(bootstrap_servers=bootstrap)
    topic = f"{prefix}pause"
    ensure_topics(config, [TopicSpec(topic, 2, {})])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(600):
        producer.send(topic, key=str(i % 7).encode(), value=str(i).encode())
    producer.flush()
    producer.close()
    consumer = RequestConsumer(config, topic, f"{prefix}g", on_assigned=lambda _: None, on_revoked=lambda _: None)
    pending: dict = {}
    got: list[tuple] = []
    deadline = time.monotonic() + 60
    while len(got) < 600 and time.monotonic() < deadline:
        for msg in consumer.poll(0 if pending else 200):  # the worker's pattern: pause while busy
            if msg.tp not in pending:
                pending[msg.tp] = []
                consumer.pause(msg.tp)
            pending[msg.tp].append(msg)
        for tp in list(pending):
            got.append((tp, pending[tp].pop(0).offset))
            if not pending[tp]:
                del pending[tp]
                consumer.resume(tp)
    consumer.close()
    assert len(got) == 600 and len(set(got)) == 600
