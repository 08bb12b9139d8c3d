"""Every record of a real sync read by the Java CloudEvents SDK (issue 16).

`tests/java` is a small Maven project whose reader deserializes each record with
cloudevents-kafka's ``CloudEventDeserializer`` (the Kafka protocol binding: it reads a record in
structured mode only when its ``content-type`` header says so). Java and Maven are those of the
broker script.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.requests import SyncRequest
from hostspec.transport.config import KafkaConfig
from hostspec.transport.producers import publish

from .conftest import final_status, write_connections

pytestmark = pytest.mark.kafka
PROJECT = Path(__file__).resolve().parent.parent / "java"


@pytest.fixture(scope="module")
def java_reader():
    if not (shutil.which("mvn") and shutil.which("java")):
        pytest.skip("needs mvn and java (as the broker script does)")
    build = subprocess.run(["mvn", "-q", "-B", "-f", str(PROJECT / "pom.xml"), "package",
                            "dependency:build-classpath", "-Dmdep.outputFile=target/cp.txt"],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    classpath = f"{PROJECT / 'target' / 'classes'}:{(PROJECT / 'target' / 'cp.txt').read_text().strip()}"

    def read(bootstrap: str, *topics: str) -> dict:
        run = subprocess.run(["java", "-cp", classpath, "reader.Reader", bootstrap, *topics],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    return read


def test_the_java_cloudevents_sdk_reads_every_record_of_a_sync(tmp_path, bootstrap, topics, workers, java_reader):
    with CourseraSandbox(OrgSpec(contents=12, learners=6, enrollments=40, broken_every=9)) as sb:
        worker = workers(write_connections(tmp_path / "c.toml", sb))
        worker.wait_for(r"serves partitions \[0")
        request = SyncRequest("java-reader-1", "acme", "coursera", "all", "test")
        publish(KafkaConfig(bootstrap_servers=bootstrap), topics.requests,
                [request.to_event(datetime.now(timezone.utc))])       # as request-sync publishes it
        assert final_status(bootstrap, topics, request.request_id)["phase"] == "partial"   # broken rows
    names = [topics.requests, topics.courses, topics.learner_stats, topics.status, topics.dead_letter]
    got = java_reader(bootstrap, *names)
    assert got["first_failure"] is None, got
    assert all(got["read"][t] > 0 for t in names), got
    assert got["events"] == got["read"], got
