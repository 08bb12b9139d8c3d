"""Integration tests on the real Kafka broker started by dev/kafka/kafka.sh (see dev/test).

``KAFKA_BOOTSTRAP`` names the broker. Without it these tests are skipped, unless
``REQUIRE_KAFKA=1`` (set by dev/test and so by CI), where a missing broker is a failure.
Every test uses its own topic prefix and consumer group, so tests never see each other's data.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from hostspec.topics import Topics
from tests.conftest import connections_toml

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="session")
def bootstrap():
    value = os.environ.get("KAFKA_BOOTSTRAP")
    if not value:
        if os.environ.get("REQUIRE_KAFKA") == "1":
            pytest.fail("REQUIRE_KAFKA=1 but KAFKA_BOOTSTRAP is not set")
        pytest.skip("no Kafka broker: run through dev/test, or set KAFKA_BOOTSTRAP")
    return value


@pytest.fixture
def prefix():
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def topics(prefix):
    return Topics().with_prefix(prefix)


def write_connections(path: Path, sandbox, names=("acme",), group_id: str = "65a1b2c3d4e5f60718293a4b",
                      **settings) -> Path:
    path.write_text(connections_toml(sandbox.url, secret_env="IT_COURSERA_SECRET", names=names,
                                     org_id=sandbox.spec.org_id, group_id=group_id, **settings))
    return path


class ServiceProcess:
    """A long-running command in a subprocess, its log in a file."""

    def __init__(self, tmp_path: Path, name: str, cmd: list[str], env: dict[str, str]):
        self.name = name
        self.log_path = tmp_path / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **env})

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {pattern!r} within {timeout}s:\n{self.log()[-3000:]}")

    def assigned(self) -> list[int]:
        found = re.findall(r"serves partitions \[([0-9, ]*)\]", self.log())
        return [int(x) for x in found[-1].split(",") if x.strip()] if found else []

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


class WorkerProcess(ServiceProcess):
    """``connector-host run``."""

    def __init__(self, tmp_path: Path, bootstrap: str, prefix: str, connections: Path, name: str,
                 group: str, *extra: str):
        super().__init__(tmp_path, name, [
            sys.executable, "-m", "hostspec", "--connections", str(connections), "run",
            "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", group,
            "--worker-id", name, "--session-timeout-ms", "6000", *extra], {"IT_COURSERA_SECRET": "standin-secret"})


@pytest.fixture
def workers(tmp_path, bootstrap, prefix):
    started: list[WorkerProcess] = []

    def start(connections: Path, name: str = "w1", group: str | None = None, *extra: str) -> WorkerProcess:
        worker = WorkerProcess(tmp_path, bootstrap, prefix, connections, name, group or f"{prefix}group", *extra)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10)


def read_topic(bootstrap: str, topic: str, *, until=None, timeout: float = 30, committed_only=True,
               raw: bool = False) -> list:
    """Every value of ``topic`` from the beginning, as parsed JSON (``raw``: as bytes, keys
    included), stopping when ``until(values)``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level="read_committed" if committed_only else "read_uncommitted")
    partitions = consumer.partitions_for_topic(topic) or set()
    deadline = time.monotonic() + timeout
    while not partitions and time.monotonic() < deadline:
        time.sleep(0.2)
        partitions = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    values: list[dict] = []
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=300).values():
            values.extend((r.key, r.value) if raw else json.loads(r.value) for r in records)
        if until is not None and until(values):
            break
        if until is None and all(consumer.position(tp) >= consumer.end_offsets([tp])[tp] for tp in tps):
            break
    consumer.close()
    return values


def statuses_for(values: list[dict], request_id: str) -> list[dict]:
    return [v["data"] for v in values if v["data"].get("request_id") == request_id]


def final_status(bootstrap: str, topics: Topics, request_id: str, timeout: float = 60) -> dict:
    def done(values):
        return any(s["phase"] in ("completed", "partial", "failed") for s in statuses_for(values, request_id))

    values = read_topic(bootstrap, topics.status, until=done, timeout=timeout)
    finals = [s for s in statuses_for(values, request_id) if s["phase"] in ("completed", "partial", "failed")]
    assert finals, f"no final status for {request_id}: {statuses_for(values, request_id)}"
    return finals[-1]


def slow_reports(sandbox, delay_s: float) -> None:
    """Make every enrollment-report page of the sandbox take ``delay_s`` (a long sync, on demand)."""
    import requests

    rule = {"route": "*/enrollmentReports", "action": "latency", "delay_s": delay_s, "times": None}
    assert requests.post(sandbox.url + "/_sandbox/faults", json=rule, timeout=5).status_code == 201


def publish_raw(bootstrap: str, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None):
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, value=value, key=key, partition=partition).get(timeout=30)
    producer.close()


def request_event(connection: str, provider: str = "coursera", scope: str = "all") -> tuple[str, bytes]:
    from datetime import datetime, timezone

    from hostspec.requests import SyncRequest

    request = SyncRequest(str(uuid.uuid4()), connection, provider, scope, "test")
    return request.request_id, request.to_event(datetime.now(timezone.utc)).to_json().encode()
