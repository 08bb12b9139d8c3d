"""The host on a secured broker: TLS + SCRAM-SHA-512 and mutual TLS, the standard authorizer, one
principal per component with only the ACLs of :mod:`hostspec.transport.acls`.

The broker is the project's own (``dev/kafka/kafka.sh`` with ``KAFKA_SECURE=1``), started once for
this module on ``KAFKA_SECURE_PORT`` (default ``KAFKA_PORT`` + 10; the SASL_SSL listener, mutual TLS
on the port + 2) with its data, certificates and passwords in ``KAFKA_SECURE_DATA`` (default a
temporary folder), and stopped at the end (one already running there is used and left running). Every test provisions its own topic prefix and groups
as the admin principal, exactly as an operator would (``python -m hostspec.transport.acls apply``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.requests import SyncRequest
from hostspec.errors import TransportError
from hostspec.topics import Topics
from hostspec.transport import acls
from hostspec.transport.config import KafkaConfig
from hostspec.transport.consumers import RequestConsumer
from hostspec.transport.follower import Follower
from hostspec.transport.producer_pool import ProducerPool
from hostspec.transport.producers import publish
from publisher_360learning.sandbox import SYNC_GROUP, Learning360Sandbox

from .conftest import ServiceProcess, write_connections
from .test_control_plane import session, start_api
from .test_operations import CourseraSandboxStub
from .test_publisher import eventually, start_publisher

pytestmark = [pytest.mark.kafka, pytest.mark.secured]
REPO = Path(__file__).resolve().parents[2]
MODES = ("scram", "mtls")          # SASL_SSL + SCRAM-SHA-512; SSL with a client certificate
REFUSAL_S = 10                     # a principal without rights is told within this many seconds


class SecuredBroker:
    def __init__(self, port: int, data: Path):
        self.port, self.data, self.secrets = port, data, data / "secure"

    def script(self, verb: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_DATA": str(self.data), "KAFKA_SECURE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        env.pop("CONNECTOR_HOST_TOPIC_PREFIX", None)
        return subprocess.run(["bash", str(REPO / "dev/kafka/kafka.sh"), verb], env=env, capture_output=True,
                              text=True, timeout=180)

    def env(self, principal: str, mode: str) -> dict[str, str]:
        """The client settings kafka.sh wrote for ``principal`` (file names only, no secret)."""
        lines = (self.secrets / f"{principal}.{mode}.env").read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def config(self, principal: str, mode: str, **env: str) -> KafkaConfig:
        return KafkaConfig.from_env({**self.env(principal, mode), **env}, client_id=f"it-{principal}")

    def secrets_of(self) -> list[str]:
        """Every password the broker script generated (SCRAM and key passwords)."""
        return [p.read_text().strip() for p in sorted(self.secrets.glob("*.password")) + sorted(self.secrets.glob("*.keypass"))]


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    if not os.environ.get("KAFKA_BOOTSTRAP") and os.environ.get("REQUIRE_KAFKA") != "1":
        pytest.skip("no Kafka broker: run through dev/test, or set KAFKA_BOOTSTRAP")
    port = int(os.environ.get("KAFKA_SECURE_PORT") or int(os.environ.get("KAFKA_PORT", "9092")) + 10)
    data = Path(os.environ.get("KAFKA_SECURE_DATA") or tmp_path_factory.mktemp("kafka-secured"))
    broker = SecuredBroker(port, data)
    if broker.script("status").returncode == 0 and (broker.secrets / ".complete").exists():
        yield broker                   # started by hand (KAFKA_SECURE_PORT, KAFKA_SECURE_DATA): left running
        return
    started = broker.script("start")
    if started.returncode != 0:
        pytest.fail(f"the secured broker did not start:\n{started.stderr[-3000:]}")
    yield broker
    broker.script("stop")


@pytest.fixture
def provisioned(secured, prefix):
    """The topics of this test's prefix and every component's ACLs for them, made by the admin."""
    topics = Topics().with_prefix(prefix)
    groups = acls.Groups(worker=f"{prefix}group", publisher=f"{prefix}publisher", scheduler=f"{prefix}scheduler")
    acls.apply(secured.config("admin", "mtls"), topics, groups=groups)
    return topics, groups


def as_principal(monkeypatch, secured: SecuredBroker, principal: str, mode: str, **extra: str) -> str:
    """Make the processes started next connect as ``principal``; returns its bootstrap servers."""
    for key in [k for k in os.environ if k.startswith("KAFKA_") and k not in ("KAFKA_PORT",)]:
        monkeypatch.delenv(key)
    for key, value in {**secured.env(principal, mode), **extra}.items():
        monkeypatch.setenv(key, value)
    return secured.env(principal, mode)["KAFKA_BOOTSTRAP"]


def final_status(config: KafkaConfig, topic: str, follower: Follower, request_id: str, timeout: float = 90) -> dict:
    for msg in follower.messages(time.monotonic() + timeout):
        data = json.loads(msg.value)["data"]
        if data.get("request_id") == request_id and data["phase"] in ("completed", "partial", "failed"):
            return data
    raise AssertionError(f"no final status for {request_id} on {topic} within {timeout}s")


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
@pytest.mark.parametrize("mode", MODES)
def test_request_worker_publisher_end_to_end_on_the_secured_broker(mode, client, secured, provisioned, prefix,
                                                                   tmp_path, monkeypatch):
    topics, groups = provisioned
    spec = OrgSpec(contents=4, learners=3, enrollments=6)
    with CourseraSandbox(spec) as coursera:
        rows = [coursera.org.row(i) for i in coursera.report_rows()]
        with Learning360Sandbox(users=sorted({r["email"] for r in rows})) as lms:
            connections = write_connections(tmp_path / "c.toml", coursera, group_id=SYNC_GROUP)
            bootstrap = as_principal(monkeypatch, secured, "worker", mode, KAFKA_CLIENT=client)
            worker = ServiceProcess(tmp_path, "worker", [
                sys.executable, "-m", "hostspec", "--connections", str(connections), "run",
                "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", groups.worker,
                "--worker-id", "w1", "--session-timeout-ms", "6000"], {"IT_COURSERA_SECRET": "standin-secret"})
            as_principal(monkeypatch, secured, "publisher", mode)
            publisher = start_publisher(tmp_path, bootstrap, prefix, lms)
            requester = secured.config("requester", mode)
            follower = Follower(requester, topics.status)
            try:
                worker.wait_for(r"serves partitions \[0", timeout=90)
                worker.wait_for(f"transactions through {client}", timeout=5)
                publisher.wait_for("publisher assigned", timeout=90)
                request = SyncRequest(str(uuid.uuid4()), "acme", "coursera", "all", "test")
                publish(requester, topics.requests, [request.to_event(datetime.now(timezone.utc))])
                status = final_status(requester, topics.status, follower, request.request_id)
                assert status["phase"] == "completed", status
                eventually(lambda: len(lms.company.attempts) == len(rows), timeout=60,
                           what="every stat delivered to 360Learning")
                assert len(lms.company.courses) == len(coursera.org.visible_contents(clips=spec.clips_enabled))
            finally:
                follower.close()
                assert publisher.stop(timeout=20) == 0, publisher.log()[-3000:]
                worker.stop(timeout=20)
            logs = worker.log() + publisher.log()
            assert not [s for s in secured.secrets_of() if s in logs], "a Kafka password reached a log"


def within(seconds: float, call) -> BaseException:
    """What ``call`` raised, checked to come within ``seconds``."""
    started = time.monotonic()
    with pytest.raises(TransportError) as raised:
        call()
    took = time.monotonic() - started
    assert took < seconds, f"{raised.value} came after {took:.1f}s"
    return raised.value


@pytest.mark.parametrize("mode", MODES)
def test_a_principal_without_rights_is_told_clearly_and_quickly(mode, secured, provisioned, prefix, tmp_path):
    topics, groups = provisioned
    requester = secured.config("requester", mode)
    request = SyncRequest(str(uuid.uuid4()), "acme", "coursera", "all", "test")
    who = "SASL user 'requester'" if mode == "scram" else "requester.pem"

    # the request-only principal writes requests, and nothing else
    publish(requester, topics.requests, [request.to_event(datetime.now(timezone.utc))])
    refused = within(REFUSAL_S, lambda: publish(requester, topics.courses, [request.to_event(datetime.now(timezone.utc))]))
    assert f"not authorized for the topic {topics.courses}" in str(refused) and who in str(refused)

    # it reads statuses, but no group of its own, and no other topic
    follower = Follower(requester, topics.status)
    follower.close()
    refused = within(REFUSAL_S, lambda: _poll_until_assigned(RequestConsumer(
        requester, topics.status, groups.worker, on_assigned=lambda _p: None, on_revoked=lambda _p: None)))
    assert f"not authorized for the consumer group {groups.worker}" in str(refused)
    refused = within(REFUSAL_S, lambda: Follower(requester, topics.state))
    assert f"not authorized for the topic {topics.state}" in str(refused)

    # the worker's transactional ids are its own group's only, on either client
    for client in ("kafka-python", "confluent"):
        worker = secured.config("worker", mode, KAFKA_CLIENT=client)
        refused = within(REFUSAL_S, lambda: ProducerPool(worker, f"{prefix}other.w1", 1))
        assert "not authorized for its transactional id" in str(refused), refused

    # credentials refused are named as such, not as an unreachable broker, on either client
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    key = "KAFKA_SASL_PASSWORD_FILE" if mode == "scram" else "KAFKA_SSL_KEY_PASSWORD_FILE"
    refused = within(REFUSAL_S, lambda: publish(secured.config("requester", mode, **{key: str(wrong)}),
                                                topics.requests, []))
    assert ("Authentication failed" if mode == "scram" else "SSLError") in str(refused), refused
    worker = secured.config("worker", mode, KAFKA_CLIENT="confluent", **{key: str(wrong)})
    refused = within(REFUSAL_S, lambda: ProducerPool(worker, f"{groups.worker}.w1", 1))
    assert ("Authentication failed" if mode == "scram" else "ssl.key.location") in str(refused), refused
    assert "not-the-password" not in str(refused)


def _poll_until_assigned(consumer: RequestConsumer, timeout: float = 30) -> None:
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not consumer.assignment():
            consumer.poll(200)
    finally:
        consumer.close()


def test_a_worker_refused_its_group_exits_with_the_reason(secured, provisioned, prefix, tmp_path, monkeypatch):
    """The same refusal, from the command line: one clear line and a failure exit, no retry loop."""
    topics, groups = provisioned
    connections = write_connections(tmp_path / "c.toml", CourseraSandboxStub())
    bootstrap = as_principal(monkeypatch, secured, "worker", "scram")
    worker = ServiceProcess(tmp_path, "worker", [
        sys.executable, "-m", "hostspec", "--connections", str(connections), "run", "--bootstrap-servers", bootstrap,
        "--topic-prefix", prefix, "--group-id", groups.publisher, "--worker-id", "w1"], {})
    try:
        assert worker.proc.wait(60) != 0
    finally:
        worker.stop(timeout=5)
    assert "not authorized for its transactional id" in worker.log() or "not authorized for the consumer group" in worker.log(), worker.log()[-3000:]


@pytest.mark.parametrize("mode", MODES)
def test_the_admin_api_and_the_scheduler_on_the_secured_broker(mode, secured, provisioned, prefix, tmp_path,
                                                                monkeypatch):
    """The other two components, each as its own principal: the API writes a connection (its
    transactional id) and a request; the scheduler, reading the control topic, publishes the
    connection's due slot as its group's leader."""
    topics, groups = provisioned
    bootstrap = as_principal(monkeypatch, secured, "api", mode)
    api, url = start_api(tmp_path, bootstrap, prefix)
    as_principal(monkeypatch, secured, "scheduler", mode)
    scheduler = ServiceProcess(tmp_path, "scheduler", [
        sys.executable, "-m", "hostspec", "--allow-sandboxes", "--connections", "kafka", "schedule",
        "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", groups.scheduler,
        "--instance", "s1", "--tick", "0.5"], {})
    follower = Follower(secured.config("admin", mode), topics.requests, from_start=True)
    try:
        with CourseraSandbox(OrgSpec(contents=1, learners=1, enrollments=0)) as coursera:
            doc = {"connection": "acme", "tenant": "acme", "provider": "coursera", "group_id": SYNC_GROUP,
                   "settings": {"org_id": coursera.spec.org_id, "client_id": coursera.client_id,
                                "client_secret": {"env": "CONNECTOR_SECRET_ACME__COURSERA"}, "base_url": coursera.url},
                   "schedule": {"timezone": "UTC", "catalog": "0 0 * * *", "progress": "off"}}
            http = session()
            created = http.post(f"{url}/connections", json=doc, timeout=30)
            assert created.status_code == 201, created.text
            asked = http.post(f"{url}/connections/acme/syncs", json={}, timeout=30)
            assert asked.status_code == 202, asked.text
            followed = http.get(f"{url}/requests/{asked.json()['request_id']}", timeout=60)
            assert followed.status_code == 200, followed.text     # the API reads the requests topic (its index)
        scheduler.wait_for("leads", timeout=90)
        seen: dict[str, str] = {}
        for msg in follower.messages(time.monotonic() + 60):
            event = json.loads(msg.value)
            seen[event["id"]] = event["data"]["requested_by"]
            if asked.json()["request_id"] in seen and "scheduler:s1" in seen.values():
                break
        assert asked.json()["request_id"] in seen and "scheduler:s1" in seen.values(), (seen, scheduler.log()[-2000:])
    finally:
        follower.close()
        scheduler.stop(timeout=20)
        api.stop(timeout=20)
    logs = api.log() + scheduler.log()
    assert not [s for s in secured.secrets_of() if s in logs], "a Kafka password reached a log"
