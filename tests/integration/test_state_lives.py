"""On the broker: a connection's state belongs to that connection's life, and a worker's kept
local state belongs to one state topic, not to its name (issue 27)."""
from __future__ import annotations

import re
import sys
import time

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.engine.state import SEP
from hostspec.runtime.tasks import home_partition
from hostspec.transport.admin import ensure_topics
from hostspec.transport.config import KafkaConfig, topic_specs

from .conftest import ServiceProcess, final_status, publish_raw, request_event, write_connections

pytestmark = pytest.mark.kafka
GROUP = "65a1b2c3d4e5f60718293a4b"


def _counts(status: dict) -> tuple[int, int]:
    assert status["phase"] == "completed", status
    return status["counts"]["courses_emitted"], status["counts"]["stats_emitted"]


def _sync(bootstrap, topics, name: str) -> tuple[int, int]:
    request_id, value = request_event(name)
    publish_raw(bootstrap, topics.requests, value, key=name.encode(), partition=home_partition(name, 6))
    return _counts(final_status(bootstrap, topics, request_id, timeout=120))


def test_a_connection_deleted_and_created_again_emits_every_course_and_stat(tmp_path, bootstrap, prefix, topics,
                                                                          plugins, monkeypatch):
    from hostspec.control.plane import ControlPlane
    from hostspec.config.policy import SettingsPolicy
    from hostspec.config.control_topic import ConnectionLog, ConnectionWriter

    config = KafkaConfig.from_env(bootstrap_servers=bootstrap)
    ensure_topics(config, topic_specs(topics))
    policy = SettingsPolicy(allow_sandboxes=True)
    with CourseraSandbox(OrgSpec(contents=10, learners=6, enrollments=25)) as sb:
        body = {"tenant": "acme", "provider": "coursera", "group_id": GROUP, "options": {"catalog_complete_days": 0},
                "settings": {"org_id": sb.spec.org_id, "client_id": sb.client_id, "base_url": sb.url,
                             "client_secret": {"env": "CONNECTOR_SECRET_ACME__COURSERA"}}}
        writer = ConnectionWriter(config, topics.connections)
        log = ConnectionLog(config, topics.connections, policy=policy).start()
        writer.attach(log)
        plane = ControlPlane(plugins, config, topics, policy, log=log, writer=writer)
        worker = ServiceProcess(tmp_path, "worker", [
            sys.executable, "-m", "hostspec", "--connections", "kafka", "--allow-sandboxes", "run",
            "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", f"{prefix}group",
            "--worker-id", "w1", "--session-timeout-ms", "6000"], {"CONNECTOR_SECRET_ACME__COURSERA": sb.client_secret})
        try:
            worker.wait_for(r"serves partitions \[0", timeout=90)
            plane.put("acme", body, actor="test")
            first = _sync(bootstrap, topics, "acme")
            assert first[0] > 0 and first[1] > 0
            assert _sync(bootstrap, topics, "acme") == (0, 0)          # its state is kept: nothing changed
            plane.delete("acme", actor="test")
            plane.put("acme", body, actor="test")                      # the same name, the same settings
            assert _sync(bootstrap, topics, "acme") == first, worker.log()[-3000:]
            assert "state of earlier incarnations of acme forgotten" in worker.log()
        finally:
            worker.stop(timeout=30)
            plane.close()


def _topic_id(admin: KafkaAdminClient, topic: str) -> str | None:
    described = [t for t in admin.describe_topics([topic]) if t.get("name") == topic and not t.get("error_code")]
    return str(described[0]["topic_id"]) if described and described[0].get("topic_id") else None


def _create_again(bootstrap: str, config: KafkaConfig, topics, topic: str) -> None:
    """Delete ``topic`` and create it again under the same name (another topic id)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        before = _topic_id(admin, topic)
        assert before is not None
        admin.delete_topics([topic])
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the state topic was not created again within 60 s"
            ensure_topics(config, [s for s in topic_specs(topics) if s.name == topic])
            now = _topic_id(admin, topic)
            if now is not None and now != before:
                return
            time.sleep(0.5)
    finally:
        admin.close()


def test_a_state_topic_created_again_is_restored_from_what_it_holds_not_from_the_kept_file(tmp_path, bootstrap,
                                                                                        prefix, topics, workers):
    """The worker keeps its local state file; the state topic is deleted and created again with
    as many records as the file's recorded position (so the position alone looks valid). The
    restarted worker must read the new topic from its start: acme's old state is gone."""
    config = KafkaConfig.from_env(bootstrap_servers=bootstrap)
    state_dir = tmp_path / "state"
    home = home_partition("acme", 6)
    with CourseraSandbox(OrgSpec(contents=10, learners=6, enrollments=25)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb)
        first = workers(conns, "w1", None, "--state-dir", str(state_dir))
        first.wait_for(r"serves partitions \[0", timeout=90)
        fresh = _sync(bootstrap, topics, "acme")
        assert fresh[0] > 0 and _sync(bootstrap, topics, "acme") == (0, 0)
        first.kill()                                              # its local files stay
        assert re.search(rf"state of partition {home} restored", first.log()), first.log()[-3000:]

        _create_again(bootstrap, config, topics, topics.state)
        # the new topic holds other records, more of them than the kept file's position
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
        filler = 200
        for i in range(filler):
            key = SEP.join(("e", "acme/other/0000000000000000", "course", f"x{i}")).encode()
            producer.send(topics.state, key=key, value=b'{"fp": "x", "memo": null}', partition=home)
        producer.flush(30)
        producer.close()

        second = workers(conns, "w1", None, "--state-dir", str(state_dir))
        second.wait_for(rf"state of partition {home} restored", timeout=90)
        assert _sync(bootstrap, topics, "acme") == fresh          # nothing of the old topic's state served
        restored = re.search(rf"state of partition {home} restored: (\d+) records read \(([^)]*)\), (\d+) entities",
                             second.log())
        assert "the topic was created again since" in second.log(), second.log()[-3000:]
        assert restored and restored.groups() == (str(filler), "from the start", str(filler))   # the new topic's
