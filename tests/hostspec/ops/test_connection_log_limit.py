"""kafka-python's connection errors while the broker is away: at most one line per broker every
30 s, the next one saying how many were not shown (a worker wrote 40 a second)."""
from __future__ import annotations

import io
import json
import logging

from hostspec.ops.logs import ConnectionErrorLimit, setup_logging

NO_NODE = "No node available for metadata refresh - backoff/retry"
DISCONNECTED = "<KafkaTCPTransport [10.0.0.7:9092<-52626]>: socket disconnected"


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(message: str, name: str = "kafka.cluster", level: int = logging.WARNING) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, (), None)


def test_one_line_per_broker_per_interval_then_the_count_of_those_not_shown():
    clock = Clock()
    limit = ConnectionErrorLimit(interval_s=30, clock=clock)
    shown = []
    for i in range(1200):                          # 40 a second for 30 s, about two brokers
        clock.now = 1000 + i / 40
        for message in (NO_NODE, DISCONNECTED):
            r = record(message)
            if limit.filter(r):
                shown.append(r.getMessage())
    assert shown == [NO_NODE, DISCONNECTED]
    clock.now = 1030.5
    later = record(NO_NODE)
    assert limit.filter(later)
    assert later.getMessage() == (f"{NO_NODE} (1199 more connection errors about any broker in the last 30s "
                                  f"not shown)")
    again = record(DISCONNECTED.replace("52626", "52999"))     # the same broker, another local port
    assert limit.filter(again) and "1199 more connection errors about 10.0.0.7:9092" in again.getMessage()


def test_other_records_pass_untouched():
    limit = ConnectionErrorLimit(clock=Clock())
    assert limit.filter(record(NO_NODE))
    for other in (record(NO_NODE, level=logging.INFO),                      # below WARNING
                  record(NO_NODE, name="hostspec.transport.kafka"),        # the host's own line
                  record("Heartbeat session expired", name="kafka.coordinator")):
        assert limit.filter(other) and other.getMessage() in (NO_NODE, "Heartbeat session expired")


def test_the_brokers_named_in_kafka_pythons_lines():
    assert ConnectionErrorLimit.broker_of(DISCONNECTED) == "10.0.0.7:9092"
    assert ConnectionErrorLimit.broker_of("<KafkaConnection node_id=2 broker_version=(4, 1)>: Connection lost") \
        == "node 2"
    assert ConnectionErrorLimit.broker_of("Bootstrap connection to kafka-0.kafka:9092 failed") == "kafka-0.kafka:9092"
    assert ConnectionErrorLimit.broker_of(NO_NODE) == "any broker"
    assert ConnectionErrorLimit.broker_of(LIBRDKAFKA_FAIL) == "127.0.0.1:52993"


LIBRDKAFKA_FAIL = ("FAIL [connector-host#producer-5] [thrd:127.0.0.1:52993/bootstrap]: 127.0.0.1:52993/bootstrap: "
                   "Connect to ipv4#127.0.0.1:52993 failed: Connection refused (after 0ms in state CONNECT)")


def test_librdkafkas_connection_failures_are_limited_too():
    """With KAFKA_CLIENT=confluent, the worker's producers log librdkafka's FAIL lines (at INFO)."""
    limit = ConnectionErrorLimit(clock=Clock())
    shown = [limit.filter(record(LIBRDKAFKA_FAIL.replace("producer-5", f"producer-{i}"),
                                 name="hostspec.transport.librdkafka", level=logging.INFO)) for i in range(1, 6)]
    assert shown == [True, False, False, False, False]
    other = record("transactional id registered", name="hostspec.transport.librdkafka", level=logging.INFO)
    assert limit.filter(other)


def test_the_commands_log_installs_it():
    stream = io.StringIO()
    setup_logging("WARNING", "json", stream=stream)
    try:
        for _ in range(200):
            logging.getLogger("kafka.cluster").warning(NO_NODE)
    finally:
        setup_logging("WARNING")
    lines = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert lines == [NO_NODE]
