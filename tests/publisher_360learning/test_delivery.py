"""Events delivered to the 360Learning sandbox: everything lands once, admin tags stay, unknown
learners are parked and delivered later, refusals become dead letters, re-runs change nothing."""
from __future__ import annotations

import copy
import json
import logging
from datetime import datetime, timezone

import pytest
import requests

from connector_coursera.sandbox import OrgSpec
from hostspec import events as ev
from publisher_360learning.client import Learning360Client
from publisher_360learning.delivery import Deliverer, Inbound
from publisher_360learning.ledger import Ledger
from publisher_360learning.sandbox import SYNC_GROUP, Learning360Sandbox
from publisher_360learning.settings import target_from_settings

from tests.conftest import sandbox_sync_events

from .conftest import fault

CONNECTION = "acme-coursera"


@pytest.fixture(scope="module")
def coursera_events():
    sink = sandbox_sync_events(OrgSpec(contents=9, learners=6, enrollments=30), name=CONNECTION, tenant="acme",
                               group_id=SYNC_GROUP)
    return [e for e in sink.events if e.type in (ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED)]


def mails(events):
    return sorted({e.data["learner"]["email"] for e in events if e.type == ev.LEARNER_STAT_UPSERTED})


@pytest.fixture
def world(coursera_events):
    """(sandbox with every learner but the first, deliverer, ledger)."""
    with Learning360Sandbox(users=mails(coursera_events)[1:], page_size=3, stage_s=0.005,
                            enforce_rate_limits=False) as lms:
        ledger = Ledger()
        target = target_from_settings(CONNECTION, {**lms.settings, "external_platform": "Coursera (Acme)"})
        deliverer = Deliverer({CONNECTION: target}, ledger, client_factory=fast_client, verify_integration_s=0)
        yield lms, deliverer, ledger
        deliverer.close()


def fast_client(target):
    """Rate limits lifted (the sandbox's too): these tests are about outcomes, not pacing."""
    return Learning360Client(target.base_url, target.client_id, target.client_secret, backoff_initial_s=0.01,
                             poll_interval_s=0.005, reads_per_s=1000, writes_per_s=1000)


def inbound(events):
    return [Inbound(e, ("t", 0, i)) for i, e in enumerate(events)]


def courses_by_external(lms):
    c = lms.company
    return {ext: c.courses[cid] for (_iid, ext), cid in c.by_external.items()}


def test_every_course_and_stat_lands_in_the_synchronized_group(world, coursera_events):
    lms, deliverer, _ledger = world
    out = deliverer.deliver(inbound(coursera_events))
    courses = [e.data for e in coursera_events if e.type == ev.COURSE_UPSERTED]
    stats = [e.data for e in coursera_events if e.type == ev.LEARNER_STAT_UPSERTED]
    late = mails(coursera_events)[0]
    assert out.counts["course_delivered"] == len(courses) and not out.dead
    assert out.counts["stat_delivered"] + out.counts["stat_parked_learner_unknown"] == len(stats)
    held = courses_by_external(lms)
    c = lms.company
    for data in courses:
        course = held[data["external_id"]]
        assert (course["name"], course["description"], course["groupId"], course["status"]) == \
               (data["title"], data["description"], SYNC_GROUP, "published")
        assert course["_id"] in c.catalog[SYNC_GROUP] and course["_id"] in c.library[SYNC_GROUP]
        tags = {c.tags[t["tagId"]]["name"] for t in c.course_tags[course["_id"]]}
        assert tags == {s["name"] for s in data["skills"]}
    for data in stats:
        user = c.user_by_mail(data["learner"]["email"])
        if data["learner"]["email"] == late:
            assert user is None
            continue
        attempts = c.attempts_of[(held[data["course_external_id"]]["_id"], user["_id"])]
        assert len(attempts) == 1
        attempt = c.attempts[attempts[0]]
        completed = data["completion_status"] == "completed"
        assert attempt["progress"] == (100 if completed else round(data["progress_percent"] or 0))
        assert attempt["timeSpent"] == max(1, (data["time_spent_seconds"] or 0) * 1000)
        if data["score_percent"] is not None:
            assert attempt["score"] == round(data["score_percent"])
        if completed:
            assert attempt["completedAt"] == data["completed_at"].replace("+00:00", ".000Z")[:24]


def test_delivering_the_same_events_again_changes_nothing_and_sends_nothing(world, coursera_events):
    lms, deliverer, _ledger = world
    deliverer.deliver(inbound(coursera_events))
    before, operations = lms.company.snapshot(), len(lms.company.operations)
    out = deliverer.deliver(inbound(coursera_events))
    assert lms.company.snapshot() == before and len(lms.company.operations) == operations
    assert out.counts["course_unchanged"] == sum(e.type == ev.COURSE_UPSERTED for e in coursera_events)


def test_admin_tags_survive_provider_changes(world, coursera_events):
    lms, deliverer, _ledger = world
    deliverer.deliver(inbound(coursera_events))
    event = next(e for e in coursera_events if e.type == ev.COURSE_UPSERTED and e.data["skills"])
    course_id = courses_by_external(lms)[event.data["external_id"]]["_id"]
    requests.post(f"{lms.url}/_sandbox/courses/{course_id}/tags", json={"name": "Onboarding 2026"}, timeout=5)
    changed = copy.deepcopy(event.data)
    changed.update(description="New description from Coursera", skills=[{"name": "Statistics", "provider_id": None}],
                   fingerprint="f" * 64)
    new_event = ev.make_event(ev.COURSE_UPSERTED, changed, key=event.key, source="test", subject=None,
                              time=datetime.now(timezone.utc))
    deliverer.deliver(inbound([new_event]))
    c = lms.company
    names = {c.tags[t["tagId"]]["name"] for t in c.course_tags[course_id]}
    assert names == {"Onboarding 2026", "Statistics"}                 # old provider skill gone, admin's kept
    assert c.courses[course_id]["description"] == "New description from Coursera"


def test_unknown_learner_is_parked_then_delivered_on_a_later_run(world, coursera_events):
    lms, deliverer, ledger = world
    late = mails(coursera_events)[0]
    first = deliverer.deliver(inbound(coursera_events))
    assert first.parked and all(p.data["reason"] == "learner_unknown" for p in first.parked)
    for p in first.parked:
        ev.validate_data(ev.STAT_PARKED, p.data)
    still = deliverer.deliver([Inbound(ev.parse_event(p.data["event"]), parked=p.data) for p in first.parked])
    assert len(still.parked) == len(first.parked) and still.parked[0].data["attempts"] == 2
    lms.company.add_user(late)
    later = deliverer.deliver([Inbound(ev.parse_event(p.data["event"]), parked=p.data) for p in still.parked])
    assert later.counts["stat_delivered"] == len(first.parked) and not later.parked
    learner = first.parked[0].data["event"]["data"]["learner"]["provider_id"]
    rows = ledger.query(learner=learner)
    assert rows and all(r["status"] == "delivered" for r in rows)
    assert [h["status"] for h in rows[0]["history"]] == ["parked", "parked", "sent", "delivered"]


def test_a_parked_stat_older_than_a_delivered_one_is_dropped(world, coursera_events):
    lms, deliverer, _ledger = world
    first = deliverer.deliver(inbound(coursera_events))
    lms.company.add_user(mails(coursera_events)[0])
    deliverer.deliver(inbound([ev.parse_event(p.data["event"]) for p in first.parked]))   # fresh copies
    stale = deliverer.deliver([Inbound(ev.parse_event(p.data["event"]), parked=p.data) for p in first.parked])
    assert stale.counts["stat_unchanged"] == len(first.parked)


def test_removed_course_is_archived(world, coursera_events):
    lms, deliverer, _ledger = world
    deliverer.deliver(inbound(coursera_events))
    course = next(e for e in coursera_events if e.type == ev.COURSE_UPSERTED).data
    now = datetime.now(timezone.utc)
    removal = {k: course[k] for k in ("tenant", "connection", "provider", "group_id", "external_id")}
    removed = ev.make_event(ev.COURSE_REMOVED, {**removal, "reason": "not_in_catalog", "last_seen_at": None},
                            key="k", source="test", subject=None, time=now)
    ghost = ev.make_event(ev.COURSE_REMOVED, {**removal, "external_id": "never-synced", "reason": "not_in_catalog",
                                              "last_seen_at": None}, key="k2", source="test", subject=None, time=now)
    operations = len(lms.company.operations)
    out = deliverer.deliver(inbound([removed, ghost]))
    assert out.counts["removal_delivered"] == 2
    assert courses_by_external(lms)[course["external_id"]]["status"] == "archived"
    assert len(lms.company.operations) == operations + 1               # nothing sent for the ghost


def test_an_item_360learning_refuses_becomes_a_dead_letter(world, coursera_events):
    lms, deliverer, ledger = world
    victim = next(e for e in coursera_events if e.type == ev.COURSE_UPSERTED).data["external_id"]
    fault(lms, action="item_error", route="*/courses", method="PUT", external_id=victim)
    out = deliverer.deliver(inbound(coursera_events))
    assert [d.data["record_id"] for d in out.dead] == [f"course/{CONNECTION}/{victim}"]
    dead = out.dead[0].data
    ev.validate_data(ev.RECORD_REJECTED, dead)
    assert (dead["stage"], dead["reason"], dead["origin"]["topic"]) == ("delivery", "refused_by_360learning", "t")
    assert "sandbox fault item_error" in dead["errors"]["message"]
    assert [r["status"] for r in ledger.query(course=victim) if r["kind"] == "course"] == ["failed"]
    # its stats wait for the course instead of failing
    assert all(p.data["reason"] in ("course_unknown", "learner_unknown") for p in out.parked)
    assert any(p.data["reason"] == "course_unknown" for p in out.parked)


def test_unknown_connection_and_reserved_label_are_dead_lettered(coursera_events):
    with Learning360Sandbox(users=mails(coursera_events), reserved_names=["Coursera (connector)"]) as lms:
        target = target_from_settings("other", {**lms.settings, "retry_initial_s": 0.01})
        deliverer = Deliverer({"other": target}, Ledger())
        out = deliverer.deliver(inbound(coursera_events[:3]))
        assert {d.data["reason"] for d in out.dead} == {"no_target"}
        deliverer.targets = {CONNECTION: target}
        out = deliverer.deliver(inbound(coursera_events[:3]))
        assert {d.data["reason"] for d in out.dead} == {"target_config"} and len(out.dead) == 3
        assert "reservedPlatformName" in out.dead[0].data["errors"]


def test_no_secret_in_events_ledger_or_logs(coursera_events, caplog):
    secret = "very-secret-360-value"
    with Learning360Sandbox(users=mails(coursera_events)[1:], credentials={"c1": (secret, {
            "integrations:read", "integrations:write", "integrations:bulk", "bulkOperations:read", "users:read",
            "tags:read", "tags:write", "courses:write"})}) as lms:
        ledger = Ledger()
        target = target_from_settings(CONNECTION, {**lms.settings, "client_secret": secret, "retry_initial_s": 0.01})
        deliverer = Deliverer({CONNECTION: target}, ledger)
        fault(lms, action="expire_token", route="/api/v2/users", times=1)
        with caplog.at_level(logging.DEBUG):
            out = deliverer.deliver(inbound(coursera_events))
        dumped = json.dumps([e.body for e in out.dead + out.parked]) + json.dumps(ledger.query()) + caplog.text
        assert out.parked and secret not in dumped and secret not in repr(target) + repr(deliverer.client(target))


def test_an_integration_deleted_in_360learning_is_created_again(world, coursera_events):
    lms, deliverer, _ledger = world
    deliverer.deliver(inbound(coursera_events))
    (old,) = list(lms.company.integrations)
    api_delete = deliverer.client(next(iter(deliverer.targets.values()))).request
    api_delete("DELETE", f"/api/v2/integrations/{old}")
    out = deliverer.deliver(inbound(coursera_events))                  # the same events, replayed
    (new,) = list(lms.company.integrations)
    assert new != old and not out.dead
    held = {ext for (iid, ext), _cid in lms.company.by_external.items() if iid == new}
    assert held == {e.data["external_id"] for e in coursera_events if e.type == ev.COURSE_UPSERTED}


def test_a_tag_deleted_in_360learning_does_not_stop_delivery(world, coursera_events):
    lms, deliverer, _ledger = world
    deliverer.deliver(inbound(coursera_events))
    event = next(e for e in coursera_events if e.type == ev.COURSE_UPSERTED and e.data["skills"])
    with lms.lock:
        lms.company.tags.clear()                                        # every tag removed in 360Learning
        for tags in lms.company.course_tags.values():
            tags.clear()
    changed = copy.deepcopy(event.data)
    changed.update(fingerprint="e" * 64, description="Changed again")
    out = deliverer.deliver(inbound([ev.make_event(ev.COURSE_UPSERTED, changed, key=event.key, source="t",
                                                   subject=None, time=datetime.now(timezone.utc))]))
    assert out.counts["course_delivered"] == 1 and not out.dead
    course_id = courses_by_external(lms)[event.data["external_id"]]["_id"]
    assert {lms.company.tags[t["tagId"]]["name"] for t in lms.company.course_tags[course_id]} == \
        {s["name"] for s in event.data["skills"]}
