"""The control plane on the real broker: connections created, changed and deleted through the admin
API reach a running worker and a running publisher without a restart or a file; an API killed
mid-write loses no acknowledged change."""
from __future__ import annotations

import re
import signal
import sys
import threading

import pytest
import requests

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from publisher_360learning.sandbox import SYNC_GROUP, Learning360Sandbox

from .conftest import ServiceProcess, final_status, read_topic, slow_reports
from .test_publisher import eventually

pytestmark = pytest.mark.kafka
TOKEN = "it-admin-token-5150"


def start_api(tmp_path, bootstrap, prefix, name="api", *extra: str) -> tuple[ServiceProcess, str]:
    api = ServiceProcess(tmp_path, name, [
        sys.executable, "-m", "hostspec", "--allow-sandboxes", "api", "--bootstrap-servers", bootstrap,
        "--topic-prefix", prefix, "--port", "0", "--token", "ops=env:IT_API_TOKEN", *extra], {"IT_API_TOKEN": TOKEN})
    port = api.wait_for(r"admin API on http://127\.0\.0\.1:(\d+)/", timeout=90).group(1)
    return api, f"http://127.0.0.1:{port}"


def session() -> requests.Session:
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {TOKEN}"
    return http


def health_url(process: ServiceProcess) -> str:
    port = process.wait_for(r"readiness on http://[0-9.]+:(\d+)/", timeout=60).group(1)
    return f"http://127.0.0.1:{port}"


def coursera_connection(coursera, lms, secret_env="CONNECTOR_SECRET_ACME__COURSERA_A") -> dict:
    target = {**lms.settings, "client_secret": {"env": "CONNECTOR_SECRET_ACME__360"},
              "external_platform": "Coursera (Acme)", "retry_initial_s": 0.2, "poll_interval_s": 0.05}
    return {"tenant": "acme", "provider": "coursera", "group_id": SYNC_GROUP,
            "settings": {"org_id": coursera.spec.org_id, "client_id": coursera.client_id,
                         "client_secret": {"env": secret_env}, "base_url": coursera.url, "max_retry_after_s": 0.2},
            "target": target}


def test_a_connection_made_through_the_api_is_synced_delivered_changed_and_deleted_live(tmp_path, bootstrap,
                                                                                       prefix, topics):
    spec = OrgSpec(contents=8, learners=5, enrollments=20)
    with CourseraSandbox(spec) as coursera:
        mails = sorted({coursera.org.row(i)["email"] for i in coursera.report_rows()})
        with Learning360Sandbox(users=mails) as lms:
            secrets = {"CONNECTOR_SECRET_ACME__COURSERA_A": coursera.client_secret,
                       "CONNECTOR_SECRET_ACME__COURSERA_B": "not-the-coursera-secret",
                       "CONNECTOR_SECRET_ACME__360": lms.settings["client_secret"]}
            api, url = start_api(tmp_path, bootstrap, prefix)
            worker = ServiceProcess(tmp_path, "worker", [
                sys.executable, "-m", "hostspec", "--connections", "kafka", "--allow-sandboxes", "run",
                "--bootstrap-servers", bootstrap, "--topic-prefix", prefix, "--group-id", f"{prefix}group",
                "--worker-id", "w1", "--session-timeout-ms", "6000", "--metrics-port", "0",
                "--metrics-addr", "127.0.0.1"], secrets)
            publisher = ServiceProcess(tmp_path, "publisher", [
                sys.executable, "-m", "publisher_360learning.cli", "run", "--targets", "kafka", "--allow-sandboxes",
                "--ledger", str(tmp_path / "ledger.sqlite"), "--bootstrap-servers", bootstrap,
                "--topic-prefix", prefix, "--group-id", f"{prefix}publisher", "--batch-seconds", "0.5",
                "--instance", "pub-1", "--metrics-port", "0", "--metrics-addr", "127.0.0.1"], secrets)
            http = session()
            try:
                worker.wait_for(r"serves partitions \[0", timeout=90)
                publisher.wait_for("publisher assigned", timeout=90)
                for process in (worker, publisher):
                    eventually(lambda p=process: requests.get(health_url(p) + "/ready", timeout=5).status_code == 200,
                               what=f"{process.name} ready")
                assert requests.get(url + "/ready", timeout=5).json() == {"ready": True,
                                                                           "checks": {"control_topic": True,
                                                                                      "kafka": True}}

                # refused writes on the broker-backed API: nothing stored
                anonymous = requests.put(f"{url}/connections/acme", json=coursera_connection(coursera, lms), timeout=10)
                assert anonymous.status_code == 401
                hostile = coursera_connection(coursera, lms)
                hostile["settings"]["token_url"] = "https://collector.example.net/token"
                refused = http.put(f"{url}/connections/acme", json=hostile, timeout=10)
                assert refused.status_code == 422 and "settings.token_url" in refused.json()["errors"]
                assert http.get(f"{url}/connections", timeout=10).json() == []

                # created through the API: the running worker syncs it, the running publisher delivers it
                created = http.post(f"{url}/connections", json={"connection": "acme",
                                                                **coursera_connection(coursera, lms)}, timeout=30)
                assert created.status_code == 201, created.text
                asked = http.post(f"{url}/connections/acme/syncs", json={}, timeout=30)
                assert asked.status_code == 202, asked.text
                assert final_status(bootstrap, topics, asked.json()["request_id"])["phase"] == "completed"
                visible = {c["contentId"] for c in coursera.org.visible_contents(clips=coursera.spec.clips_enabled)}
                eventually(lambda: {ext for (_i, ext) in lms.company.by_external} == visible, timeout=60,
                           what="courses delivered to 360Learning")
                runs = http.get(f"{url}/connections/acme/status", timeout=30).json()
                assert runs["phase"] == "completed" and runs["runs"][-1]["request_id"] == asked.json()["request_id"]

                # a changed secret reference is used by the next run (B holds a wrong secret), and back
                wrong = coursera_connection(coursera, lms, "CONNECTOR_SECRET_ACME__COURSERA_B")
                assert http.put(f"{url}/connections/acme", json=wrong, headers={"If-Match": "1"},
                                timeout=30).status_code == 200
                failed = final_status(bootstrap, topics, http.post(f"{url}/connections/acme/syncs", json={},
                                                                   timeout=30).json()["request_id"])
                assert failed["phase"] == "failed" and failed["error"]["kind"] == "provider_config", failed
                assert http.put(f"{url}/connections/acme", json=coursera_connection(coursera, lms),
                                timeout=30).status_code == 200
                again = http.post(f"{url}/connections/acme/syncs", json={"mode": "full"}, timeout=30).json()
                assert final_status(bootstrap, topics, again["request_id"])["phase"] == "completed"

                # deleted while one run is on and two requests wait: the waiting ones end with a status
                slow_reports(coursera, 8.0)     # the first run holds the connection while the others wait
                first = http.post(f"{url}/connections/acme/syncs", json={"scope": "progress", "mode": "full"},
                                  timeout=30).json()["request_id"]
                worker.wait_for(rf"request {first} for acme/acme", timeout=60)   # its statuses wait for its page
                waiting = [http.post(f"{url}/connections/acme/syncs", json={"scope": scope}, timeout=30).json()
                           ["request_id"] for scope in ("catalog", "progress")]
                assert http.delete(f"{url}/connections/acme", timeout=30).status_code == 204
                assert http.post(f"{url}/connections/acme/syncs", json={}, timeout=30).status_code == 404
                requests.delete(coursera.url + "/_sandbox/faults", timeout=5)
                for request_id in waiting:
                    status = final_status(bootstrap, topics, request_id, timeout=90)
                    assert status["phase"] == "failed" and "unknown connection 'acme'" in status["error"]["message"]
                assert final_status(bootstrap, topics, first, timeout=120)["phase"] in ("completed", "partial")

                # the dead letters of the refused requests are listed and re-driven once acme is back
                letters = http.get(f"{url}/connections/acme/deadletters", params={"stage": "request"}, timeout=60).json()
                assert {d["request_id"] for d in letters} == set(waiting)
                assert http.put(f"{url}/connections/acme", json=coursera_connection(coursera, lms),
                                timeout=30).status_code == 201
                redriven = http.post(f"{url}/connections/acme/deadletters/redrive", json={"stage": "request"},
                                     timeout=60).json()
                assert sorted(redriven["redriven"]) == sorted(d["id"] for d in letters) and not redriven["not_redriven"]
                for request_id in redriven["requests"]:
                    assert final_status(bootstrap, topics, request_id, timeout=90)["phase"] == "completed"
                queued = [v["data"] for v in read_topic(bootstrap, topics.status, timeout=10)
                          if v["data"]["phase"] == "queued"]
                assert sorted(i for q in queued for i in q["redrive_of"]) == sorted(redriven["redriven"])

                for process in (worker, publisher, api):
                    assert process.proc.poll() is None, process.log()[-3000:]
                    assert coursera.client_secret not in process.log() and TOKEN not in process.log()
            finally:
                http.close()
                for process in (worker, publisher, api):
                    process.stop(timeout=30)


def test_an_api_killed_mid_write_loses_no_acknowledged_change(tmp_path, bootstrap, prefix, topics):
    api, url = start_api(tmp_path, bootstrap, prefix)
    acknowledged: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(n: int) -> None:
        http = session()
        for i in range(10_000):
            if stop.is_set():
                return
            name = f"w{n}-{i}"
            body = {"tenant": "acme", "provider": "coursera", "group_id": SYNC_GROUP,
                    "settings": {"org_id": "o1", "client_id": name,
                                 "client_secret": {"env": "CONNECTOR_SECRET_ACME__X"}}}
            try:
                answer = http.put(f"{url}/connections/{name}", json=body, timeout=10)
            except requests.RequestException:
                return                           # the API is gone: this write was never acknowledged
            if answer.status_code in (200, 201):
                with lock:
                    acknowledged.append((name, answer.json()["revision"]))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    eventually(lambda: len(acknowledged) >= 40, timeout=60, what="40 acknowledged writes")
    api.proc.send_signal(signal.SIGKILL)         # mid-write: four writers have calls in flight
    api.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acknowledged) >= 40

    again, url2 = start_api(tmp_path, bootstrap, prefix, name="api2")
    try:
        stored = {c["connection"]: c["revision"] for c in session().get(f"{url2}/connections", timeout=30).json()}
        lost = [(n, r) for n, r in acknowledged if stored.get(n, 0) < r]
        assert lost == [], f"{len(lost)} acknowledged changes lost of {len(acknowledged)}"
        print(f"{len(acknowledged)} acknowledged, {len(stored)} stored (some writes in flight may land unacknowledged)")
        assert re.search(r"admin API on", again.log())
    finally:
        again.stop(timeout=20)
        api.stop(timeout=5)


def test_connections_import_list_show_delete_and_deadletters_from_the_shell(tmp_path, bootstrap, prefix):
    import json
    import subprocess

    from tests.conftest import connections_toml

    (tmp_path / "c.toml").write_text(connections_toml("https://api.coursera.com",
                                                      secret_env="CONNECTOR_SECRET_ACME__COURSERA",
                                                      client_id="acme-key") + '''
[connections.inline]
tenant = "beta"
provider = "coursera"
group_id = "65a1b2c3d4e5f60718293a4b"
[connections.inline.settings]
org_id = "o2"
client_id = "beta-key"
client_secret = "inline-secret-in-a-file"
''')
    (tmp_path / "t.toml").write_text('''
[targets.acme]
region = "eu"
client_id = "acme-360"
client_secret = { env = "CONNECTOR_SECRET_ACME__360" }
author_id = "65a0000000000000000000a1"
''')
    kafka = ["--bootstrap-servers", bootstrap, "--topic-prefix", prefix]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hostspec", *args], capture_output=True, text=True, timeout=120)

    imported = cli("connections", "import", str(tmp_path / "c.toml"), "--targets", str(tmp_path / "t.toml"), *kafka)
    assert imported.returncode == 2, imported.stderr             # one of two refused: a configuration error
    assert "created acme (revision 1)" in imported.stdout
    assert "refused inline" in imported.stderr and "never a value" in imported.stderr
    assert "inline-secret-in-a-file" not in imported.stdout + imported.stderr
    listed = json.loads(cli("connections", "list", "--json", *kafka).stdout)
    assert [(c["connection"], c["changed_by"].startswith("cli:")) for c in listed] == [("acme", True)]
    shown = json.loads(cli("connections", "show", "acme", *kafka).stdout)
    assert shown["settings"]["client_secret"] == {"env": "CONNECTOR_SECRET_ACME__COURSERA"}
    assert shown["target"]["client_secret"] == {"env": "CONNECTOR_SECRET_ACME__360"}
    missing = cli("connections", "show", "nobody", *kafka)
    assert missing.returncode == 2 and "no connection 'nobody'" in missing.stderr
    assert cli("connections", "delete", "acme", *kafka).stdout.strip() == "deleted acme (revision 2)"
    assert json.loads(cli("connections", "list", "--json", *kafka).stdout) == []

    letters = cli("deadletters", "list", "--connection", "acme", *kafka)
    assert letters.returncode == 0 and "0 dead letters" in letters.stderr
    unbounded = cli("deadletters", "redrive", *kafka)
    assert unbounded.returncode == 2 and "needs --connection or --id" in unbounded.stderr


def test_the_connection_log_catches_up_on_demand_and_skips_what_is_not_a_connection(bootstrap, topics, caplog):
    from datetime import datetime, timezone

    from hostspec.config import documents as docs
    from hostspec.transport.config import KafkaConfig, topic_specs
    from hostspec.config.control_topic import ConnectionLog, ConnectionWriter
    from hostspec.transport.admin import ensure_topics

    from .conftest import publish_raw

    config = KafkaConfig.from_env(bootstrap_servers=bootstrap)
    ensure_topics(config, topic_specs(topics))
    now = datetime.now(timezone.utc)
    entry = {"tenant": "acme", "provider": "coursera", "group_id": SYNC_GROUP,
             "settings": {"org_id": "o", "client_id": "c", "client_secret": {"env": "CONNECTOR_SECRET_ACME__A"}}}
    writer = ConnectionWriter(config, topics.connections)
    writer.write(docs.document("early", entry, revision=1, changed_by="t", now=now), now)
    log = ConnectionLog(config, topics.connections).start()
    try:
        assert log.store().names == ["early"]          # read to the end at start
        version = log.version
        writer.write(docs.document("late", entry, revision=1, changed_by="t", now=now), now)
        assert log.catch_up(timeout_s=10)              # what the worker does for a connection it does not know
        assert log.store().names == ["early", "late"] and log.version > version
        publish_raw(bootstrap, topics.connections, b"not an event", key=b"early")
        publish_raw(bootstrap, topics.connections, docs.event(
            docs.document("other", entry, revision=1, changed_by="t", now=now), now).to_json().encode(), key=b"early")
        writer.write(docs.tombstone("late", revision=2, changed_by="t", now=now), now)
        assert log.catch_up(timeout_s=10)
        assert log.store().names == ["early"] and log.skipped == 2    # the key must name the connection
        assert "not a valid connection event" in caplog.text
    finally:
        log.close()
        writer.close()


def test_two_writers_on_the_broker_cannot_both_win_the_same_revision(bootstrap, topics, plugins, monkeypatch):
    """Two API processes (two writers, two readers) change one connection at once, both from
    revision 1: one change is stored, the other is refused (fenced or out of date), never both."""
    from hostspec.control.plane import ControlPlane
    from hostspec.config.policy import SettingsPolicy
    from hostspec.transport.config import KafkaConfig, topic_specs
    from hostspec.config.control_topic import ConnectionLog, ConnectionWriter
    from hostspec.transport.admin import ensure_topics

    config = KafkaConfig.from_env(bootstrap_servers=bootstrap)
    ensure_topics(config, topic_specs(topics))
    policy = SettingsPolicy()
    barrier = threading.Barrier(2, timeout=30)

    def plane(check=None):
        writer = ConnectionWriter(config, topics.connections)
        log = ConnectionLog(config, topics.connections, policy=policy).start()
        writer.attach(log)
        return ControlPlane(plugins, config, topics, policy, log=log, writer=writer, target_check=check)

    def body(page_size):
        return {"tenant": "acme", "provider": "coursera", "group_id": SYNC_GROUP, "target": {"region": "eu"},
                "settings": {"org_id": "o", "client_id": "c", "client_secret": {"env": "CONNECTOR_SECRET_ACME__A"},
                             "page_size": page_size}}

    first = plane()
    first.put("acme", {k: v for k, v in body(5).items() if k != "target"}, actor="setup")
    planes = [plane(lambda _n, _t, _c: barrier.wait() and {}), plane(lambda _n, _t, _c: barrier.wait() and {})]
    outcomes: dict[int, object] = {}

    def put(i):
        try:
            outcomes[i] = planes[i].put("acme", body(10 + i), actor=f"api:{i}", expected_revision=1).doc
        except Exception as exc:  # noqa: BLE001
            outcomes[i] = type(exc).__name__

    threads = [threading.Thread(target=put, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        won = [o for o in outcomes.values() if isinstance(o, dict)]
        assert len(won) == 1, outcomes
        assert [o for o in outcomes.values() if not isinstance(o, dict)][0] in ("RevisionConflict", "DeliveryError")
        assert first.log.catch_up(10)
        stored = first.log.document("acme")
        assert (stored["revision"], stored["settings"]["page_size"]) == (2, won[0]["settings"]["page_size"])

        # a writer that connects again between computing its change and writing it (its producer
        # was reset by an earlier error) fences the other off: then the revision check alone
        # keeps it from overwriting the change the other writer stored meanwhile
        late, other = plane(), plane()
        planes += [late, other]
        late.writer._reset()

        def meanwhile(_name, _target, _tenant):
            other.put("acme", body(40), actor="api:other", expected_revision=2)
            return {}

        late.target_check = meanwhile
        with pytest.raises(Exception) as refused:
            late.put("acme", body(30), actor="api:late", expected_revision=2)
        assert type(refused.value).__name__ == "RevisionConflict"
        assert first.log.catch_up(10)
        assert first.log.document("acme")["settings"]["page_size"] == 40
    finally:
        for p in (first, *planes):
            p.close()
