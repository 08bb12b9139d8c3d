"""Retry, auth and error behaviour of the client, with HTTP stubbed by ``responses``.

Sleeping is injected (a recorder), so waits are asserted without slowing the suite.
"""
from __future__ import annotations

import email.utils
import time

import pytest
import responses
from responses import matchers
from responses.registries import OrderedRegistry

from connector_coursera import contract, errors
from connector_coursera.client import CourseraClient
from connector_coursera.retry import parse_retry_after
from connector_coursera.settings import CourseraSettingsSchema

BASE = "https://coursera.test"
ORG = "DjYCkBQTQV69TtWA7RuNug"
TOKEN_URL = BASE + contract.TOKEN_PATH
ORG_URL = BASE + contract.ORG_PATH.format(org_id=ORG)
SECRET = "very-secret-value-123"
ORG_BODY = {"elements": [{"id": ORG, "name": "Acme Corp", "slug": "acme"}], "paging": {"total": 1}, "linked": {}}


def settings(**kw):
    return CourseraSettingsSchema().load({"org_id": ORG, "client_id": "key", "client_secret": SECRET,
                                          "base_url": BASE, "max_attempts": 3, "max_retry_after_s": 30, **kw})


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def token(rsps, value="tok-1", times=1):
    for _ in range(times):
        rsps.add(responses.POST, TOKEN_URL, json={"token_type": "Bearer", "access_token": value,
                                                  "grant_type": "client_credentials", "issued_at": 1, "expires_in": 1799})


def org_calls(rsps):
    return [c for c in rsps.calls if c.request.url.startswith(ORG_URL)]


@responses.activate(registry=OrderedRegistry)
def test_429_with_retry_after_seconds_then_200():
    token(responses)
    responses.add(responses.GET, ORG_URL, status=429, headers={"Retry-After": "7"}, json={"fault": {}})
    responses.add(responses.GET, ORG_URL, json=ORG_BODY)
    sleeps = Sleeps()
    with CourseraClient(settings(), sleep=sleeps) as client:
        assert client.organization()["name"] == "Acme Corp"
    assert sleeps == [7.0]
    assert len(org_calls(responses)) == 2


@responses.activate(registry=OrderedRegistry)
def test_429_with_http_date_is_honoured_and_capped():
    token(responses)
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    responses.add(responses.GET, ORG_URL, status=429, headers={"Retry-After": later})
    responses.add(responses.GET, ORG_URL, json=ORG_BODY)
    sleeps = Sleeps()
    with CourseraClient(settings(), sleep=sleeps) as client:
        client.organization()
    assert sleeps == [30.0]  # capped at max_retry_after_s


def test_parse_retry_after_forms():
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert parse_retry_after(past) == 0.0
    soon = email.utils.formatdate(time.time() + 100, usegmt=True)
    assert 95 <= parse_retry_after(soon) <= 101


@responses.activate(registry=OrderedRegistry)
def test_503_three_times_then_failure():
    token(responses)
    for _ in range(3):
        responses.add(responses.GET, ORG_URL, status=503, body="<html>Service Unavailable</html>")
    sleeps = Sleeps()
    with CourseraClient(settings(), sleep=sleeps) as client, pytest.raises(errors.ServerError) as excinfo:
        client.organization()
    assert len(org_calls(responses)) == 3 and len(sleeps) == 2
    assert all(0 <= s <= 30 for s in sleeps)
    assert "503" in str(excinfo.value) and excinfo.value.retryable


@responses.activate(registry=OrderedRegistry)
def test_apigee_quota_fault_on_500_counts_as_throttling():
    token(responses)
    responses.add(responses.GET, ORG_URL, status=500, json={"fault": {"faultstring": "Rate limit quota violation",
                  "detail": {"errorcode": "policies.ratelimit.QuotaViolation"}}})
    responses.add(responses.GET, ORG_URL, json=ORG_BODY)
    with CourseraClient(settings(), sleep=Sleeps()) as client:
        client.organization()
    assert len(org_calls(responses)) == 2


@responses.activate(registry=OrderedRegistry)
def test_401_renews_the_token_once_and_retries():
    token(responses, "old")
    responses.add(responses.GET, ORG_URL, status=401, json={"fault": {"faultstring": "Access Token expired",
                  "detail": {"errorcode": "keymanagement.service.access_token_expired"}}},
                  match=[matchers.header_matcher({"Authorization": "Bearer old"})])
    token(responses, "new")
    responses.add(responses.GET, ORG_URL, json=ORG_BODY, match=[matchers.header_matcher({"Authorization": "Bearer new"})])
    sleeps = Sleeps()
    with CourseraClient(settings(), sleep=sleeps) as client:
        client.organization()
    assert sleeps == []  # re-auth is immediate, not a backoff retry
    assert len([c for c in responses.calls if c.request.url == TOKEN_URL]) == 2


@responses.activate(registry=OrderedRegistry)
def test_401_after_renewal_is_a_config_error_not_a_loop():
    token(responses, "a")
    responses.add(responses.GET, ORG_URL, status=401, json={"fault": {}})
    token(responses, "b")
    responses.add(responses.GET, ORG_URL, status=401, json={"fault": {}})
    with CourseraClient(settings(), sleep=Sleeps()) as client, pytest.raises(errors.AccessDenied):
        client.organization()
    assert len(org_calls(responses)) == 2


@pytest.mark.parametrize("status, body, error", [
    (400, {"errorCode": None, "message": "JSON didn't validate", "details": None}, errors.BadRequest),
    (403, {"errorCode": "Not Authorized", "message": "Access is denied", "details": None}, errors.AccessDenied),
    (404, {"message": "Not Found", "statusCode": 404}, errors.NotFound),
])
@responses.activate(registry=OrderedRegistry)
def test_other_4xx_are_never_retried(status, body, error):
    token(responses)
    responses.add(responses.GET, ORG_URL, status=status, json=body)
    sleeps = Sleeps()
    with CourseraClient(settings(), sleep=sleeps) as client, pytest.raises(error) as excinfo:
        client.organization()
    assert len(org_calls(responses)) == 1 and sleeps == []
    assert str(status) in str(excinfo.value) and not excinfo.value.retryable


@responses.activate(registry=OrderedRegistry)
def test_bad_credentials_are_a_config_error_without_the_secret():
    responses.add(responses.POST, TOKEN_URL, status=401, json={"ErrorCode": "invalid_client", "Error": "ClientId is Invalid"})
    with CourseraClient(settings(), sleep=Sleeps()) as client, pytest.raises(errors.InvalidCredentials) as excinfo:
        client.organization()
    assert "client_secret" in str(excinfo.value) and SECRET not in str(excinfo.value)
    assert len(responses.calls) == 1


@responses.activate(registry=OrderedRegistry)
def test_timeouts_and_truncated_json_are_retried():
    import requests
    token(responses)
    responses.add(responses.GET, ORG_URL, body=requests.ConnectTimeout("slow"))
    responses.add(responses.GET, ORG_URL, body='{"elements": [', content_type="application/json")
    responses.add(responses.GET, ORG_URL, json=ORG_BODY)
    with CourseraClient(settings(), sleep=Sleeps()) as client:
        assert client.organization()["id"] == ORG
    assert len(org_calls(responses)) == 3


@responses.activate(registry=OrderedRegistry)
def test_every_call_has_a_timeout(monkeypatch):
    token(responses)
    responses.add(responses.GET, ORG_URL, json=ORG_BODY)
    seen = []
    import requests
    original = requests.Session.send

    def spy(self, request, **kwargs):
        seen.append(kwargs.get("timeout"))
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", spy)
    with CourseraClient(settings(timeout_s=4.5), sleep=Sleeps()) as client:
        client.organization()
    assert seen == [4.5, 4.5]


def test_reprs_hide_the_secret():
    s = settings()
    client = CourseraClient(s)
    for text in (repr(s), repr(client), repr(client._tokens), str(s.client_secret)):
        assert SECRET not in text
