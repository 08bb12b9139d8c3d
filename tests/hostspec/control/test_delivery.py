"""Delivery health, the credentials check and the warnings of a stored connection (issue 29), in
process: the board's aggregation, the shape the publisher's journal keeps to, and the API's
answers (tests/integration/test_delivery_health.py runs them on the broker)."""
from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import falcon.testing
import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.control import api as admin_api, checks
from hostspec.control.delivery import DeliveryBoard, DeliveryFollower, verdict
from hostspec.control.plane import ControlPlane
from hostspec.config.control_topic import MemoryControl
from hostspec.config.policy import SettingsPolicy
from hostspec.ledger_records import DeliveryFact, read_fact
from hostspec.secrets import Secret
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from publisher_360learning.ledger import DELIVERED, FAILED, Ledger, Record
from publisher_360learning.settings import target_problems
from tests.hostspec.api_fakes import GROUP, NOW, Api, body, run

T0 = NOW.timestamp()


def fact(record: str, status: str | None, at: float, connection: str = "acme-c", tenant: str | None = "acme"):
    return DeliveryFact(record, status, connection if status else None, tenant if status else None,
                        at if status else None)


def dead_letter(record: str, at: float, *, connection="acme-c", tenant="acme", stage="delivery",
                reason="target_config", n=0) -> ev.Event:
    data = {"stage": stage, "reason": reason, "errors": "refused", "record_id": record, "record": None,
            "request_id": None, "run_id": None, "tenant": tenant, "connection": connection, "provider": "coursera",
            "origin": None, "raw_value": None, "raw_encoding": None}
    return ev.make_event(ev.RECORD_REJECTED, data, key=f"{tenant}/{connection}/coursera/{record}", source="/test",
                         subject=record, time=datetime.fromtimestamp(at, timezone.utc), id_content=f"{record}/{n}")


def parked(record: str, at: float, *, connection="acme-c", tenant="acme", attempts=1) -> ev.Event:
    when = ev.isoformat(datetime.fromtimestamp(at, timezone.utc))
    data = {"reason": "learner_unknown", "detail": "not in 360Learning yet", "attempts": attempts,
            "first_parked_at": when, "parked_at": when, "tenant": tenant, "connection": connection,
            "provider": "coursera", "event": {"id": "x"}}
    return ev.make_event(ev.STAT_PARKED, data, key=f"{tenant}/{connection}/coursera/{record}", source="/test",
                         subject=record, time=datetime.fromtimestamp(at, timezone.utc), id_content=f"{record}/{attempts}")


# -- the board -----------------------------------------------------------------------------------
def test_delivered_counts_each_item_once_by_its_latest_outcome():
    board = DeliveryBoard()
    board.journal(fact("course/acme-c/c1", "delivered", T0))
    board.journal(fact("course/acme-c/c1", "delivered", T0 + 5))     # delivered again (new content): once
    board.journal(fact("course/acme-c/c2", "delivered", T0 + 1))
    board.journal(fact("course/acme-c/c3", "failed", T0 + 9))        # refused: not delivered
    board.journal(fact("course/acme-c/c4", "delivered", T0 + 2))
    board.journal(fact("course/acme-c/c4", None, 0))                  # withdrawn (a tombstone)
    board.journal(fact("course/acme-c/c2", "failed", T0 + 3))        # its latest outcome is a refusal
    health = board.health("acme-c", "acme")
    assert (health["delivered"], health["last_delivered_at"]) == (1, ev.isoformat(NOW + timedelta(seconds=5)))


def test_dead_letters_of_stage_delivery_count_once_each_with_their_reasons():
    board = DeliveryBoard()
    for n in range(3):
        board.dead_letter(dead_letter(f"course/acme-c/c{n}", T0 + n))
    board.dead_letter(dead_letter("course/acme-c/c0", T0))                       # the same event again
    board.dead_letter(dead_letter("course/acme-c/c9", T0 + 9, reason="no_target"))
    board.dead_letter(dead_letter("course/acme-c/m1", T0 + 20, stage="mapping"))  # the worker's: not delivery
    health = board.health("acme-c", "acme")
    assert (health["dead_lettered"], health["dead_letter_reasons"]) == (4, {"no_target": 1, "target_config": 3})
    assert health["last_dead_lettered_at"] == ev.isoformat(NOW + timedelta(seconds=9))


def test_a_connection_sees_its_tenants_facts_and_not_another_tenants_of_the_same_name():
    board = DeliveryBoard()
    board.journal(fact("course/acme-c/c1", "delivered", T0))
    board.journal(fact("course/acme-c/c2", "delivered", T0, tenant="beta"))
    board.dead_letter(dead_letter("course/acme-c/c3", T0, tenant="beta"))
    board.parked(parked("stat/acme-c/c1/l1", T0, tenant="beta"))
    assert [board.health("acme-c", t)[k] for t in ("acme", "beta") for k in ("delivered", "dead_lettered", "parked")
            ] == [1, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("journal_first", [False, True])
def test_parked_now_is_parked_with_no_delivery_or_dead_letter_since(journal_first):
    board = DeliveryBoard()
    facts = [
        lambda: board.parked(parked("stat/acme-c/c1/l1", T0)),                 # then delivered: released
        lambda: board.journal(fact("stat/acme-c/c1/l1", "delivered", T0 + 60)),
        lambda: board.parked(parked("stat/acme-c/c1/l2", T0)),                 # then expired: dead-lettered
        lambda: board.dead_letter(dead_letter("stat/acme-c/c1/l2", T0 + 60, reason="learner_unknown_expired")),
        lambda: board.journal(fact("stat/acme-c/c2/l1", "delivered", T0)),     # delivered, then parked again
        lambda: board.parked(parked("stat/acme-c/c2/l1", T0 + 60)),
        lambda: board.parked(parked("stat/acme-c/c3/l1", T0)),                 # parked, parked again: still one
        lambda: board.parked(parked("stat/acme-c/c3/l1", T0 + 30, attempts=2)),
    ]
    # the three topics are read side by side: the join must not depend on which one is ahead
    order = [f for i, f in enumerate(facts) if (i % 2 == 1) == journal_first] + \
            [f for i, f in enumerate(facts) if (i % 2 == 1) != journal_first]
    for apply in order:
        apply()
    health = board.health("acme-c", "acme")
    # c2/l1: its earlier content delivered, its newer one parked: counted in both
    assert (health["parked"], health["delivered"], health["dead_lettered"]) == (2, 2, 1)


def test_the_verdict_says_failing_when_a_completed_run_was_dead_lettered_whole():
    completed = [{"phase": "completed", "dry_run": False, "counts": {"courses_emitted": 40, "stats_emitted": 0}}]
    board = DeliveryBoard()
    assert verdict(board.health("acme-c", "acme"), completed) == "pending"
    assert verdict(board.health("acme-c", "acme"), []) == "idle"
    for n in range(40):
        board.dead_letter(dead_letter(f"course/acme-c/c{n}", T0 + n))
    assert verdict(board.health("acme-c", "acme"), completed) == "failing"
    board.journal(fact("course/acme-c/c1", "delivered", T0 + 100))      # re-driven and delivered since
    assert verdict(board.health("acme-c", "acme"), completed) == "delivering"
    board.parked(parked("stat/acme-c/c1/l1", T0 + 200))
    assert verdict(board.health("acme-c", "acme"), completed) == "parked"


def test_the_follower_applies_each_topics_records_and_skips_what_does_not_parse():
    topics = Topics()
    follower = DeliveryFollower(KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), topics, ["p.ledger"])
    assert follower.board.ready is False         # not read yet: the API answers 503, not zeros
    follower.apply(topics.dead_letter, b"k", dead_letter("course/acme-c/c1", T0).to_json().encode())
    follower.apply(topics.parked, b"k", parked("stat/acme-c/c1/l1", T0).to_json().encode())
    follower.apply(topics.dead_letter, b"k", b"not an event")
    follower.apply("p.ledger", "d\x1fcourse\x1facme-c\x1fc2".encode(), json.dumps(
        {"connection": "acme-c", "tenant": "acme", "status": "delivered", "at": T0}).encode())
    follower.apply("p.ledger", "i\x1facme-c\x1fg\x1fl".encode(), b'{"integration_id": "x"}')   # not a delivery
    health = follower.board.health("acme-c", "acme")
    assert (health["delivered"], health["dead_lettered"], health["parked"], follower.skipped) == (1, 1, 1, 1)


# -- the shape the publisher keeps to ------------------------------------------------------------
def test_the_publishers_journal_records_are_the_delivery_facts_the_host_reads():
    journaled = []
    ledger = Ledger(journal=lambda tenant, key, value: journaled.append((key, value)))
    course = Record("course", "acme-c", "c1", None, "e1", "f1", tenant="acme")
    stat = Record("stat", "acme-c", "c1", "l1", "e2", "f2", attempt="a1", tenant="acme")
    ledger.mark([(course, DELIVERED, "op1", "r1", None, {}), (stat, FAILED, None, None, "refused", None)])
    ledger.forget_integration("acme-c", GROUP, "label", tenant="acme")     # withdraws what was delivered
    read = [read_fact(key, None if value is None else json.dumps(value).encode()) for key, value in journaled]
    assert [(f.record_id, f.status, f.connection, f.tenant) for f in read if f is not None] == [
        ("course/acme-c/c1", "delivered", "acme-c", "acme"), ("stat/acme-c/c1/l1/a1", "failed", "acme-c", "acme"),
        ("course/acme-c/c1", None, None, None)]
    assert all(isinstance(f.at, float) for f in read[:2])
    assert sum(f is None for f in read) == 1       # the integration's record: not a delivery fact


@pytest.mark.parametrize("value", [b"{", b"[]", b'{"connection": "c", "status": "sent", "at": 1}',
                                   b'{"connection": "c", "status": "delivered", "at": "now"}',
                                   b'{"connection": "c", "status": "delivered", "at": true}'])
def test_a_journal_value_off_the_shape_is_skipped_not_an_error(value):
    assert read_fact(b"d\x1fcourse\x1fc\x1fx", value) is None


# -- the API -------------------------------------------------------------------------------------
@pytest.fixture
def api(plugins, tmp_path, monkeypatch):
    return Api(plugins, tmp_path, monkeypatch)


def test_delivery_and_status_show_dead_letters_while_the_run_says_completed(api):
    completed = run("acme-c", "acme", 7)
    completed.data.update(phase="completed", started_at=ev.isoformat(NOW), ended_at=ev.isoformat(NOW))
    completed.data["counts"]["courses_emitted"] = 40
    api.plane.published.append(completed)
    for n in range(40):
        api.plane.delivery.dead_letter(dead_letter(f"course/acme-c/c{n}", T0 + 60 + n))
    api.plane.delivery.journal(fact("course/beta-c/c1", "delivered", T0, connection="beta-c", tenant="beta"))

    answer = api.call("acme-trigger", "GET", "/connections/acme-c/delivery")
    assert answer.status_code == 200, answer.text
    assert answer.json == {"connection": "acme-c", "delivered": 0, "dead_lettered": 40, "parked": 0,
                           "last_delivered_at": None, "last_dead_lettered_at": ev.isoformat(NOW + timedelta(seconds=99)),
                           "dead_letter_reasons": {"target_config": 40}}
    status = api.call("acme-trigger", "GET", "/connections/acme-c/status").json
    assert status["phase"] == "completed"
    assert {**status["delivery"], "verdict": status["delivery"]["verdict"]} == {**answer.json, "verdict": "failing"}
    assert api.call("beta-admin", "GET", "/connections/beta-c/delivery").json["delivered"] == 1

    api.plane.delivery.ready = False          # a follower still reading: no zeros that would look healthy
    waiting = api.call("root", "GET", "/connections/acme-c/delivery")
    assert waiting.status_code == 503 and "not read yet" in waiting.json["message"]
    assert api.call("root", "GET", "/connections/acme-c/status").json["delivery"] is None


def test_created_and_changed_connections_without_a_target_carry_a_warning(api):
    created = api.call("root", "POST", "/connections", json={"connection": "acme-new", **body("acme")})
    assert created.status_code == 201 and created.json["warnings"] == [checks.NO_TARGET]
    assert "no_target" in created.json["warnings"][0]
    assert "warnings" not in api.control.document("acme-new")        # advice in the answer, not stored
    target = {"base_url": "https://app.360learning.com", "client_id": "c",
              "client_secret": {"env": "CONNECTOR_SECRET_ACME__360"}, "company_id": "x", "author_id": "y"}
    changed = api.call("root", "PUT", "/connections/acme-new", json={**body("acme"), "target": target})
    assert changed.status_code == 200 and changed.json["warnings"] == [checks.UNCHECKED_TARGET]
    paused = api.call("root", "PUT", "/connections/acme-new", json={**body("acme"), "paused": True})
    assert paused.json["warnings"][0] == checks.NO_TARGET and "paused" in paused.json["warnings"][1]


@pytest.fixture
def checked(plugins, monkeypatch):
    """The API on a control plane with the publisher's target check, against a Coursera sandbox."""
    monkeypatch.setenv("API_TOKEN_OPS", "ops-token-0123456789")
    policy = SettingsPolicy(allow_sandboxes=True)
    control = MemoryControl(policy)
    plane = ControlPlane(plugins, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics(), policy,
                         log=control, writer=control,
                         target_check=lambda name, target, tenant: target_problems(policy, name, target, tenant))
    client = falcon.testing.TestClient(admin_api.make_app(plane, {"ops": Secret(env="API_TOKEN_OPS")}))
    with CourseraSandbox(OrgSpec(contents=2, learners=1, enrollments=1)) as coursera:
        monkeypatch.setenv("CONNECTOR_SECRET_ACME__COURSERA", coursera.client_secret)
        monkeypatch.setenv("CONNECTOR_SECRET_ACME__WRONG", "not-the-secret-4711")
        client.coursera = coursera

        def put(name, **settings):
            doc = {"tenant": "acme", "provider": "coursera", "group_id": GROUP, "settings": {
                "org_id": coursera.spec.org_id, "client_id": coursera.client_id, "base_url": coursera.url,
                "client_secret": {"env": "CONNECTOR_SECRET_ACME__COURSERA"}, "max_retry_after_s": 0.2, **settings}}
            return client.simulate_put(f"/connections/{name}", json=doc, headers=client.auth)

        client.put, client.auth = put, {"Authorization": "Bearer ops-token-0123456789"}
        yield client


def _check(client, name):
    answer = client.simulate_post(f"/connections/{name}/check", headers=client.auth)
    assert answer.status_code == 200, answer.text
    return answer.json


def test_the_check_answers_each_step_and_never_a_secret(checked):
    assert checked.put("good").status_code == 201
    good = _check(checked, "good")
    assert good["ok"] is True and [s["name"] for s in good["checks"]] == ["settings", "secrets", "provider"]
    assert all(s["ok"] for s in good["checks"]) and checked.coursera.spec.org_id in good["checks"][2]["message"]
    assert good["warnings"] == [checks.NO_TARGET]

    checked.put("wrong", client_secret={"env": "CONNECTOR_SECRET_ACME__WRONG"})
    wrong = _check(checked, "wrong")
    assert (wrong["ok"], wrong["checks"][2]["ok"]) == (False, False) and wrong["checks"][2]["message"]
    checked.put("unset", client_secret={"env": "CONNECTOR_SECRET_ACME__UNSET"})
    unset = _check(checked, "unset")
    assert [s["ok"] for s in unset["checks"]] == [True, False, False]
    assert "CONNECTOR_SECRET_ACME__UNSET is not set" in unset["checks"][1]["message"]
    for answer in (good, wrong, unset):
        text = json.dumps(answer)
        assert checked.coursera.client_secret not in text and "not-the-secret-4711" not in text
    assert checked.simulate_post("/connections/nobody/check", headers=checked.auth).status_code == 404


def test_a_provider_out_of_reach_is_a_failed_check_not_an_error(checked):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"     # bound, not listening: connections refused
        checked.put("away", base_url=closed, max_attempts=2)
        started = time.monotonic()
        away = _check(checked, "away")
    assert away["ok"] is False and away["checks"][2]["ok"] is False and away["checks"][2]["message"]
    assert time.monotonic() - started < 30


class _Hook:
    def __init__(self, act):
        self.act = act

    def get_hookimpls(self):
        return [self.act]

    def __call__(self, connection, context):
        return self.act(connection, context)


@pytest.mark.parametrize("act, words", [
    (lambda c, x: time.sleep(5), "did not answer within 0.2 s"),
    (lambda c, x: (_ for _ in ()).throw(ConnectionError("refused by sk-live-abcdef123")), "ConnectionError"),
])
def test_a_hook_that_hangs_or_raises_is_a_failed_step(monkeypatch, act, words):
    secret = Secret("sk-live-abcdef123")
    secret.reveal()                      # revealed here, as the provider's client does: redacted from messages
    provider = SimpleNamespace(name="fake", info=SimpleNamespace(secret_fields=("secret",)),
                               hooks=SimpleNamespace(check_connection=_Hook(act)))
    plugins = SimpleNamespace(provider=lambda name: provider)
    connection = SimpleNamespace(name="c", provider="fake", settings={"secret": secret})
    started = time.monotonic()
    answer = checks.run_check("c", lambda: connection, plugins, timeout_s=0.2)
    assert time.monotonic() - started < 3
    assert answer["ok"] is False and words in answer["checks"][2]["message"]
    assert "sk-live-abcdef123" not in json.dumps(answer)
