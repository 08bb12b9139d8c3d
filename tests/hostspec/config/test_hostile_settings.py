"""1,000 connection documents written by a hostile tenant: internal addresses, a token_url on
another host, secret references outside the policy, inline secrets. Each one is refused by the
admin API (real HTTP) and, written straight to the control topic past the API, by the worker's
admission; no call reaches the loopback listener they aim at, and no secret value shows up in an
answer, a log line or an event."""
from __future__ import annotations

import json
import logging
import random
import socket
import threading
from datetime import datetime, timezone

import pytest
import requests

from hostspec.control import api as admin_api
from hostspec.control.plane import ControlPlane
from hostspec.runtime.dead_letters import refused_request
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.ops.health import HttpServer
from hostspec.config.policy import SettingsPolicy
from hostspec.secrets import Secret
from hostspec.engine.sinks import MemorySink
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.config.control_topic import MemoryControl
from hostspec.runtime.worker import Refusal, admit

DOCUMENTS = 1000
SASL = "canary-sasl-password-4242"
FILE_SECRET = "canary-file-secret-4242"
GROUP = "65a1b2c3d4e5f60718293a4b"


class Listener:
    """A loopback TCP listener that counts every connection made to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self):
        self.sock.close()


def hostile_documents(port: int, outside_file: str, seed: int = 17) -> list[tuple[str, dict]]:
    rng = random.Random(seed)
    internal = [f"http://127.0.0.1:{port}", f"https://127.0.0.1:{port}", f"http://localhost:{port}",
                f"https://localhost:{port}/", f"http://2130706433:{port}", f"http://127.1:{port}",
                f"http://0x7f.0.0.1:{port}", f"https://[::1]:{port}", "http://169.254.169.254/latest/meta-data",
                "https://10.0.0.5", "https://192.168.1.10:8443", "https://metadata.google.internal",
                f"https://api.coursera.com@127.0.0.1:{port}/", f"https://127.0.0.1:{port}#@api.coursera.com",
                f"https://api.coursera.com:{port}", "https://api.coursera.com.attacker.test",
                f"https://127.0.0.1:{port}\\@api.coursera.com", "file:///etc/passwd", "gopher://127.0.0.1:25/",
                f"HTTP://127.0.0.1:{port}"]
    token_hosts = ["https://collector.attacker.test/token", f"https://127.0.0.1:{port}/oauth2/client_credentials/token",
                   "https://www.linkedin.com/oauth/v2/accessToken", "https://evil.example/api.coursera.com"]
    secrets_ = [{"env": "KAFKA_SASL_PASSWORD"}, {"env": "AWS_SECRET_ACCESS_KEY"}, {"env": "CONNECTOR_SECRETX"},
                {"env": "CONNECTOR_SECRET_ACME__COURSERA"}, {"env": "CONNECTOR_SECRET_T1"},   # another's, no namespace
                {"file": outside_file}, {"file": "/etc/shadow"}, {"file": "../../etc/passwd"},
                {"file": "/run/secrets/connectors/../../../etc/passwd"}, {"file": "relative/secret"},
                "hostile-inline-secret-{i}", {"env": "X", "file": "/y"}, {"env": ""}, {"file": ""}]
    out = []
    for i in range(DOCUMENTS):
        settings = {"org_id": "DjYCkBQTQV69TtWA7RuNug", "client_id": f"hostile-{i}",
                    "client_secret": {"env": f"CONNECTOR_SECRET_T{i % 37}__COURSERA"}}   # its own
        attacks = rng.sample(["base_url", "token_url", "secret"], rng.randint(1, 3))
        for attack in attacks:
            if attack == "base_url":
                settings["base_url"] = rng.choice(internal)
            elif attack == "token_url":
                settings["token_url"] = rng.choice(token_hosts + internal)
            else:
                choice = rng.choice(secrets_)
                settings["client_secret"] = choice.format(i=i) if isinstance(choice, str) else choice
        out.append((f"hostile-{i}", {"tenant": f"t{i % 37}", "provider": "coursera", "group_id": GROUP,
                                     "settings": settings}))
    return out


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.close()


def test_a_thousand_hostile_documents_are_refused_without_a_call_or_a_leak(plugins, listener, tmp_path,
                                                                          monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SASL)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SASL)
    monkeypatch.setenv("CONNECTOR_SECRET_T1__COURSERA", "acme-allowed-secret")
    monkeypatch.setenv("API_TOKEN_OPS", "hostile-test-token")
    outside = tmp_path / "outside-secret"
    outside.write_text(FILE_SECRET)
    allowed_dir = tmp_path / "allowed"
    allowed_dir.mkdir()
    policy = SettingsPolicy(secret_dirs=(str(allowed_dir),))
    control = MemoryControl(policy)
    plane = ControlPlane(plugins, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics(), policy,
                         log=control, writer=control)
    server = HttpServer(admin_api.make_app(plane, {"ops": Secret(env="API_TOKEN_OPS")}), 0, "127.0.0.1").start()
    documents = hostile_documents(listener.port, str(outside))
    inline = [d["settings"]["client_secret"] for _n, d in documents if isinstance(d["settings"]["client_secret"], str)]
    assert len(inline) > 50       # the generator does send inline values
    answers = []
    try:
        with requests.Session() as http:
            http.headers["Authorization"] = "Bearer hostile-test-token"
            for name, body in documents:
                answer = http.put(f"http://127.0.0.1:{server.port}/connections/{name}", json=body, timeout=10)
                assert answer.status_code == 422, (name, body, answer.text)
                answers.append(answer.text)
    finally:
        server.close()
    assert control.written == []

    # past the API: the same documents land on the control topic; the worker refuses each request
    rogue = MemoryControl(policy)
    now = datetime.now(timezone.utc)
    for i, (name, body) in enumerate(documents):
        rogue.write({"connection": name, "revision": 1, "deleted": False, "paused": False, "options": None,
                     "schedule": None, "target": None, "changed_by": "rogue", "changed_at": "2026-12-01T00:00:00Z",
                     **body}, now)
    sink = MemorySink()
    refused = 0
    events: list[str] = []     # the dead letters and statuses of the refusals
    for name, _body in documents:
        request = SyncRequest(f"r-{name}", name, "coursera", "all", "hostile")
        admitted = admit(request.to_event(now).to_json().encode(), rogue.store(), plugins)
        if isinstance(admitted, Refusal):
            refused += 1
            events.extend(e.to_json() for e in refused_request(
                topic="requests", partition=0, offset=refused, value=request.to_event(now).to_json().encode(),
                reason=admitted.reason, errors=admitted.errors, now=now))
            continue
        SyncEngine(plugins, sink).run(*admitted)     # would call the listener: must never happen
    assert refused == DOCUMENTS
    assert listener.accepted == 0
    assert sink.events == []

    assert len(events) == 2 * DOCUMENTS
    text = "\n".join(answers) + "\n".join(r.getMessage() for r in caplog.records) + "\n".join(events)
    for value in (SASL, FILE_SECRET, "acme-allowed-secret", *inline):
        assert value not in text
    assert SASL not in json.dumps([d for d in rogue.written])    # the stored documents hold references only
