"""A connection's state belongs to that connection's life (issue 27): deleted and created again
under the same name, or pointed at another organization or group, it starts from nothing; an
edit of its tuning keeps its state. Unit level: the control plane on the in-memory topic, the
engine on one state database (as the worker's partition holds it)."""
from __future__ import annotations

import dataclasses

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.config.connections import ConnectionStore
from hostspec.control.plane import ControlPlane
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.errors import SettingsRefused
from hostspec.incarnation import of_connection
from hostspec.config.policy import SettingsPolicy
from hostspec.engine.sinks import MemorySink
from hostspec.engine.state import StateDB
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.config.control_topic import MemoryControl

GROUP = "65a1b2c3d4e5f60718293a4b"


@pytest.fixture
def org():
    with CourseraSandbox(OrgSpec(contents=12, learners=8, enrollments=30)) as sb:
        yield sb


@pytest.fixture
def plane(plugins, monkeypatch, org):
    monkeypatch.setenv("CONNECTOR_SECRET_ACME__COURSERA", org.client_secret)
    policy = SettingsPolicy(allow_sandboxes=True)
    control = MemoryControl(policy)
    plane = ControlPlane(plugins, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics(), policy,
                         log=control, writer=control)
    yield plane


def body(sb, **settings):
    return {"tenant": "acme", "provider": "coursera", "group_id": GROUP, "options": {"catalog_complete_days": 0},
            "settings": {"org_id": sb.spec.org_id, "client_id": sb.client_id, "base_url": sb.url,
                         "client_secret": {"env": "CONNECTOR_SECRET_ACME__COURSERA"}, **settings}}


def sync(plugins, state, store, name="acme-coursera", request_id="r", **kw):
    sink = MemorySink()
    report = SyncEngine(plugins, sink, state=state).run(SyncRequest(request_id, name, "coursera", **kw),
                                                         store.get(name, plugins))
    assert report.outcome == "completed", report.error
    return (len(sink.of_type(ev.COURSE_UPSERTED)), len(sink.of_type(ev.LEARNER_STAT_UPSERTED)))


def test_a_connection_deleted_and_created_again_emits_every_course_and_stat(plugins, plane, org):
    state = StateDB()
    plane.put("acme-coursera", body(org), actor="t")
    first = sync(plugins, state, plane.log.store(), request_id="r1")
    assert first[0] > 0 and first[1] > 0
    assert sync(plugins, state, plane.log.store(), request_id="r2") == (0, 0)    # its state works: all unchanged
    plane.delete("acme-coursera", actor="t")
    change = plane.put("acme-coursera", body(org), actor="t")
    assert sync(plugins, state, plane.log.store(), request_id="r3") == first
    assert change.created and change.doc.get("created_revision") == change.doc["revision"] == 3
    scopes = state.scopes_from("acme/acme-coursera")
    assert scopes == [plane.log.store().get("acme-coursera", plugins).state_scope]   # the earlier life swept


def test_an_edit_keeps_the_connections_life_and_its_state(plugins, plane, org):
    state = StateDB()
    plane.put("acme-coursera", body(org), actor="t")
    created = plane.connection("acme-coursera").get("created_revision")
    sync(plugins, state, plane.log.store(), request_id="r1")
    change = plane.put("acme-coursera", body(org, page_size=7), actor="t")     # tuning, not identity
    plane.set_paused("acme-coursera", True, actor="t")
    assert not change.created and plane.connection("acme-coursera").get("created_revision") == created
    assert sync(plugins, state, plane.log.store(), request_id="r2") == (0, 0)


def test_a_connection_pointed_at_another_organization_or_group_starts_afresh(plugins, plane, org):
    state = StateDB()
    plane.put("acme-coursera", body(org), actor="t")
    first = sync(plugins, state, plane.log.store(), request_id="r1")
    with CourseraSandbox(OrgSpec(org_id="OtherOrg0000000000000A", contents=12, learners=8, enrollments=30),
                         client_secret=org.client_secret) as other:
        plane.put("acme-coursera", body(other), actor="t")
        assert sync(plugins, state, plane.log.store(), request_id="r2") == first
    plane.put("acme-coursera", {**body(org), "group_id": "65a1b2c3d4e5f60718293a4c"}, actor="t")
    assert sync(plugins, state, plane.log.store(), request_id="r3") == first


def test_a_dry_run_forgets_no_earlier_state(plugins, plane, org):
    state = StateDB()
    plane.put("acme-coursera", body(org), actor="t")
    sync(plugins, state, plane.log.store(), request_id="r1")
    plane.delete("acme-coursera", actor="t")
    plane.put("acme-coursera", body(org), actor="t")
    before = state.count()
    sync(plugins, state, plane.log.store(), request_id="r2", dry_run=True)
    assert len(state.scopes_from("acme/acme-coursera")) == 2 and state.count() == before


def test_the_creation_revision_is_set_by_the_server(plane, org):
    with pytest.raises(SettingsRefused, match="created_revision"):
        plane.put("acme-coursera", {**body(org), "created_revision": 1}, actor="t")


def test_state_keyed_before_incarnations_is_swept_by_the_first_run(plugins, org):
    """Upgrading: the state of ``tenant/name`` is never read again; the first run deletes it."""
    store = ConnectionStore({"c": {"tenant": "acme", "provider": "coursera", "group_id": GROUP,
                                   "settings": org.settings}}, source="<test>")
    state = StateDB()
    legacy = SyncEngine(plugins, MemorySink(), state=state)
    connection = store.get("c", plugins)
    legacy.run(SyncRequest("r1", "c", "coursera"), dataclasses.replace(connection, incarnation=None))
    assert state.scopes_from("acme/c") == ["acme/c"]
    assert sync(plugins, state, store, name="c", request_id="r2")[0] > 0
    assert state.scopes_from("acme/c") == [connection.state_scope]


@pytest.mark.parametrize("scope, mine", [
    ("acme/c", True), ("acme/c/0123456789abcdef", True), ("acme/c2/0123456789abcdef", False),
    ("acme/c.x/0123", False), ("acme2/c", False),
])
def test_only_the_connections_own_lives_are_its(scope, mine):
    assert of_connection(scope, "acme", "c") is mine
