"""A credential is its whole identity: a connection naming another tenant's client id with a
wrong secret meets its own 401 from the 360Learning sandbox (over HTTP) and delivers nothing,
while the tenant owning the client id goes on delivering (issue 27)."""
from __future__ import annotations

import logging

import pytest

from connector_coursera.sandbox import OrgSpec
from hostspec import events as ev
from hostspec.secrets import Secret
from publisher_360learning.delivery import Deliverer
from publisher_360learning.ledger import Ledger
from publisher_360learning.sandbox import SYNC_GROUP, Learning360Sandbox
from publisher_360learning.settings import target_from_settings

from tests.conftest import sandbox_sync_events

from .test_delivery import fast_client, inbound

WRONG = "not-acme-secret-0451"


def courses(name, tenant, contents):
    sink = sandbox_sync_events(OrgSpec(contents=contents, learners=3, enrollments=5), scope="catalog", name=name,
                               tenant=tenant, group_id=SYNC_GROUP)
    return [e for e in sink.events if e.type == ev.COURSE_UPSERTED]


@pytest.fixture
def two_tenants():
    """acme's target with the sandbox's credential; evil's naming acme's client id, another secret."""
    with Learning360Sandbox(page_size=50, stage_s=0.005, enforce_rate_limits=False) as lms:
        acme = target_from_settings("acme-coursera", {**lms.settings, "external_platform": "Coursera (Acme)"})
        evil = target_from_settings("evil-coursera", {**lms.settings, "client_secret": WRONG,
                                                      "external_platform": "Coursera (Evil)"})
        deliverer = Deliverer({"acme-coursera": acme, "evil-coursera": evil}, Ledger(), client_factory=fast_client,
                              verify_integration_s=0)
        yield lms, deliverer
        deliverer.close()


def test_a_wrong_secret_naming_another_tenants_client_id_gets_its_own_401(two_tenants, caplog):
    lms, deliverer = two_tenants
    acme_courses, evil_courses = courses("acme-coursera", "acme", 6), courses("evil-coursera", "evil", 4)

    first = deliverer.deliver(inbound(acme_courses[:3]))          # acme's client holds a token now
    assert first.counts["course_delivered"] == 3 and not first.dead

    with caplog.at_level(logging.INFO):
        refused = deliverer.deliver(inbound(evil_courses))
    assert refused.counts["course_delivered"] == 0 and not refused.retry
    assert len(refused.dead) == len(evil_courses)
    for letter in refused.dead:
        assert letter.data["reason"] == "target_config" and letter.data["tenant"] == "evil"
        assert "HTTP 401" in str(letter.data["errors"]) and "invalid_client" in str(letter.data["errors"])
    labels = {i["externalPlatform"] for i in lms.company.integrations.values()}
    assert labels == {"Coursera (Acme)"}                              # nothing of evil reached 360Learning
    assert WRONG not in caplog.text and all(WRONG not in repr(r.__dict__) for r in caplog.records)

    later = deliverer.deliver(inbound(acme_courses[3:]))             # acme's deliveries go on
    assert later.counts["course_delivered"] == 3 and not later.dead
    assert len(lms.company.by_external) == 6


def test_one_client_per_whole_credential_and_a_rotated_secret_is_a_new_one(two_tenants, monkeypatch):
    lms, deliverer = two_tenants
    acme, evil = deliverer.targets["acme-coursera"], deliverer.targets["evil-coursera"]
    assert deliverer.client(acme) is not deliverer.client(evil)
    twin = target_from_settings("acme-other", {**lms.settings})           # same credential: shared
    assert deliverer.client(twin) is deliverer.client(acme)
    key = deliverer.credential(acme)
    assert lms.settings["client_secret"] not in repr(key) + str(key) and "secret=***" in repr(key)

    monkeypatch.setenv("ROTATING_360_SECRET", "first-secret-value")
    rotating = target_from_settings("rot", {**lms.settings, "client_secret": {"env": "ROTATING_360_SECRET"}})
    before = deliverer.client(rotating)
    monkeypatch.setenv("ROTATING_360_SECRET", "second-secret-value")
    after = deliverer.client(rotating)
    assert after is not before and deliverer.credential(rotating) != key
    assert before not in deliverer.clients._clients.values()                    # the old one was closed and dropped


def test_an_unreadable_secret_is_the_targets_own_config_error(two_tenants):
    lms, deliverer = two_tenants
    deliverer.set_targets({**deliverer.targets, "evil-coursera": target_from_settings(
        "evil-coursera", {**lms.settings, "client_secret": {"env": "NOT_SET_ANYWHERE_27"}})})
    out = deliverer.deliver(inbound(courses("evil-coursera", "evil", 2)))
    assert [d.data["reason"] for d in out.dead] == ["target_config"] * 2
    assert "NOT_SET_ANYWHERE_27 is not set" in str(out.dead[0].data["errors"])
    assert isinstance(deliverer.targets["acme-coursera"].client_secret, Secret)


def test_the_first_delivery_after_a_take_over_ends_with_the_same_401_not_a_crash(two_tenants):
    """A lane's first delivery first waits for the company's unfinished operations: with a wrong
    secret that look-up is refused too, and the items still end as the tenant's own refusals."""
    lms, deliverer = two_tenants
    out = deliverer.deliver_connection("evil-coursera", inbound(courses("evil-coursera", "evil", 2)), settle=True)
    assert [d.data["reason"] for d in out.dead] == ["target_config"] * 2 and not lms.company.integrations
