"""The 360Learning client against the sandbox: tokens, retries, limits, pagination, bulk calls."""
from __future__ import annotations

import pytest
import requests

from hostspec.secrets import Secret
from publisher_360learning.client import Learning360Client
from publisher_360learning.errors import PermanentError, TargetConfigError, TransientError
from publisher_360learning.ratelimit import TokenBucket
from publisher_360learning.sandbox import AUTHOR_ID, SYNC_GROUP
from publisher_360learning.sandbox.paging import LINK_STYLES

from .conftest import LEARNERS, Api, course, fault, make_client


def new_integration(client):
    return client.create_integration({"externalPlatform": "Coursera (test)", "groupId": SYNC_GROUP,
                                      "authorId": AUTHOR_ID})["_id"]


def test_lists_follow_every_page(lms, client):
    mails = [u["mail"] for u in client.iter_list("/api/v2/users")]
    assert sorted(mails) == sorted(["author@acme.test", *LEARNERS])
    assert client.user_by_mail("BOB@acme.test")["mail"] == "bob@acme.test"
    assert client.user_by_mail("nobody@acme.test") is None


@pytest.mark.parametrize("style", LINK_STYLES)
def test_relative_next_links_are_resolved_against_the_page(lms, client, style):
    """360Learning's OpenAPI shows ``<my/resource/url>; rel="next"``: a next link may be a path,
    a path without its root, or relative to the page; each names the next page of the same list."""
    assert requests.post(lms.url + "/_sandbox/links", json={"style": style}, timeout=5).json() == {"style": style}
    iid = new_integration(client)
    client.run_bulk("PUT", f"/api/v2/bulk/integrations/{iid}/courses", [course(f"c{i}") for i in range(5)])
    assert sorted(u["mail"] for u in client.iter_list("/api/v2/users")) == sorted(["author@acme.test", *LEARNERS])
    course_ids = list(client.iter_list(f"/api/v2/groups/{SYNC_GROUP}/catalog/course-ids"))
    assert sorted(course_ids) == sorted(lms.company.catalog[SYNC_GROUP])
    assert lms.page_size == 2 and len(course_ids) == 5                    # three pages each


def test_the_sandbox_refuses_an_unknown_link_style(lms):
    resp = requests.post(lms.url + "/_sandbox/links", json={"style": "sideways"}, timeout=5)
    assert resp.status_code == 400 and "absolute" in resp.json()["error"]


def test_retries_429_and_5xx_then_succeeds(lms, client):
    fault(lms, action="status_429", route="/api/v2/users", times=2)
    fault(lms, action="status_5xx", route="/api/v2/users", status=502, body="html", times=1)
    assert client.user_by_mail("ada@acme.test")["mail"] == "ada@acme.test"
    assert client.retries == 3 and client.calls["GET 429"] == 2 and client.calls["GET 502"] == 1


def test_retry_after_is_honoured_when_present(lms):
    waits = []
    client = make_client(lms, sleep=waits.append)
    fault(lms, action="status_429", route="/api/v2/users", retry_after="7", times=1)
    client.user_by_mail("ada@acme.test")
    assert 7.0 in waits


def test_gives_up_after_max_attempts_with_a_transient_error(lms):
    client = make_client(lms, max_attempts=3)
    fault(lms, action="status_5xx", route="/api/v2/users", status=503, times=None)
    with pytest.raises(TransientError, match="HTTP 503"):
        client.user_by_mail("ada@acme.test")
    assert client.calls["GET 503"] == 3


def test_expired_token_mid_run_is_renewed_once(lms, client):
    client.user_by_mail("ada@acme.test")
    fault(lms, action="expire_token", route="/api/v2/users", times=1)
    assert client.user_by_mail("bob@acme.test")["mail"] == "bob@acme.test"
    assert client.token_fetches == 2 and client.retries == 0


def test_wrong_credentials_are_a_configuration_error_without_the_secret(lms):
    client = Learning360Client(lms.url, "sandbox-client", Secret("wrong-secret-value"))
    with pytest.raises(TargetConfigError) as info:
        client.user_by_mail("ada@acme.test")
    assert "invalid_client" in str(info.value) and "wrong-secret-value" not in str(info.value)
    assert "wrong-secret-value" not in repr(client)


def test_other_4xx_are_permanent(lms, client):
    with pytest.raises(PermanentError) as info:
        client.request("PUT", "/api/v2/courses/65d0000000000000000000ff/tags", json={"tagIds": []})
    assert (info.value.status, info.value.code) == (404, "courseNotFound")


def test_run_bulk_polls_to_the_end_and_returns_results(lms, client):
    iid = new_integration(client)
    op_id, results = client.run_bulk("PUT", f"/api/v2/bulk/integrations/{iid}/courses", [course("a"), course("b")])
    assert [r["status"] for r in results] == ["success", "success"] and op_id in lms.company.operations


def test_bulk_concurrency_limit_is_retried(lms, client):
    iid = new_integration(client)
    fault(lms, action="bulk_busy", route="/api/v2/bulk/*", times=2)
    _, results = client.run_bulk("PUT", f"/api/v2/bulk/integrations/{iid}/courses", [course()])
    assert results[0]["status"] == "success" and client.calls["PUT 429"] == 2


def test_a_disabled_bulk_api_is_raised_at_once_for_the_caller_to_back_off(lms, client):
    """The company's setting: retrying inside the call would hold a delivery thread for minutes."""
    iid = new_integration(client)
    fault(lms, action="bulk_disabled", route="/api/v2/bulk/*", times=1)
    with pytest.raises(TransientError) as caught:
        client.run_bulk("PUT", f"/api/v2/bulk/integrations/{iid}/courses", [course()])
    assert caught.value.code == "bulkAPIDisabled" and client.calls["PUT 503"] == 1
    _, results = client.run_bulk("PUT", f"/api/v2/bulk/integrations/{iid}/courses", [course()])
    assert results[0]["status"] == "success"


@pytest.mark.parametrize("link", ["https://evil.example/api/v2/tags?page=2", "//evil.example/api/v2/tags?next=2"],
                         ids=["absolute", "network-path"])
def test_a_next_link_to_another_host_is_not_followed_with_the_token(lms, client, monkeypatch, link):
    real = requests.Session.request
    calls = []

    def request(self, method, url, **kw):
        calls.append(url)
        resp = real(self, method, url, **kw)
        if "/api/v2/tags" in url:
            resp.headers["Link"] = f'<{link}>; rel="next"'
        return resp

    monkeypatch.setattr(requests.Session, "request", request)
    with pytest.raises(PermanentError, match="another host"):
        client.tags()
    assert not any("evil.example" in u for u in calls)


def test_an_operation_ending_in_error_is_transient(lms, client):
    iid = new_integration(client)
    fault(lms, action="op_error", route="/api/v2/bulk/*", message="database unavailable", times=1)
    with pytest.raises(TransientError, match="database unavailable"):
        client.run_bulk("PUT", f"/api/v2/bulk/integrations/{iid}/courses", [course()])


def test_client_rate_limit_keeps_under_the_api_limit(lms, client):
    """20 writes in a row: the client spaces them so the sandbox's real limiter never answers 429."""
    for i in range(20):
        client.create_tag(f"tag-{i}")
    assert client.calls.get("POST 429", 0) == 0 and client.writes.waits > 0


def test_token_bucket_waits_what_the_rate_requires():
    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(rate=10, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(12):
        bucket.acquire()
    assert now[0] == pytest.approx(1.0) and bucket.waits == 10


def test_many_learners_are_resolved_in_few_calls(lms, client):
    found = client.users_by_mail(["ADA@acme.test", "bob@acme.test", "cy@acme.test", "nobody@acme.test"], chunk=2)
    assert {m: u["mail"] for m, u in found.items()} == {"ADA@acme.test": "ada@acme.test",
                                                        "bob@acme.test": "bob@acme.test", "cy@acme.test": "cy@acme.test"}
    assert client.calls["GET 200"] == 2      # one call per chunk of two e-mails


def test_an_unknown_course_is_absent_but_a_deleted_integration_is_not(lms, client):
    """``GET /integrations/{id}/courses/{externalId}``: 400 courseNotBelongToIntegration for a course
    the integration does not hold, 404 integrationNotFound for an integration that is gone."""
    iid = new_integration(client)
    client.run_bulk("PUT", f"/api/v2/bulk/integrations/{iid}/courses", [course("a/1")])
    assert client.external_course(iid, "a/1")["courseId"] in lms.company.courses
    assert client.external_course(iid, "never-sent") is None
    client.request("DELETE", f"/api/v2/integrations/{iid}")
    for external_id in ("a/1", "never-sent"):
        with pytest.raises(TargetConfigError) as info:
            client.external_course(iid, external_id)
        assert (info.value.status, info.value.code) == (404, "integrationNotFound")
    api = Api(lms)          # the answers themselves, as documented
    assert api("GET", f"/api/v2/integrations/{iid}/courses/a%2F1").json()["error"]["code"] == "integrationNotFound"
    api("POST", "/api/v2/integrations", json={"externalPlatform": "Other", "groupId": SYNC_GROUP, "authorId": AUTHOR_ID})
    (other,) = lms.company.integrations
    unknown = api("GET", f"/api/v2/integrations/{other}/courses/a%2F1")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (400, "courseNotBelongToIntegration")
