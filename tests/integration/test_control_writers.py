"""Several writers of the control topic on the real broker: API processes and the shell take turns
without a refused or lost write, and a command that only reads takes nobody's turn.

Every writer shares one transactional id (:class:`hostspec.config.control_topic.ConnectionWriter`):
a writer fenced by another connects again and retries once. The compare-and-set this keeps is
``test_control_plane.py::test_two_writers_on_the_broker_cannot_both_win_the_same_revision``."""
from __future__ import annotations

import subprocess
import sys

import pytest

from publisher_360learning.sandbox import SYNC_GROUP

from .test_control_plane import session, start_api

pytestmark = pytest.mark.kafka
RETRIED = "connecting again and retrying once"      # the writer's log line when it was fenced


def body(n: int) -> dict:
    return {"tenant": "acme", "provider": "coursera", "group_id": SYNC_GROUP,
            "settings": {"org_id": "o1", "client_id": f"key-{n}",
                         "client_secret": {"env": "CONNECTOR_SECRET_ACME__X"}}}


def cli(bootstrap: str, prefix: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostspec", *args, "--bootstrap-servers", bootstrap,
                           "--topic-prefix", prefix], capture_output=True, text=True, timeout=120)


def test_a_read_only_command_between_two_api_writes_takes_no_turn_and_writes_nothing(tmp_path, bootstrap, prefix):
    from kafka import KafkaConsumer

    fresh = cli(bootstrap, prefix, "connections", "list")      # a new cluster: no topic, no connection
    assert fresh.returncode == 0 and "0 connections" in fresh.stderr, fresh.stderr
    probe = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        assert not [t for t in probe.topics() if t.startswith(prefix)]      # and it created none
    finally:
        probe.close()
    api, url = start_api(tmp_path, bootstrap, prefix)
    http = session()
    try:
        answers = [http.put(f"{url}/connections/acme", json=body(1), timeout=60).status_code,
                   http.put(f"{url}/connections/acme", json=body(2), timeout=60).status_code]
        listed = cli(bootstrap, prefix, "connections", "list")
        assert listed.returncode == 0, listed.stderr
        assert "acme" in listed.stdout and "ERROR" not in listed.stderr, listed.stderr
        letters = cli(bootstrap, prefix, "deadletters", "list")
        assert letters.returncode == 0 and "ERROR" not in letters.stderr, letters.stderr
        answers.append(http.put(f"{url}/connections/acme", json=body(3), timeout=60).status_code)
        assert answers == [201, 200, 200]
        stored = http.get(f"{url}/connections/acme", timeout=30).json()
        assert (stored["revision"], stored["settings"]["client_id"]) == (3, "key-3")
        assert RETRIED not in api.log()        # nobody fenced the API's writer: the commands wrote nothing
    finally:
        api.stop(timeout=20)


def test_two_api_processes_writing_in_turn_lose_no_write_and_answer_no_500(tmp_path, bootstrap, prefix):
    (a, url_a), (b, url_b) = start_api(tmp_path, bootstrap, prefix, "api-a"), start_api(tmp_path, bootstrap,
                                                                                         prefix, "api-b")
    http = session()
    try:
        answers, revision = [], 0
        for n in range(1, 25):           # alternating; each change made on the revision the last answer gave
            url = (url_a, url_b)[n % 2]
            headers = {"If-Match": str(revision)} if revision else {}
            answer = http.put(f"{url}/connections/acme", json=body(n), headers=headers, timeout=60)
            answers.append(answer.status_code)
            if answer.status_code in (200, 201):
                revision = answer.json()["revision"]
            else:
                print(n, answer.status_code, answer.text)
        assert answers == [201] + [200] * 23, answers
        for url in (url_a, url_b):
            stored = http.get(f"{url}/connections/acme", timeout=30).json()
            assert (stored["revision"], stored["settings"]["client_id"]) == (24, "key-24")
        # each write after the other API's took the turn back: fenced, connected again, stored
        assert RETRIED in a.log() and RETRIED in b.log()
    finally:
        a.stop(timeout=20)
        b.stop(timeout=20)
