"""The broker-liveness probe behind ``/ready`` (hostspec/transport/liveness.py), and group
membership as the worker and the publisher judge it (RequestConsumer.in_group)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from kafka import errors as kerr

from hostspec.errors import TransportError
from hostspec.transport.config import KafkaConfig
from hostspec.transport.consumers import RequestConsumer
from hostspec.transport.liveness import BrokerProbe, Liveness, counts_as_answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_broker_is_alive_only_while_its_last_answer_is_younger_than_the_window():
    clock = Clock()
    liveness = Liveness(window_s=7, clock=clock)
    assert not liveness.alive() and liveness.silence() is None     # never answered: not alive
    liveness.answered()
    clock.now += 6.9
    assert liveness.alive()
    clock.now += 0.2                     # 7.1 s of silence: gone, whether or not a request is pending
    assert not liveness.alive() and abs(liveness.silence() - 7.1) < 1e-9
    liveness.answered()
    assert liveness.alive()


def test_a_refusal_is_an_answer_and_a_connection_error_or_timeout_is_not():
    assert counts_as_answer(None)
    assert counts_as_answer(kerr.ClusterAuthorizationFailedError("denied"))
    for silent in (kerr.KafkaConnectionError("111 ECONNREFUSED"), kerr.NodeNotReadyError("metadata"),
                   kerr.KafkaTimeoutError("timed out"), TransportError("cannot reach Kafka"), OSError("reset")):
        assert not counts_as_answer(silent), silent


def test_the_probe_thread_follows_the_broker_away_and_back():
    up = threading.Event()
    up.set()

    def ask():
        if not up.is_set():
            raise kerr.KafkaConnectionError("111 ECONNREFUSED")

    probe = BrokerProbe(KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), every_s=0.05, window_s=0.5,
                        ask=ask).start()
    try:
        _until(probe.alive, True)
        up.clear()
        gone = time.monotonic()
        _until(probe.alive, False)
        assert time.monotonic() - gone < 0.5 + 1.0
        assert isinstance(probe.last_error, kerr.KafkaConnectionError)
        up.set()
        _until(probe.alive, True)
    finally:
        probe.close()


def test_the_default_probe_reports_an_unreachable_broker_and_leaves_no_thread_behind():
    before = set(threading.enumerate())      # other tests' threads may come and go: only new ones count
    probe = BrokerProbe(KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), timeout_s=0.3)
    for _ in range(3):
        assert probe.probe_once() is False
    assert isinstance(probe.last_error, TransportError), repr(probe.last_error)   # not a bug of the probe
    probe.close()
    # kafka-python's IO thread of each failed attempt stopped
    _until(lambda: sorted(t.name for t in set(threading.enumerate()) - before), [])


def _until(read, expected, timeout=30.0):
    deadline = time.monotonic() + timeout
    while read() != expected:
        assert time.monotonic() < deadline, f"{read} not {expected} within {timeout}s"
        time.sleep(0.02)


def _consumer(generation: int, state: str = "<stable>", heard_s_ago: float = 0.0) -> RequestConsumer:
    now = time.monotonic()
    heartbeat = SimpleNamespace(last_receive=now - heard_s_ago, last_reset=now - 1000)
    kafka = SimpleNamespace(group_metadata=lambda: SimpleNamespace(generation_id=generation, state=state),
                            _coordinator=SimpleNamespace(heartbeat=heartbeat))
    consumer = RequestConsumer.__new__(RequestConsumer)
    consumer._consumer = kafka
    return consumer


def test_a_member_has_a_generation_and_a_heartbeat_answered_within_the_session_timeout():
    assert _consumer(3, heard_s_ago=1).in_group(6)
    assert not _consumer(-1).in_group(6)                      # evicted or never joined: no generation
    assert not _consumer(3, heard_s_ago=8).in_group(6)        # the group gave its partitions away
    assert _consumer(3, state="<rebalancing>", heard_s_ago=8).in_group(6)   # joining: no heartbeat expected
