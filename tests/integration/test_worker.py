"""The worker on the real broker: requests in, events out, bad input dead-lettered, crashes survived."""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.runtime.tasks import home_partition

from .conftest import (
    final_status,
    publish_raw,
    read_topic,
    request_event,
    slow_reports,
    write_connections,
)

pytestmark = pytest.mark.kafka


def expected_stat_keys(sandbox) -> set[str]:
    keys = set()
    for i in sandbox.report_rows():
        row = sandbox.org.row(i)
        keys.add(f"acme/acme/coursera/stat/{row['contentId']}/{row['externalId']}")
    return keys


@pytest.mark.both_clients
def test_request_sync_cli_runs_through_the_worker(tmp_path, bootstrap, prefix, topics, workers):
    with CourseraSandbox(OrgSpec(contents=25, learners=15, enrollments=80)) as sb:
        worker = workers(write_connections(tmp_path / "c.toml", sb))
        worker.wait_for(r"serves partitions \[0")
        # the client this pass runs the worker's transactions on (dev/test's second pass: confluent)
        assert f"transactions through {os.environ.get('KAFKA_CLIENT') or 'kafka-python'})" in worker.log()
        proc = subprocess.run(
            [sys.executable, "-m", "hostspec", "request-sync", "coursera", "--connection", "acme", "--wait",
             "--timeout", "60", "--bootstrap-servers", bootstrap, "--topic-prefix", prefix],
            capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "completed courses 25" in " ".join(proc.stdout.split())
        request_id = proc.stdout.split("request ")[1].split()[0]

        courses = read_topic(bootstrap, topics.courses, until=lambda v: len(v) >= 25)
        stats = read_topic(bootstrap, topics.learner_stats, until=lambda v: len(v) >= len(sb.report_rows()))
        assert len(courses) == sb.catalog_size()
        assert {c["partitionkey"] for c in stats} == expected_stat_keys(sb)
        assert len(stats) == len(sb.report_rows())
        status = final_status(bootstrap, topics, request_id)
        assert status["phase"] == "completed" and status["worker"] == "w1"
        assert status["counts"]["stats_emitted"] == len(stats)


@pytest.mark.both_clients
def test_other_client_reads_every_value_as_a_cloudevent(tmp_path, bootstrap, topics, workers):
    """Produced by kafka-python, consumed by confluent-kafka (librdkafka)."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    with CourseraSandbox(OrgSpec(contents=10, learners=5, enrollments=30)) as sb:
        worker = workers(write_connections(tmp_path / "c.toml", sb))
        worker.wait_for(r"serves partitions \[0")
        request_id, value = request_event("acme")
        publish_raw(bootstrap, topics.requests, value, key=b"acme")
        assert final_status(bootstrap, topics, request_id)["phase"] == "completed"
        expected = sb.catalog_size() + len(sb.report_rows())

    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topics.courses}-reader",
                                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                                         "enable.auto.commit": False})
    consumer.subscribe([topics.courses, topics.learner_stats, topics.status])
    parsed, statuses = [], []
    deadline = time.monotonic() + 60
    while (len(parsed) < expected or not statuses) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None or msg.error():
            continue
        event = ev.parse_event(msg.value())
        assert msg.key().decode() == event.key
        # the CloudEvents Kafka binding: structured mode, said in a header (issue 16)
        assert dict(msg.headers() or []).get("content-type") == b"application/cloudevents+json; charset=UTF-8"
        (statuses if event.type == ev.SYNC_STATUS else parsed).append(event)
    consumer.close()
    assert len(parsed) == expected and statuses
    assert {e.type for e in parsed} == {ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED}


def test_bad_requests_are_dead_lettered_and_the_worker_keeps_serving(tmp_path, bootstrap, topics, workers):
    with CourseraSandbox(OrgSpec(contents=6, learners=4, enrollments=10)) as sb:
        worker = workers(write_connections(tmp_path / "c.toml", sb))
        worker.wait_for(r"serves partitions \[0")
        unknown_provider_id, unknown_provider = request_event("acme", provider="udemy")
        unknown_conn_id, unknown_conn = request_event("ghost")
        wrong_type = json.loads(request_event("acme")[1])
        wrong_type["type"] = "learning.course.upserted.v1"
        bad = [b"\xff\xfe\x00 not utf-8", b"{not json", json.dumps(wrong_type).encode(), unknown_provider, unknown_conn]
        for value in bad:
            publish_raw(bootstrap, topics.requests, value, partition=0)
        good_id, good = request_event("acme")
        publish_raw(bootstrap, topics.requests, good, partition=0)
        assert final_status(bootstrap, topics, good_id)["phase"] == "completed"

    dead = read_topic(bootstrap, topics.dead_letter, until=lambda v: len(v) >= 5)
    assert len(dead) == 5
    by_offset = {d["data"]["origin"]["offset"]: d["data"] for d in dead}
    assert sorted(by_offset) == [0, 1, 2, 3, 4]
    assert all(d["origin"]["topic"] == topics.requests and d["origin"]["partition"] == 0 for d in by_offset.values())
    assert by_offset[0]["raw_encoding"] == "base64" and base64.b64decode(by_offset[0]["raw_value"]) == bad[0]
    assert by_offset[1]["raw_value"] == "{not json" and "not JSON" in json.dumps(by_offset[1]["errors"])
    assert "expected learning.sync.requested.v1" in json.dumps(by_offset[2]["errors"])
    assert "installed providers: coursera" in by_offset[3]["reason"]
    assert "unknown connection 'ghost'" in by_offset[4]["reason"]
    assert final_status(bootstrap, topics, unknown_provider_id)["phase"] == "failed"
    assert final_status(bootstrap, topics, unknown_conn_id)["error"]["kind"] == "invalid_request"
    assert "refused request" in worker.log() and worker.proc.poll() is None


def test_two_workers_in_one_group_share_requests(tmp_path, bootstrap, topics, workers):
    """Each connection runs on the worker that owns its home partition, whichever partition its
    request was published to (a request elsewhere is forwarded home)."""
    names = [f"conn-{i}" for i in range(12)]
    with CourseraSandbox(OrgSpec(contents=8, learners=5, enrollments=20)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb, names=tuple(names))
        w1 = workers(conns, "w1")
        w1.wait_for(r"serves partitions \[0")
        w2 = workers(conns, "w2")
        deadline = time.monotonic() + 30
        while not (w1.assigned() and w2.assigned() and sorted(w1.assigned() + w2.assigned()) == list(range(6))):
            assert time.monotonic() < deadline, (w1.log()[-2000:], w2.log()[-2000:])
            time.sleep(0.2)
        owner = {p: w.name for w in (w1, w2) for p in w.assigned()}
        chosen = {}   # one connection homed on each worker, published to a partition of the other
        for name in names:
            chosen.setdefault(owner[home_partition(name, 6)], name)
        assert len(chosen) == 2
        ids = {}
        for worker_name, conn in chosen.items():
            other = w2 if worker_name == "w1" else w1
            ids[conn], value = request_event(conn)
            publish_raw(bootstrap, topics.requests, value, key=b"not-the-connection", partition=other.assigned()[0])
        finals = {conn: final_status(bootstrap, topics, rid) for conn, rid in ids.items()}
    assert {s["phase"] for s in finals.values()} == {"completed"}
    assert {conn: s["worker"] for conn, s in finals.items()} == {conn: w for w, conn in chosen.items()}
    assert "forwarded to its home partition" in w1.log() + w2.log()


@pytest.mark.both_clients
def test_worker_killed_mid_sync_leaves_the_request_to_the_other(tmp_path, bootstrap, topics, workers):
    with CourseraSandbox(OrgSpec(contents=20, learners=100, enrollments=1500)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb, page_size=50)
        slow_reports(sb, 0.25)
        w1 = workers(conns, "w1", None, "--status-every", "200", "--batch-size", "100")
        w1.wait_for(r"serves partitions \[0")
        request_id, value = request_event("acme")
        publish_raw(bootstrap, topics.requests, value, key=b"acme", partition=0)
        w1.wait_for(r"request .* from 0@0")
        progress = lambda v: any(s["data"].get("request_id") == request_id and s["data"]["phase"] == "progress"  # noqa: E731
                                 for s in v)
        read_topic(bootstrap, topics.status, until=progress, timeout=60)
        w1.kill()  # mid-sync: the request offset is not committed
        w2 = workers(conns, "w2")
        status = final_status(bootstrap, topics, request_id, timeout=120)
        assert status["phase"] == "completed" and status["worker"] == "w2"
        stats = read_topic(bootstrap, topics.learner_stats, until=lambda v: len({s["id"] for s in v}) >= len(sb.report_rows()))
        assert {s["partitionkey"] for s in stats} == expected_stat_keys(sb)
        courses = read_topic(bootstrap, topics.courses, until=lambda v: len({c["id"] for c in v}) >= sb.catalog_size())
        assert len({c["data"]["external_id"] for c in courses}) == sb.catalog_size()
        assert w2.proc.poll() is None


def test_sigterm_lets_the_running_sync_finish_then_exits(tmp_path, bootstrap, topics, workers):
    with CourseraSandbox(OrgSpec(contents=10, learners=40, enrollments=300)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb, page_size=50)
        slow_reports(sb, 0.3)
        w1 = workers(conns, "w1")
        w1.wait_for(r"serves partitions \[0")
        request_id, value = request_event("acme")
        publish_raw(bootstrap, topics.requests, value, partition=0)
        w1.wait_for(r"request .* from 0@0")
        assert w1.stop(timeout=60) == 0
        assert "finishing running syncs" in w1.log() and "worker w1 stopped" in w1.log()
        assert final_status(bootstrap, topics, request_id)["phase"] == "completed"
        # committed: a new worker of the group does not run it again
        w2 = workers(conns, "w2")
        w2.wait_for(r"serves partitions \[0")
        time.sleep(3)
        assert "request " + request_id not in w2.log()


def test_unreachable_broker_is_a_clear_error(tmp_path):
    conns = tmp_path / "c.toml"
    conns.write_text('[connections.a]\ntenant="t"\nprovider="coursera"\ngroup_id="g"\n[connections.a.settings]\n'
                     'org_id="x"\nclient_id="y"\nclient_secret="zzzz"\n')
    proc = subprocess.run([sys.executable, "-m", "hostspec", "--connections", str(conns), "request-sync", "coursera",
                           "--connection", "a", "--bootstrap-servers", "127.0.0.1:1"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "KAFKA_CONNECT_TIMEOUT_MS": "2000"})
    assert proc.returncode == 1 and "cannot reach Kafka at 127.0.0.1:1" in proc.stderr


def test_requests_for_one_connection_never_run_in_parallel(tmp_path, bootstrap, topics, workers):
    """Whatever partition a request lands on, and whichever worker owns it, a connection's runs
    happen one after the other on the worker that owns its home partition."""
    with CourseraSandbox(OrgSpec(contents=10, learners=20, enrollments=150)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb, page_size=25)
        slow_reports(sb, 0.2)
        fleet = [workers(conns, f"w{i}", None, "--concurrency", "4") for i in (1, 2)]
        deadline = time.monotonic() + 60
        while sorted(p for w in fleet for p in w.assigned()) != list(range(6)):
            assert time.monotonic() < deadline, [w.log()[-2000:] for w in fleet]
            time.sleep(0.2)
        ids = []
        for partition in range(6):  # six partitions on two workers: they could run them all at once
            rid, value = request_event("acme")
            ids.append(rid)
            publish_raw(bootstrap, topics.requests, value, partition=partition)
        finals = [final_status(bootstrap, topics, rid, timeout=120) for rid in ids]
    assert [f["phase"] for f in finals] == ["completed"] * 6
    owner = next(w.name for w in fleet if home_partition("acme", 6) in w.assigned())
    assert {f["worker"] for f in finals} == {owner}
    windows = sorted({(f["started_at"], f["ended_at"]) for f in finals})   # requests merged into one run share it
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert start >= end, f"runs of one connection overlapped: {windows}"


def test_partitions_added_to_the_requests_topic_only_forward(tmp_path, bootstrap, topics, workers):
    """The requests topic grew to 8 partitions (the state topic keeps 6): requests on the new ones
    reach their connection's home partition and run there."""
    from hostspec.transport.config import KafkaConfig, TopicSpec, topic_specs
    from hostspec.transport.admin import ensure_topics

    config = KafkaConfig.from_env(bootstrap_servers=bootstrap)
    ensure_topics(config, [TopicSpec(topics.requests, 8, {}),
                           *[t for t in topic_specs(topics) if t.name != topics.requests]])
    with CourseraSandbox(OrgSpec(contents=4, learners=4, enrollments=10)) as sb:
        worker = workers(write_connections(tmp_path / "c.toml", sb))
        worker.wait_for(r"serves partitions \[0, 1, 2, 3, 4, 5, 6, 7\]")
        rid, value = request_event("acme")
        publish_raw(bootstrap, topics.requests, value, key=b"acme", partition=7)
        assert final_status(bootstrap, topics, rid)["phase"] == "completed"
    assert re.search(rf"request {rid} for acme at 7@0 forwarded to its home partition 0", worker.log())


def test_a_requests_topic_smaller_than_the_state_topic_is_refused_at_start(tmp_path, bootstrap, topics):
    from hostspec.transport.config import KafkaConfig, TopicSpec, topic_specs
    from hostspec.transport.admin import ensure_topics

    ensure_topics(KafkaConfig.from_env(bootstrap_servers=bootstrap),
                  [TopicSpec(topics.requests, 3, {}), *[t for t in topic_specs(topics) if t.name != topics.requests]])
    with CourseraSandbox(OrgSpec(contents=2, learners=2, enrollments=2)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb)
        proc = subprocess.run([sys.executable, "-m", "hostspec", "--connections", str(conns), "run",
                               "--bootstrap-servers", bootstrap, "--topic-prefix", topics.requests.split(".")[0] + "."],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "needs at least as many partitions as the state topic" in proc.stderr


def _finals(bootstrap, topics, request_ids, timeout=120):
    """The final statuses of ``request_ids`` (every one of each), once each has one."""
    def done(values):
        ended = {v["data"]["request_id"] for v in values if v["data"]["phase"] in ("completed", "partial", "failed")}
        return ended >= set(request_ids)

    values = read_topic(bootstrap, topics.status, until=done, timeout=timeout)
    return {rid: [v["data"] for v in values if v["data"]["request_id"] == rid
                  and v["data"]["phase"] in ("completed", "partial", "failed")] for rid in request_ids}


def _publish_behind(bootstrap, topics, worker, partition, n, mode="incremental"):
    """One request, then ``n`` progress requests (in ``mode``) published once the worker runs the
    first (they wait behind it)."""
    import uuid
    from datetime import datetime, timezone

    from kafka import KafkaProducer

    from hostspec.requests import SyncRequest

    first, value = request_event("acme")
    publish_raw(bootstrap, topics.requests, value, key=b"acme", partition=partition)
    worker.wait_for(rf"request {first} for acme/acme", timeout=60)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    later = []
    for _ in range(n):
        request = SyncRequest(str(uuid.uuid4()), "acme", "coursera", "progress", "test", mode=mode)
        rid, value = request.request_id, request.to_event(datetime.now(timezone.utc)).to_json().encode()
        later.append(rid)
        producer.send(topics.requests, value=value, key=b"acme", partition=partition)
    producer.flush(30)
    producer.close()
    return first, later


def test_requests_waiting_behind_a_running_sync_run_as_one_merged_run(tmp_path, bootstrap, topics, workers, prefix):
    """Five requests queued behind a running sync become one run; each gets its final status, and
    the group's offset passes all six (issue 15)."""
    from kafka import KafkaConsumer, TopicPartition

    home = home_partition("acme", 6)
    with CourseraSandbox(OrgSpec(contents=10, learners=20, enrollments=150)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb, page_size=25)
        slow_reports(sb, 1.5)      # each run lists 6 pages: the first one runs ~9 s while the others wait
        w1 = workers(conns, "w1")
        w1.wait_for(r"serves partitions \[0, 1, 2, 3, 4, 5\]")
        first, later = _publish_behind(bootstrap, topics, w1, home, 5)
        finals = _finals(bootstrap, topics, [first, *later])
        assert all(len(f) == 1 and f[0]["phase"] == "completed" for f in finals.values()), finals
        merged_runs = {finals[rid][0]["run_id"] for rid in later}
        assert len(merged_runs) == 1 and finals[first][0]["run_id"] not in merged_runs
        assert [finals[rid][0].get("merged_into") for rid in later] == [None] + [later[0]] * 4
        assert w1.log().count("merged into the run of request") == 4
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=f"{prefix}group", enable_auto_commit=False)
        tp = TopicPartition(topics.requests, home)
        deadline = time.monotonic() + 30
        while consumer.committed(tp) != 6:
            assert time.monotonic() < deadline, consumer.committed(tp)
            time.sleep(0.2)
        consumer.close()


def test_a_merged_run_killed_midway_is_merged_again_by_the_next_owner(tmp_path, bootstrap, topics, workers):
    """The hardest moment for coalescing: the worker running a merged run dies. The next owner reads
    the five requests again, merges them again, and each ends exactly once."""
    home = home_partition("acme", 6)
    with CourseraSandbox(OrgSpec(contents=10, learners=20, enrollments=150)) as sb:
        conns = write_connections(tmp_path / "c.toml", sb, page_size=25)
        slow_reports(sb, 1.5)
        w1 = workers(conns, "w1", None, "--batch-size", "10")
        w1.wait_for(r"serves partitions \[0, 1, 2, 3, 4, 5\]")
        # full progress syncs: the merged run lists 6 pages of 1.5 s, long enough to die inside it
        first, later = _publish_behind(bootstrap, topics, w1, home, 5, mode="full")
        w1.wait_for(rf"request {later[-1]} for acme merged into the run", timeout=60)
        w1.wait_for(rf"request {later[0]} for acme/acme", timeout=60)
        time.sleep(3)                  # a page or two of the merged run, some of it committed
        w1.kill()
        w2 = workers(conns, "w2")
        finals = _finals(bootstrap, topics, [first, *later], timeout=180)
    assert [len(finals[rid]) for rid in [first, *later]] == [1] * 6, finals
    assert finals[first][0]["worker"] == "w1"
    assert {finals[rid][0]["worker"] for rid in later} == {"w2"}, "the merged run ended before the kill"
    assert len({finals[rid][0]["run_id"] for rid in later}) == 1
    assert w2.log().count("merged into the run of request") == 4
    assert w2.proc.poll() is None
