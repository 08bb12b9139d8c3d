"""Delivery health on the broker (issue 29): a connection whose publisher dead-letters every record
shows it in ``GET /connections/{name}/delivery`` and in its status while its run says completed; a
healthy connection's deliveries are counted from the publisher's ledger journal."""
from __future__ import annotations

import sys

import pytest
import requests

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from publisher_360learning.sandbox import Learning360Sandbox

from .conftest import ServiceProcess, final_status
from .test_control_plane import TOKEN, coursera_connection, health_url, session
from .test_publisher import eventually

pytestmark = pytest.mark.kafka


def test_delivery_shows_what_the_publisher_did_with_a_completed_runs_records(tmp_path, bootstrap, prefix, topics):
    with CourseraSandbox(OrgSpec(contents=6, learners=2, enrollments=2)) as coursera, \
            Learning360Sandbox(users=[]) as lms:
        secrets = {"CONNECTOR_SECRET_ACME__COURSERA_A": coursera.client_secret,
                   "CONNECTOR_SECRET_ACME__360": lms.settings["client_secret"],
                   "CONNECTOR_SECRET_ACME__360_WRONG": "not-the-360learning-secret"}
        common = ["--bootstrap-servers", bootstrap, "--topic-prefix", prefix]
        api = ServiceProcess(tmp_path, "api", [
            sys.executable, "-m", "hostspec", "--allow-sandboxes", "api", *common, "--port", "0",
            "--token", "ops=env:IT_API_TOKEN", "--publisher-group", f"{prefix}publisher"],
            {"IT_API_TOKEN": TOKEN, **secrets})
        worker = ServiceProcess(tmp_path, "worker", [
            sys.executable, "-m", "hostspec", "--connections", "kafka", "--allow-sandboxes", "run", *common,
            "--group-id", f"{prefix}group", "--worker-id", "w1", "--session-timeout-ms", "6000"], secrets)
        publisher = ServiceProcess(tmp_path, "publisher", [
            sys.executable, "-m", "publisher_360learning.cli", "run", "--targets", "kafka", "--allow-sandboxes",
            "--ledger", str(tmp_path / "ledger.sqlite"), *common, "--group-id", f"{prefix}publisher",
            "--batch-seconds", "0.5", "--instance", "pub-1", "--metrics-port", "0", "--metrics-addr", "127.0.0.1"],
            secrets)
        http = session()
        try:
            url = "http://127.0.0.1:" + api.wait_for(r"admin API on http://127\.0\.0\.1:(\d+)/", timeout=90).group(1)
            worker.wait_for(r"serves partitions \[0", timeout=90)
            publisher.wait_for("publisher assigned", timeout=90)
            eventually(lambda: requests.get(health_url(publisher) + "/ready", timeout=5).status_code == 200,
                       what="publisher ready")

            good = coursera_connection(coursera, lms)
            bad = coursera_connection(coursera, lms)
            bad["target"]["client_secret"] = {"env": "CONNECTOR_SECRET_ACME__360_WRONG"}
            none = {k: v for k, v in good.items() if k != "target"}
            for name, doc in (("acme-good", good), ("acme-bad", bad)):
                created = http.post(f"{url}/connections", json={"connection": name, **doc}, timeout=30)
                assert created.status_code == 201 and created.json()["warnings"] == [], created.text
            warned = http.post(f"{url}/connections", json={"connection": "acme-none", **none}, timeout=30)
            assert warned.status_code == 201 and "no_target" in warned.json()["warnings"][0]

            visible = len(coursera.org.visible_contents(clips=coursera.spec.clips_enabled))
            for name in ("acme-good", "acme-bad"):
                asked = http.post(f"{url}/connections/{name}/syncs", json={"scope": "catalog"}, timeout=30).json()
                assert final_status(bootstrap, topics, asked["request_id"])["phase"] == "completed"

            def delivery(name):
                answer = http.get(f"{url}/connections/{name}/delivery", timeout=30)
                return answer.json() if answer.status_code == 200 else None

            healthy = eventually(lambda: (d := delivery("acme-good")) and d["delivered"] == visible and d,
                                 timeout=90, what="the good connection's deliveries counted")
            assert (healthy["dead_lettered"], healthy["parked"]) == (0, 0) and healthy["last_delivered_at"]
            failing = eventually(lambda: (d := delivery("acme-bad")) and d["dead_lettered"] == visible and d,
                                 timeout=90, what="the bad connection's dead letters counted")
            assert (failing["delivered"], failing["dead_letter_reasons"]) == (0, {"target_config": visible})

            status = http.get(f"{url}/connections/acme-bad/status", timeout=30).json()
            assert status["phase"] == "completed" and status["delivery"]["verdict"] == "failing"
            assert http.get(f"{url}/connections/acme-good/status", timeout=30).json()["delivery"]["verdict"] == \
                "delivering"

            checked = http.post(f"{url}/connections/acme-good/check", timeout=60).json()
            assert checked["ok"] is True and [c["ok"] for c in checked["checks"]] == [True, True, True]
            for process in (worker, publisher, api):
                assert process.proc.poll() is None, process.log()[-3000:]
                assert coursera.client_secret not in process.log()
        finally:
            http.close()
            for process in (worker, publisher, api):
                process.stop(timeout=30)
