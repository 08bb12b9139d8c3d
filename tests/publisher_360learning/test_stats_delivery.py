"""Learner stats in 360Learning: the newest content wins whatever the order, attempts stay apart,
a course started in a path session is continued, a re-created learner is found again, and tags
are a step that survives a failure."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from itertools import permutations

import pytest
import requests

from hostspec import events as ev
from publisher_360learning.delivery import Deliverer, Inbound
from publisher_360learning.items import to_bulk_stat
from publisher_360learning.ledger import Ledger
from publisher_360learning.sandbox import SYNC_GROUP, Learning360Sandbox
from publisher_360learning.settings import target_from_settings
from tests.hostspec.test_events import stat_data

from .conftest import fault
from .test_delivery import fast_client
from .test_items import course_data

CONNECTION = "acme-coursera"
MAIL = "ada@acme.test"
NOW = datetime(2026, 6, 1, tzinfo=timezone.utc)


@pytest.fixture
def world():
    with Learning360Sandbox(users=[MAIL], page_size=3, stage_s=0.005, enforce_rate_limits=False) as lms:
        ledger = Ledger()
        target = target_from_settings(CONNECTION, {**lms.settings, "external_platform": "Coursera (Acme)",
                                                   "default_completion": False, "default_progress": 1})
        deliverer = Deliverer({CONNECTION: target}, ledger, client_factory=fast_client, verify_integration_s=0)
        out = deliverer.deliver([Inbound(course_event())])
        assert out.counts["course_delivered"] == 1
        yield lms, deliverer, ledger
        deliverer.close()


def course_event(**over):
    data = {**course_data(external_id="crs-1", skills=[{"name": "SQL", "provider_id": "sql"}]), "tenant": "acme", "connection": CONNECTION,
            "provider": "coursera", "group_id": SYNC_GROUP, "locked_fields": ["title", "description"],
            "provider_updated_at": None, **over}
    data["fingerprint"] = ev.fingerprint(data)
    return ev.make_event(ev.COURSE_UPSERTED, data, key=f"acme/{CONNECTION}/coursera/course/crs-1", source="/t",
                         subject="crs-1", time=NOW)


def stat(**over):
    data = stat_data(**{"connection": CONNECTION, "group_id": SYNC_GROUP, "course_external_id": "crs-1",
                        "learner": {"email": MAIL, "provider_id": MAIL}, **over})
    return ev.make_event(ev.LEARNER_STAT_UPSERTED, data, key=f"acme/{CONNECTION}/coursera/stat/crs-1/{MAIL}",
                         source="/t", subject=None, time=NOW)


def parked(event, first_parked_at="2026-01-01T00:00:00+00:00"):
    return Inbound(event, ("parked", 0, 0), parked={"first_parked_at": first_parked_at, "attempts": 1})


def attempts(lms):
    c = lms.company
    user = c.user_by_mail(MAIL)["_id"]
    course_id = next(cid for (_i, ext), cid in c.by_external.items() if ext == "crs-1")
    return [c.attempts[a] for a in c.attempts_of.get((course_id, user), [])]


OLD = dict(progress_percent=30.0, as_of="2026-01-03T00:00:00.000Z", last_activity_at="2026-01-02T00:00:00.000Z")
NEW = dict(completion_status="completed", progress_percent=100.0, completed_at="2026-01-09T00:00:00.000Z",
           as_of="2026-01-10T00:00:00.000Z", last_activity_at="2026-01-09T00:00:00.000Z")


NEWER_IN_PROGRESS = dict(progress_percent=80.0, as_of="2026-01-10T00:00:00.000Z",
                         last_activity_at="2026-01-09T00:00:00.000Z")


@pytest.mark.parametrize("order", list(permutations(["old-parked", "new-live"])))
@pytest.mark.parametrize("split", ["one batch", "two batches"])
@pytest.mark.parametrize("newer", ["completed", "in progress"])
def test_the_newest_stat_wins_in_any_order_batch_or_topic(world, order, split, newer):
    lms, deliverer, _ledger = world
    new = NEW if newer == "completed" else NEWER_IN_PROGRESS
    items = {"old-parked": parked(stat(**OLD)), "new-live": Inbound(stat(**new), ("stats", 3, 7))}
    batches = [[items[o] for o in order]] if split == "one batch" else [[items[o]] for o in order]
    for batch in batches:
        deliverer.deliver(batch)
    (attempt,) = attempts(lms)
    expected = (100, "2026-01-09T00:00:00.000Z") if newer == "completed" else (80, None)
    assert (attempt["progress"], attempt["completedAt"]) == expected


def test_two_parked_stats_split_across_batches_the_newer_is_kept(world):
    """Both parked while the learner was unknown; the batch boundary falls between them."""
    lms, deliverer, _ledger = world
    deliverer.deliver([parked(stat(**OLD), "2026-01-03T00:00:00+00:00")])
    out = deliverer.deliver([parked(stat(**NEW), "2026-01-10T00:00:00+00:00")])
    assert out.counts["stat_delivered"] == 1
    assert attempts(lms)[0]["progress"] == 100


def test_two_attempts_of_one_learner_are_both_delivered_and_never_merged(world):
    lms, deliverer, ledger = world
    first = stat(attempt_id="a~1", completion_status="completed", progress_percent=100.0,
                 completed_at="2026-01-05T00:00:00.000Z", last_activity_at="2026-01-05T00:00:00.000Z")
    second = stat(attempt_id="a~2", first_activity_at="2026-03-01T00:00:00.000Z", progress_percent=20.0,
                  last_activity_at="2026-03-02T00:00:00.000Z", as_of="2026-03-03T00:00:00.000Z")
    out = deliverer.deliver([Inbound(first), Inbound(second)])
    assert out.counts["stat_delivered"] == 2
    assert sorted(a["progress"] for a in attempts(lms)) == [20, 100]
    assert len(ledger.query(learner=MAIL)) == 2
    again = deliverer.deliver([Inbound(second), Inbound(first)])
    assert again.counts["stat_unchanged"] == 2


def test_in_progress_at_99_7_is_never_a_completion(world):
    lms, deliverer, _ledger = world
    deliverer.deliver([Inbound(stat(progress_percent=99.7))])
    (attempt,) = attempts(lms)
    assert attempt["progress"] == 99 and attempt["completedAt"] is None


def _start(lms, at: datetime, session="65a0000000000000000005e1"):
    resp = requests.post(lms.url + "/_sandbox/attempts", timeout=5, json={
        "externalId": "crs-1", "mail": MAIL, "pathSessionId": session, "at": at.timestamp()})
    resp.raise_for_status()
    return resp.json()


COURSERA = dict(first_activity_at="2026-05-01T09:01:00+00:00", last_activity_at="2026-05-01T10:00:00+00:00",
                progress_percent=45.0, as_of="2026-05-02T00:00:00+00:00")


def test_start_in_a_path_session_then_the_enrolment_a_minute_later_is_one_attempt(world):
    lms, deliverer, _ledger = world
    started = _start(lms, datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc))
    deliverer.deliver([Inbound(stat(**COURSERA))])
    (attempt,) = attempts(lms)
    assert attempt["_id"] == started["_id"] and attempt["pathSessionId"] == started["pathSessionId"]
    assert attempt["progress"] == 45 and attempt["lastActivityAt"] == "2026-05-01T10:00:00.000Z"
    later = dict(COURSERA, completion_status="completed", progress_percent=100.0,
                 completed_at="2026-05-03T09:00:00+00:00", as_of="2026-05-04T00:00:00+00:00")
    deliverer.deliver([Inbound(stat(**later))])
    (attempt,) = attempts(lms)
    assert (attempt["progress"], attempt["completedAt"]) == (100, "2026-05-03T09:00:00.000Z")


def test_the_enrolment_then_start_in_a_path_session_is_one_attempt(world):
    lms, deliverer, _ledger = world
    deliverer.deliver([Inbound(stat(**COURSERA))])
    started = _start(lms, datetime(2026, 5, 1, 10, 1, tzinfo=timezone.utc))
    later = dict(COURSERA, progress_percent=80.0, last_activity_at="2026-05-02T10:00:00+00:00",
                 as_of="2026-05-03T00:00:00+00:00")
    deliverer.deliver([Inbound(stat(**later))])
    (attempt,) = attempts(lms)
    assert attempt["_id"] == started["_id"] and attempt["progress"] == 80 and attempt["pathSessionId"]


def test_a_learner_deleted_and_created_again_is_found_again(world):
    lms, deliverer, ledger = world
    deliverer.deliver([Inbound(stat(**OLD))])
    c = lms.company
    c.users[c.user_by_mail(MAIL)["_id"]]["status"] = "deleted"
    c.add_user(MAIL)
    out = deliverer.deliver([Inbound(stat(**NEW))])
    assert out.counts["stat_delivered"] == 1 and not out.dead
    assert ledger.user_id(lms.url, MAIL) == c.user_by_mail(MAIL)["_id"]


def test_tags_left_pending_by_a_failure_are_merged_by_the_next_pass(world):
    lms, deliverer, ledger = world
    fault(lms, action="status_5xx", route="/api/v2/courses/*/tags", method="GET", times=50)
    changed = course_event(skills=[{"name": "SQL", "provider_id": "sql"}, {"name": "Python", "provider_id": "py"}])
    out = deliverer.deliver([Inbound(changed)])
    assert out.counts["course_delivered"] == 1 and out.tags_pending
    assert ledger.pending_tags(CONNECTION)
    requests.delete(lms.url + "/_sandbox/faults", timeout=5)
    again = deliverer.deliver_connection(CONNECTION, [])
    assert again.counts["tags_merged"] == 1 and not ledger.pending_tags(CONNECTION)
    c = lms.company
    course_id = next(cid for (_i, ext), cid in c.by_external.items() if ext == "crs-1")
    assert {c.tags[t["tagId"]]["name"] for t in c.course_tags[course_id]} == {"SQL", "Python"}


def test_one_connections_trouble_is_returned_not_raised(world):
    lms, deliverer, _ledger = world
    other = target_from_settings("other", {**lms.settings, "base_url": "http://127.0.0.1:9"})
    deliverer.targets["other"] = other
    theirs = stat(connection="other")
    out = deliverer.deliver([Inbound(theirs), Inbound(stat(**NEW))])
    assert out.counts["stat_delivered"] == 1 and list(out.retry) == ["other"]


# -- found by the adversarial review -------------------------------------------------------------------------
def _world_with_scopes(without: str):
    from publisher_360learning.sandbox import CLIENT_ID, CLIENT_SECRET
    from publisher_360learning.sandbox.auth import ALL_SCOPES
    lms = Learning360Sandbox(users=[MAIL], stage_s=0.005, enforce_rate_limits=False,
                             credentials={CLIENT_ID: (CLIENT_SECRET, set(ALL_SCOPES) - {without})}).start()
    target = target_from_settings(CONNECTION, {**lms.settings, "external_platform": "Coursera (Acme)"})
    return lms, Deliverer({CONNECTION: target}, Ledger(), client_factory=fast_client, verify_integration_s=0)


def test_a_credential_without_tag_rights_still_delivers_courses_and_stats():
    lms, deliverer = _world_with_scopes("tags:write")
    try:
        out = deliverer.deliver([Inbound(course_event()), Inbound(stat(**NEW))])
        assert out.counts["course_delivered"] == 1 and out.counts["stat_delivered"] == 1 and not out.dead
        assert out.tags_pending and deliverer.ledger.pending_tags(CONNECTION)
    finally:
        deliverer.close()
        lms.close()


def test_a_credential_without_course_stats_read_still_delivers_stats():
    lms, deliverer = _world_with_scopes("courseStats:read")
    try:
        deliverer.deliver([Inbound(course_event())])
        out = deliverer.deliver([Inbound(stat(**NEW))])
        assert out.counts["stat_delivered"] == 1 and not out.dead
    finally:
        deliverer.close()
        lms.close()


def test_a_new_provider_attempt_does_not_take_over_the_open_attempt_of_another(world):
    lms, deliverer, _ledger = world
    deliverer.deliver([Inbound(stat(attempt_id="a~1", progress_percent=30.0))])        # abandoned, in progress
    second = stat(attempt_id="a~2", first_activity_at="2026-03-01T00:00:00.000Z", progress_percent=20.0,
                  last_activity_at="2026-03-02T00:00:00.000Z", as_of="2026-03-03T00:00:00.000Z")
    deliverer.deliver([Inbound(second)])
    assert sorted(a["progress"] for a in attempts(lms)) == [20, 30]


def test_a_new_owner_waits_for_the_operations_a_previous_owner_left_running(world):
    """The previous owner died inside an import of older content: the new owner's first delivery
    waits for it to end, so the older content never lands after the newer."""
    lms, deliverer, _ledger = world
    deliverer.deliver([Inbound(stat(**OLD))])
    fault_rule = {"action": "op_slow", "route": "*/stats", "run_s": 1.5, "times": 1}
    assert requests.post(lms.url + "/_sandbox/faults", json=fault_rule, timeout=5).status_code == 201
    older = stat(**dict(OLD, progress_percent=50.0, as_of="2026-01-05T00:00:00.000Z",
                        last_activity_at="2026-01-04T00:00:00.000Z"))
    client = deliverer.client(deliverer.targets[CONNECTION])
    iid = next(iter(lms.company.integrations))
    body = {"input": [to_bulk_stat(older.data)]}
    client.request("POST", f"/api/v2/bulk/integrations/{iid}/stats", json=body)   # submitted, then "died"
    deliverer.deliver_connection(CONNECTION, [Inbound(stat(**NEWER_IN_PROGRESS))], settle=True)
    time.sleep(2)
    (attempt,) = attempts(lms)
    assert attempt["progress"] == 80



def test_a_parked_stat_is_counted_once_when_parked_and_once_when_it_leaves():
    """110 parked stats once showed 1,540 in the counter (every retry round counted again)."""
    from hostspec.ops import metrics

    with Learning360Sandbox(users=[], stage_s=0.005, enforce_rate_limits=False) as lms:
        target = target_from_settings(CONNECTION, {**lms.settings, "external_platform": "Coursera (Acme)"})
        deliverer = Deliverer({CONNECTION: target}, Ledger(), client_factory=fast_client, verify_integration_s=0)
        deliverer.deliver([Inbound(course_event())])
        counter = metrics.PUBLISHER_RECORDS.labels(CONNECTION, "stat", "parked_learner_unknown")
        before = counter._value.get()
        first = deliverer.deliver([Inbound(stat())])
        assert first.counts["stat_parked_learner_unknown"] == 1 and len(first.parked) == 1
        assert deliverer.ledger.parked_by_connection() == {CONNECTION: 1}
        again = first.parked[0]                          # the next retry round reads it back, still unknown
        rounds = [deliverer.deliver([Inbound(ev.parse_event(again.data["event"]), ("parked", 0, 1),
                                             parked=again.data)]) for _ in range(3)]
        assert [r.counts["stat_parked_learner_unknown"] for r in rounds] == [0, 0, 0]
        assert [r.counts["stat_still_parked"] for r in rounds] == [1, 1, 1]
        assert counter._value.get() - before == 1
        lms.company.add_user(MAIL)                       # the learner arrives: released, counted once
        released = deliverer.deliver([Inbound(ev.parse_event(again.data["event"]), ("parked", 0, 2),
                                              parked=again.data)])
        assert released.counts["stat_delivered"] == 1 and released.counts["stat_unparked_released"] == 1
        assert deliverer.ledger.parked_by_connection() == {}
        deliverer.close()


def test_an_integration_deleted_between_checks_is_rebuilt_not_read_as_course_absent():
    """A new owner's ledger holds the integration (it is journaled) but no course ids: it asks
    360Learning for each course. When the integration was deleted since it was last checked, that
    answer is integrationNotFound, not "course absent": the integration is created again, instead
    of the archive being marked delivered and the stat parked against a dead integration."""
    with Learning360Sandbox(users=[MAIL], stage_s=0.005, enforce_rate_limits=False) as lms:
        target = target_from_settings(CONNECTION, {**lms.settings, "external_platform": "Coursera (Acme)"})
        first = Deliverer({CONNECTION: target}, Ledger(), client_factory=fast_client)
        courses = [course_event(external_id=f"crs-{i}") for i in (1, 2, 3)]
        assert first.deliver([Inbound(c) for c in courses]).counts["course_delivered"] == 3
        first.close()
        (old,) = lms.company.integrations
        rebuilt = Ledger()                     # the new owner's ledger, rebuilt from the journal
        rebuilt.remember_integration(CONNECTION, SYNC_GROUP, "Coursera (Acme)", old, tenant="acme")
        owner = Deliverer({CONNECTION: target}, rebuilt, client_factory=fast_client, verify_integration_s=600)
        assert owner.deliver([Inbound(stat(course_external_id="crs-1"))]).counts["stat_delivered"] == 1
        owner.client(target).request("DELETE", f"/api/v2/integrations/{old}")   # an admin deletes it
        removal = {k: courses[2].data[k] for k in ("tenant", "connection", "provider", "group_id", "external_id")}
        removed = ev.make_event(ev.COURSE_REMOVED, {**removal, "reason": "not_in_catalog", "last_seen_at": None},
                                key="k", source="t", subject=None, time=NOW)
        out = owner.deliver([Inbound(stat(course_external_id="crs-2")), Inbound(removed)])
        (new,) = lms.company.integrations
        assert new != old and rebuilt.integration(CONNECTION, SYNC_GROUP, "Coursera (Acme)") == new
        assert out.counts["stat_parked_course_unknown"] == 1 and not out.dead
        # the course comes by again (the replay the log asks for): it and its parked stat land
        again = owner.deliver([Inbound(courses[1]), parked(stat(course_external_id="crs-2"))])
        assert again.counts["course_delivered"] == 1 and again.counts["stat_delivered"] == 1
        owner.close()
        assert {ext for (iid, ext) in lms.company.by_external if iid == new} == {"crs-2"}


ENROLLED = dict(first_activity_at="2026-05-01T09:01:00+00:00", last_activity_at="2026-05-01T09:01:00+00:00",
                progress_percent=0.0, as_of="2026-05-01T12:00:00+00:00")
PROGRESSED = dict(ENROLLED, last_activity_at="2026-05-01T10:00:00+00:00", progress_percent=45.0,
                  as_of="2026-05-02T00:00:00+00:00")


@pytest.mark.parametrize("started", [True, False], ids=["start-in-a-session-first", "no-start"])
def test_equal_instants_never_lose_an_update(world, started):
    """360Learning's attempt rules compare strictly: an import beginning at the very instant an
    attempt's activity ended neither updates it nor makes a new one. A START pressed once has
    first = last activity; an enrolment reported without activity has too. Both are followed by
    the provider's progress, which must reach the one attempt."""
    lms, deliverer, _ledger = world
    session = _start(lms, datetime(2026, 5, 1, 9, 1, tzinfo=timezone.utc)) if started else None
    deliverer.deliver([Inbound(stat(**ENROLLED))])
    deliverer.deliver([Inbound(stat(**PROGRESSED))])
    (attempt,) = attempts(lms)
    assert (attempt["progress"], attempt["lastActivityAt"]) == (45, "2026-05-01T10:00:00.000Z")
    if session:
        assert attempt["_id"] == session["_id"] and attempt["pathSessionId"] == session["pathSessionId"]
