"""Operating the host on the real broker: two schedulers publish each slot once, the worker runs a
request id once, replays and dry runs, the status view."""
from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.requests import SyncRequest

from .conftest import ServiceProcess, final_status, publish_raw, read_topic, statuses_for, write_connections

pytestmark = pytest.mark.kafka


def scheduler(tmp_path, bootstrap, prefix, connections, name):
    return ServiceProcess(tmp_path, name, [
        sys.executable, "-m", "hostspec", "--log-format", "json", "--connections", str(connections), "schedule",
        "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", f"{prefix}scheduler",
        "--instance", name, "--tick", "0.5"], {"IT_COURSERA_SECRET": "x"})


def test_two_schedulers_publish_each_slot_once_even_across_failover(tmp_path, bootstrap, prefix, topics):
    # a daily slot already past today: a fresh scheduler catches it up, once
    connections = write_connections(tmp_path / "c.toml", CourseraSandboxStub(), names=("acme", "beta"))
    with connections.open("a") as fh:
        fh.write('\n[connections.beta.schedule]\ntimezone = "UTC"\ncatalog = "0 0 * * *"\nprogress = "off"\n')
    first = scheduler(tmp_path, bootstrap, prefix, connections, "s1")
    second = scheduler(tmp_path, bootstrap, prefix, connections, "s2")
    try:
        leader = None
        deadline = time.monotonic() + 60
        while leader is None and time.monotonic() < deadline:
            leader = next((s for s in (first, second) if "leads" in s.log()), None)
            time.sleep(0.2)
        assert leader is not None, first.log() + second.log()
        requests = read_topic(bootstrap, topics.requests, until=lambda v: len(v) >= 3, timeout=30)
        time.sleep(3)                                         # a few more ticks of both schedulers
        requests = read_topic(bootstrap, topics.requests, timeout=10)
        jobs = sorted((r["data"]["connection"], r["data"]["scope"]) for r in requests)
        assert jobs == [("acme", "catalog"), ("acme", "progress"), ("beta", "catalog")]
        assert all(r["data"]["requested_by"] == f"scheduler:{leader.name}" for r in requests)

        other = second if leader is first else first
        leader.kill()                                         # the other takes over, reads the last slots
        other.wait_for("leads", timeout=60)
        time.sleep(3)
        assert len(read_topic(bootstrap, topics.requests, timeout=10)) == 3
    finally:
        for s in (first, second):
            s.stop(timeout=10)


class CourseraSandboxStub:
    """Connections for the scheduler only (it never calls the provider)."""
    url = "http://127.0.0.1:9"

    class spec:
        org_id = "DjYCkBQTQV69TtWA7RuNug"


def test_the_worker_runs_a_request_id_once(tmp_path, bootstrap, topics, workers):
    with CourseraSandbox(OrgSpec(contents=5, learners=3, enrollments=9)) as sb:
        worker = workers(write_connections(tmp_path / "c.toml", sb))
        worker.wait_for(r"serves partitions \[0")
        request = SyncRequest(str(uuid.uuid5(uuid.NAMESPACE_URL, "slot")), "acme", "coursera", "catalog", "test")
        value = request.to_event(datetime.now(timezone.utc)).to_json().encode()
        publish_raw(bootstrap, topics.requests, value, key=b"acme")
        assert final_status(bootstrap, topics, request.request_id)["phase"] == "completed"
        publish_raw(bootstrap, topics.requests, value, key=b"acme")   # the same slot, published again
        worker.wait_for("already ran for acme")
        statuses = statuses_for(read_topic(bootstrap, topics.status, until=lambda v: len(statuses_for(
            v, request.request_id)) >= 3, timeout=20), request.request_id)
        assert [s["phase"] for s in statuses] == ["started", "completed", "skipped"]
        assert statuses[-1]["error"]["kind"] == "duplicate_request"


def test_replay_dry_run_emits_only_statuses_and_status_lists_runs(tmp_path, bootstrap, prefix, topics, workers):
    with CourseraSandbox(OrgSpec(contents=6, learners=4, enrollments=12)) as sb:
        connections = write_connections(tmp_path / "c.toml", sb)
        worker = workers(connections)
        worker.wait_for(r"serves partitions \[0")
        base = [sys.executable, "-m", "hostspec", "--connections", str(connections)]
        kafka = ["--bootstrap-servers", bootstrap, "--topic-prefix", prefix]
        done = subprocess.run([*base, "replay", "--connection", "acme", *kafka, "--timeout", "60"],
                              capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stdout + done.stderr
        courses_before = len(read_topic(bootstrap, topics.courses, timeout=10))
        stats_before = len(read_topic(bootstrap, topics.learner_stats, timeout=10))
        dry = subprocess.run([*base, "replay", "--connection", "acme", "--dry-run", "--since", "2025-01-01",
                              "--learner", sb.org.learner(0)["email"], *kafka, "--timeout", "60"],
                             capture_output=True, text=True, timeout=90)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        request_id = dry.stdout.split("request ")[1].split()[0]
        statuses = statuses_for(read_topic(bootstrap, topics.status, timeout=10), request_id)
        assert statuses and all(s["dry_run"] for s in statuses) and statuses[-1]["phase"] == "completed"
        assert statuses[-1]["counts"]["stats_emitted"] > 0          # what would have been sent
        assert len(read_topic(bootstrap, topics.courses, timeout=10)) == courses_before
        assert len(read_topic(bootstrap, topics.learner_stats, timeout=10)) == stats_before

        shown = subprocess.run([*base, "status", "--connection", "acme", *kafka], capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0, shown.stderr
        lines = shown.stdout.splitlines()
        assert len(lines) == 2 and "completed (dry run)" in lines[1] and "completed" in lines[0]
