"""Nothing of another tenant in any answer (issue 27): every refusal path of the worker's admission
and every ``/connections/{name}`` call of the admin API, run with three tenants configured, leaves
no other tenant's name (tenant ids, connection names, client ids, org ids, secret namespaces) in
the statuses, dead letters, API answers and log lines of that path.

Generated: the worker paths are listed from its admission code (``admit``, ``Admitter.admit``,
``Admitter.still_configured``); the API cases are every route with a ``{name}`` × every method it
serves × every kind of name a tenant may ask about. Unit level: the in-memory control topic, the
worker's own admission methods, the API in process (falcon's test client); the status and
dead-letter topics the API reads are lists in memory.
"""
from __future__ import annotations

import io
import json
import logging
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Callable

import pytest
from falcon import testing

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.control import api as admin_api
from hostspec.config import documents as docs
from hostspec import events as ev
from hostspec.control.delivery import DeliveryBoard
from hostspec.control.plane import ControlPlane
from hostspec.ledger_records import DeliveryFact
from hostspec.runtime.dead_letters import refused_request, skipped_request
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.ops.logs import setup_logging
from hostspec.config.policy import SettingsPolicy
from hostspec.runtime.ratebudget import AccountBudgets
from hostspec.secrets import Secret
from hostspec.engine.sinks import MemorySink
from hostspec.runtime.tasks import PartitionTask
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.config.control_topic import MemoryControl
from hostspec.transport.consumers import InboundMessage
from hostspec.runtime.worker import Worker
from publisher_360learning.settings import target_problems

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
TOKEN = "no-foreign-names-token"
GROUP = "65a1b2c3d4e5f60718293a4b"
REQUESTER = "initech"
OTHERS = {   # the other tenants: every name of theirs is foreign to the requester
    "umbrella": {"connection": "umbrella-lms", "client_id": "umb-client-4411", "org_id": "UmbrellaOrg77"},
    "globex": {"connection": "globex-lms", "client_id": "glx-client-9920", "org_id": "GlobexOrg55"},
}
FOREIGN = sorted({*OTHERS, *(v for names in OTHERS.values() for v in names.values())}, key=len, reverse=True)


def leaks(text: str, asked: str = "") -> list[str]:
    """Foreign names in ``text`` that the request itself (``asked``) did not name."""
    low, asked = text.lower(), asked.lower()
    return [name for name in FOREIGN if name.lower() in low and name.lower() not in asked]


def body(tenant: str, *, client_id: str, org_id: str, base_url: str | None = None,
         secret: str | None = None) -> dict[str, Any]:
    settings = {"org_id": org_id, "client_id": client_id,
                "client_secret": {"env": secret or f"CONNECTOR_SECRET_{tenant.upper()}__COURSERA"}}
    if base_url:
        settings["base_url"] = base_url
    return {"tenant": tenant, "provider": "coursera", "group_id": GROUP, "settings": settings,
            "target": {"region": "eu", "client_id": f"{client_id}-360", "author_id": "65a0000000000000000000a1",
                       "client_secret": {"env": f"CONNECTOR_SECRET_{tenant.upper()}__360"}}}


class MemoryPlane(ControlPlane):
    """The control plane with the status, dead-letter and request topics as lists in memory."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.topics_held: dict[str, list[ev.Event]] = {}

    def _publish(self, events: list[ev.Event], raw: list[tuple[str, bytes]] = ()) -> None:
        for event in events:
            self.topics_held.setdefault(self.topics.for_type(event.type), []).append(event)

    def _read(self, topic: str, type_: str, timeout_s: float):
        for offset, event in enumerate(self.topics_held.get(topic, [])):
            if event.type == type_:
                yield SimpleNamespace(partition=0, offset=offset), event

    def _catch_up(self, timeout_s: float = 10) -> None:
        """The fleet index fed what the lists gained since the last call (the feeder's part)."""
        fed = self.__dict__.setdefault("_fed", {})
        for topic, held in self.topics_held.items():
            for offset in range(fed.get(topic, 0), len(held)):
                self.index.add(held[offset], partition=0, offset=offset)
            fed[topic] = len(held)


@pytest.fixture
def log_lines():
    """The process's log as production writes it (JSON lines with the run's context fields)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream=stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def coursera():
    with CourseraSandbox(OrgSpec(contents=3, learners=2, enrollments=2)) as sb:
        yield sb


@pytest.fixture
def world(plugins, coursera, monkeypatch):
    """Three tenants on one control topic. The requester's connections: ``initech-lms`` (live),
    ``initech-paused``, ``initech-gone`` (deleted), ``reused-name`` (umbrella's once, deleted,
    initech's now; umbrella's old status and dead letter are still on the topics), and two written
    past the API: ``initech-rogue`` (names umbrella's secret) and ``initech-broken`` (invalid)."""
    monkeypatch.setenv("CONNECTOR_SECRET_INITECH__COURSERA", coursera.client_secret)
    policy = SettingsPolicy(allow_sandboxes=True)
    control = MemoryControl(policy)
    plane = MemoryPlane(plugins, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics(), policy,
                        log=control, writer=control,
                        target_check=lambda n, t, tenant: target_problems(policy, n, t, tenant))
    for tenant, names in OTHERS.items():
        plane.put(names["connection"], body(tenant, client_id=names["client_id"], org_id=names["org_id"]),
                  actor=f"api:{tenant}-ops")
    umbrella = OTHERS["umbrella"]
    plane.put("reused-name", body("umbrella", client_id=umbrella["client_id"], org_id=umbrella["org_id"]),
              actor="api:umbrella-ops")
    old_request = SyncRequest("umbrella-old-run", "reused-name", "coursera", "progress", "api:umbrella-ops",
                              learners=("umbrella-learner-1",))
    plane.topics_held[plane.topics.status] = [skipped_request(
        "umbrella-old-run", tenant="umbrella", connection="reused-name", provider="coursera", scope="progress",
        reason=f"already ran for client {umbrella['client_id']}", now=NOW, worker="w0")]
    plane.topics_held[plane.topics.dead_letter] = refused_request(
        topic="requests", partition=0, offset=1, value=old_request.to_event(NOW).to_json().encode(),
        reason=f"refused for org {umbrella['org_id']}", errors=None, now=NOW, connection="reused-name",
        provider="coursera", tenant="umbrella")[:1]
    plane.delete("reused-name", actor="api:umbrella-ops")
    plane.delivery = DeliveryBoard()        # umbrella's delivery dead letter under the name, and a delivery
    letter = refused_request(topic="courses", partition=0, offset=2, value=b"{}", now=NOW, connection="reused-name",
                             reason=f"refused for org {umbrella['org_id']}", errors=None, provider="coursera",
                             tenant="umbrella", stage="delivery")[0]
    plane.delivery.dead_letter(letter)
    plane.delivery.journal(DeliveryFact(f"course/reused-name/{umbrella['org_id']}", "delivered", "reused-name",
                                        "umbrella", NOW.timestamp()))

    own = dict(client_id=coursera.client_id, org_id=coursera.spec.org_id, base_url=coursera.url)
    for name in ("initech-lms", "initech-paused", "initech-gone", "reused-name"):
        plane.put(name, body(REQUESTER, **own), actor="api:initech-ops")
    plane.set_paused("initech-paused", True, actor="api:initech-ops")
    plane.delete("initech-gone", actor="api:initech-ops")
    rogue = body(REQUESTER, **own, secret="CONNECTOR_SECRET_UMBRELLA__COURSERA")
    control.write(docs.document("initech-rogue", rogue, revision=1, changed_by="rogue", now=NOW,
                                target=rogue["target"]), NOW)
    broken = body(REQUESTER, **own)
    broken["settings"]["page_size"] = "many"
    control.write(docs.document("initech-broken", broken, revision=1, changed_by="rogue", now=NOW), NOW)
    return SimpleNamespace(plugins=plugins, control=control, plane=plane, coursera=coursera)


# -- the worker: every refusal path of its admission --------------------------------------------------
def request(name: str, provider: str = "coursera", rid: str = "initech-req-1") -> bytes:
    return SyncRequest(rid, name, provider, "catalog", "api:initech-ops").to_event(NOW).to_json().encode()


def worker_of(world) -> tuple[Worker, PartitionTask]:
    worker = Worker(world.plugins, world.control, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics())
    worker.resources.budgets = AccountBudgets(world.plugins, 1)
    worker.resources.state_partitions = 1
    task = PartitionTask(("learning.sync.requests", 0), state_partition=0, membership=lambda: None)
    task.start_offset = 0
    task.start()
    return worker, task


def arrive(world, value: bytes | None, then: Callable[[Any], None] | None = None) -> list[ev.Event | dict]:
    """The request ``value`` admitted by a worker; ``then`` changes the control topic after it
    arrived, before its turn. Returns the records the worker ends it with (decoded)."""
    worker, task = worker_of(world)
    task.backlog.append(InboundMessage("learning.sync.requests", 0, 7, b"k", value))
    outgoing: list = []
    worker.admitter.admit(task, outgoing)
    if then is not None:
        assert not outgoing, "admitted on arrival"
        then(world)
        for name, queue_ in list(task.waiting.items()):
            worker.dispatcher.take_turn(task, queue_, outgoing)
    return [json.loads(r.value) for o in outgoing for r in o.records]


def delete(name):
    return lambda w: w.plane.delete(name, actor="api:initech-ops")


def swap_provider(w):
    doc = {k: v for k, v in w.control.document("initech-lms").items()
           if k not in ("connection", "revision", "created_revision", "deleted", "changed_by", "changed_at")}
    doc.update(provider="linkedin_learning", target=None,
               settings={"client_id": "initech-li", "client_secret": {"env": "CONNECTOR_SECRET_INITECH__LI"}})
    w.plane.put("initech-lms", doc, actor="api:initech-ops")


WORKER_PATHS = {   # id: (request, change after arrival, words of the refusal)
    "not_json": (b"{not json", None, "malformed"),
    "not_a_request": (json.dumps({"specversion": "1.0", "type": ev.SYNC_REQUESTED}).encode(), None, "malformed"),
    "id_too_long": (request("initech-lms", rid="x" * 300), None, "longer than"),
    "unknown_provider": (request("initech-lms", provider="udemy"), None, "unknown provider"),
    "unknown_connection": (request("initech-nothing"), None, "unknown connection 'initech-nothing'"),
    "deleted_connection": (request("initech-gone"), None, "unknown connection 'initech-gone'"),
    "deleted_after_arrival": (request("initech-lms"), delete("initech-lms"), "changed after the request"),
    "provider_changed_after_arrival": (request("initech-lms"), swap_provider, "now for provider"),
    "provider_mismatch": (request("initech-lms", provider="linkedin_learning"), None, "is for provider"),
    "settings_refused_by_policy": (request("initech-rogue"), None, "refused by the policy"),
    "settings_invalid": (request("initech-broken"), None, "invalid settings"),
}


@pytest.mark.parametrize("path", sorted(WORKER_PATHS))
def test_a_worker_refusal_names_nothing_of_another_tenant(world, path, log_lines):
    value, then, words = WORKER_PATHS[path]
    records = arrive(world, value, then)
    letters = [r for r in records if r["type"] == ev.RECORD_REJECTED]
    statuses = [r for r in records if r["type"] == ev.SYNC_STATUS]
    assert len(letters) == 1 and words in letters[0]["data"]["reason"], records       # the path was taken
    if path not in ("not_json", "not_a_request"):
        assert [s["data"]["phase"] for s in statuses] == ["failed"]
    asked = (value or b"").decode("utf-8", "replace")
    for record in records:
        assert not leaks(json.dumps(record), asked), (path, leaks(json.dumps(record), asked), record)
    lines = log_lines()
    for line in lines:
        assert not leaks(json.dumps(line), asked), (path, line)
    refused = [line for line in lines if line["message"].startswith("refused request")]
    assert len(refused) == 1
    if path not in ("not_json", "not_a_request", "id_too_long"):     # bound to the request, like a run's lines
        assert refused[0].get("request_id") and refused[0].get("connection"), refused
    tenants = {d["data"]["tenant"] for d in letters + statuses}
    known = path.startswith(("deleted_after", "provider_", "settings_", "unknown_provider"))  # its connection says
    assert tenants == ({REQUESTER} if known else {None})


def test_a_paused_connections_request_runs_and_its_run_names_nothing_else(world, log_lines):
    """Pausing stops the schedule only: its request is admitted and runs; the run's statuses,
    events and log lines are the requester's alone."""
    worker, task = worker_of(world)
    task.backlog.append(InboundMessage("learning.sync.requests", 0, 7, b"k", request("initech-paused")))
    outgoing: list = []
    worker.admitter.admit(task, outgoing)
    assert not outgoing and [p.connection.name for q in task.waiting.values() for p in q] == ["initech-paused"]
    pending = task.waiting["initech-paused"][0]
    sink = MemorySink()
    report = SyncEngine(world.plugins, sink).run(pending.request, pending.connection)
    assert report.outcome == "completed"
    asked = request("initech-paused").decode()
    assert not leaks(json.dumps([e.body for e in sink.events]), asked)
    lines = log_lines()
    assert any(line.get("connection") == "initech-paused" for line in lines)
    assert not leaks(json.dumps(lines), asked)


# -- the admin API: every {name} route x method x kind of name ---------------------------------------
NAME_KINDS = {"unknown": "initech-nothing", "deleted": "initech-gone", "paused": "initech-paused",
              "reused": "reused-name", "refused_past_the_api": "initech-rogue"}


def _api_cases() -> list[tuple[str, str, str]]:
    plane = ControlPlane.__new__(ControlPlane)
    cases = []
    for template, resource in admin_api.routes(plane).items():
        if "{name}" not in template:
            continue
        for method in sorted(m[3:].upper() for m in dir(resource) if m.startswith("on_")):
            for kind in NAME_KINDS:
                cases.append((template, method, kind))
    return cases


def _api_body(template: str, method: str, coursera) -> Any:
    if template == "/connections/{name}" and method == "PUT":      # a refused write: another tenant's secret
        return body(REQUESTER, client_id="initech-key", org_id="o", secret="CONNECTOR_SECRET_GLOBEX__COURSERA")
    if method in ("POST", "PUT") and template.endswith(("syncs", "redrive")):
        return {}
    return None


@pytest.fixture
def api(world, monkeypatch):
    monkeypatch.setenv("NO_FOREIGN_NAMES_TOKEN", TOKEN)
    app = admin_api.make_app(world.plane, {"initech-ops": Secret(env="NO_FOREIGN_NAMES_TOKEN")})
    return testing.TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.mark.parametrize("template, method, kind", _api_cases(), ids=lambda v: str(v).replace("/", "_"))
def test_an_api_answer_names_nothing_of_another_tenant(world, api, template, method, kind, log_lines):
    path = template.replace("{name}", NAME_KINDS[kind])
    payload = _api_body(template, method, world.coursera)
    answer = api.simulate_request(method, path, json=payload)
    assert answer.status_code < 500, answer.text
    history = ("/connections/{name}/deadletters", "/connections/{name}/status")   # kept after a delete
    if (kind == "unknown" or (kind == "deleted" and template not in history)) \
            and template != "/connections/{name}/deadletters" and not template.endswith("redrive") and (method, template) != ("PUT", "/connections/{name}"):
        assert answer.status_code == 404, (path, answer.text)
    own = world.control.document(NAME_KINDS[kind]) or {}
    asked = path + json.dumps(payload) + (json.dumps(own) if own.get("tenant") == REQUESTER else "")  # its own
    assert not leaks(answer.text, asked), (method, path, leaks(answer.text, asked), answer.text)
    assert not leaks(json.dumps(log_lines()), asked)
    published = [e.body for events in world.plane.topics_held.values() for e in events
                 if e.type != ev.RECORD_REJECTED and e.data.get("tenant") != "umbrella"]
    assert not leaks(json.dumps(published), asked)                 # what a re-drive or a sync published


def test_the_api_refuses_a_connection_naming_another_tenants_secret_without_naming_it(api, world):
    refused = api.simulate_post("/connections", json={"connection": "initech-new", **body(
        REQUESTER, client_id="initech-key", org_id="o", secret="CONNECTOR_SECRET_UMBRELLA__COURSERA")})
    assert refused.status_code == 422 and "settings.client_secret" in refused.json["errors"]
    assert not leaks(refused.text) and "UMBRELLA" not in refused.text
    check = api.simulate_put("/providers/coursera/config/validate", json=body(
        REQUESTER, client_id="initech-key", org_id="o", secret="CONNECTOR_SECRET_GLOBEX__COURSERA"))
    assert check.status_code == 200 and check.json["error_count"] >= 1 and not leaks(check.text)


def test_the_cases_cover_every_route_with_a_name():
    served = {(t, m) for t, m, _k in _api_cases()}
    assert len(served) == 11 and {k for _t, _m, k in _api_cases()} == set(NAME_KINDS)
