"""Fixtures: a running 360Learning sandbox, a raw HTTP session on it, and a client."""
from __future__ import annotations

import time

import pytest
import requests

from hostspec.secrets import Secret
from publisher_360learning.client import Learning360Client
from publisher_360learning.sandbox import CLIENT_ID, CLIENT_SECRET, Learning360Sandbox

LEARNERS = ["ada@acme.test", "bob@acme.test", "cy@acme.test", "dee@acme.test"]


@pytest.fixture
def lms():
    with Learning360Sandbox(users=LEARNERS, page_size=2, stage_s=0.01) as sb:
        yield sb


def token(sb, client_id=CLIENT_ID, secret=CLIENT_SECRET) -> str:
    resp = requests.post(sb.url + "/api/v2/oauth2/token", timeout=5,
                         json={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


class Api:
    """Raw calls with a token and the version header (what a careful client sends)."""

    def __init__(self, sb, **token_kw):
        self.sb = sb
        self.headers = {"Authorization": f"Bearer {token(sb, **token_kw)}", "360-api-version": "v2.0"}

    def __call__(self, method, path, **kw):
        url = path if path.startswith("http") else self.sb.url + path
        return requests.request(method, url, headers=self.headers, timeout=10, **kw)

    def wait(self, location, timeout=5.0):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            op = self("GET", location).json()
            if not seen or seen[-1] != op["status"]:
                seen.append(op["status"])
            if op["status"] in ("completed", "error"):
                return op, seen
            time.sleep(0.005)
        raise AssertionError(f"operation still {seen[-1]}")


@pytest.fixture
def api(lms):
    return Api(lms)


def make_client(sb, **kw) -> Learning360Client:
    kw = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "poll_interval_s": 0.01, **kw}
    return Learning360Client(sb.url, CLIENT_ID, Secret(CLIENT_SECRET), **kw)


@pytest.fixture
def client(lms):
    c = make_client(lms)
    yield c
    c.close()


def fault(sb, **rule):
    resp = requests.post(sb.url + "/_sandbox/faults", json=rule, timeout=5)
    assert resp.status_code == 201, resp.text


def course(external_id="crs-1", **over):
    return {"externalId": external_id, "name": "Machine Learning", "defaultLang": "en",
            "launchUrl": f"https://www.coursera.org/learn/{external_id}", "sources": [{"name": "Stanford"}],
            "subjects": ["Data Science"], **over}


def stat(external_id="crs-1", mail="ada@acme.test", **over):
    return {"courseIdentifier": {"type": "externalId", "value": external_id},
            "userIdentifier": {"type": "mail", "value": mail}, "progress": 40, "timeSpent": 60_000,
            "firstActivityAt": "2026-01-02T09:00:00.000Z", "lastActivityAt": "2026-01-03T09:00:00.000Z", **over}
