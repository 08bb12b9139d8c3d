"""The 360Learning sandbox follows the contract: auth, versions, scopes, pagination, bulk life
cycle and per-item validation, attempt rules, limits and faults."""
from __future__ import annotations

import base64
import json

import pytest
import requests

from publisher_360learning.sandbox import AUTHOR_ID, SYNC_GROUP, Learning360Sandbox

from .conftest import LEARNERS, Api, course, fault, stat


def integration(api, label="Coursera (sandbox)", **over):
    resp = api("POST", "/api/v2/integrations", json={"externalPlatform": label, "groupId": SYNC_GROUP,
                                                     "authorId": AUTHOR_ID, **over})
    assert resp.status_code == 201, resp.text
    return resp.json()["_id"]


def submit(api, method, iid, items, kind="courses"):
    return api(method, f"/api/v2/bulk/integrations/{iid}/{kind}", json={"input": items})


def run(api, method, iid, items, kind="courses"):
    """Submit, wait, read the results: returned in the order of ``items``, paired by the
    ``input`` each result echoes (the sandbox, like 360Learning, promises no order)."""
    resp = submit(api, method, iid, items, kind)
    assert resp.status_code == 202, resp.text
    assert resp.content == b"" and resp.headers["Location"].startswith(api.sb.url + "/api/v2/bulk/operations/")
    op, seen = api.wait(resp.headers["Location"])
    results = api("GET", resp.headers["Location"] + "/results").json()
    by_input = {json.dumps(r["input"], sort_keys=True): r for r in results}
    assert len(by_input) == len(results) == len(items)
    return op, seen, [by_input[json.dumps(item, sort_keys=True)] for item in items]


@pytest.mark.parametrize("body, status, code", [
    ({"grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "nope"}, 401, "invalid_client"),
    ({"grant_type": "password", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}, 400,
     "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "client_id": "sandbox-client"}, 400, "invalid_request"),
    ({"grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret",
      "extra": 1}, 400, "invalid_request"),
])
def test_token_errors_use_the_flat_envelope(lms, body, status, code):
    resp = requests.post(lms.url + "/api/v2/oauth2/token", json=body, timeout=5)
    assert (resp.status_code, resp.json()) == (status, {"error": code})


def test_token_expires_in_may_be_a_string():
    with Learning360Sandbox(expires_in_as_string=True, token_ttl_s=120) as sb:
        body = requests.post(sb.url + "/api/v2/oauth2/token", timeout=5, json={
            "grant_type": "client_credentials", "client_id": "sandbox-client", "client_secret": "sandbox-secret"}).json()
    assert body["expires_in"] == "120" and body["token_type"] == "Bearer"


def test_version_header_bad_token_and_missing_scope(lms, api):
    assert requests.get(lms.url + "/api/v2/users", timeout=5,
                        headers={"Authorization": api.headers["Authorization"]}).json()["error"]["code"] == "invalidApiVersion"
    bad = requests.get(lms.url + "/api/v2/users", headers={**api.headers, "Authorization": "Bearer nope"}, timeout=5)
    assert (bad.status_code, bad.json()) == (401, {"error": "invalid_token"})
    with Learning360Sandbox(credentials={"reader": ("s3cret-reader", {"users:read"})}) as sb:
        reader = Api(sb, client_id="reader", secret="s3cret-reader")
        assert reader("GET", "/api/v2/users").status_code == 200
        denied = reader("GET", "/api/v2/integrations")
    assert denied.status_code == 403
    assert denied.json()["error"] == {"code": "invalid_scope", "message": "Missing scope integrations:read"}


def test_pagination_follows_link_headers_and_keeps_filters(lms, api):
    resp = api("GET", "/api/v2/users")
    pages, items = 1, list(resp.json())
    while "next" in resp.links:
        resp = api("GET", resp.links["next"]["url"])
        pages, items = pages + 1, items + resp.json()
    assert pages == 3 and sorted(u["mail"] for u in items) == sorted(["author@acme.test", *LEARNERS])
    filtered = api("GET", "/api/v2/users", params={"mail[in][0]": "ada@acme.test", "mail[in][1]": "bob@acme.test",
                                                   "mail[in][2]": "cy@acme.test"})
    following = api("GET", filtered.links["next"]["url"])
    assert [u["mail"] for u in filtered.json() + following.json()] == LEARNERS[:3]
    assert "Link" not in following.headers


def test_invalid_or_foreign_cursor_is_refused(lms, api):
    assert api("GET", "/api/v2/users?next=garbage").json()["error"]["code"] == "invalidCursor"
    groups_cursor = base64.urlsafe_b64encode(json.dumps({"r": "groups", "o": 0, "f": [], "t": 9e12}).encode()).decode()
    assert api("GET", f"/api/v2/users?next={groups_cursor}").status_code == 400


def test_integrations_unique_per_group_and_reserved_names():
    with Learning360Sandbox(reserved_names=["Coursera"]) as sb:
        api = Api(sb)
        reserved = api("POST", "/api/v2/integrations", json={"externalPlatform": "coursera", "groupId": SYNC_GROUP,
                                                             "authorId": AUTHOR_ID})
        assert reserved.json()["error"]["code"] == "reservedPlatformName"
        integration(api, "Coursera (Acme)")
        again = api("POST", "/api/v2/integrations", json={"externalPlatform": "Coursera (Acme)", "groupId": SYNC_GROUP,
                                                          "authorId": AUTHOR_ID})
        assert (again.status_code, again.json()["error"]["code"]) == (400, "duplicateExternalPlatform")
        listed = api("GET", "/api/v2/integrations", params={"externalPlatform[eq]": "Coursera (Acme)"}).json()
        assert [i["groupId"] for i in listed] == [SYNC_GROUP]


def test_bulk_upsert_life_cycle_results_and_catalog(lms, api):
    iid = integration(api)
    op, seen, results = run(api, "PUT", iid, [course("a"), course("b", description="x"), {"externalId": "bad"}])
    assert seen[-1] == "completed" and op["type"] == "importExternalCourses"
    assert set(seen) <= {"pending", "queued", "running", "completed"} and {"createdAt", "endedAt"} <= set(op)
    assert [r["status"] for r in results] == ["success", "success", "error"]
    assert "launchUrl" in results[2]["errorMessage"]
    course_id = results[0]["resourceId"]
    got = api("GET", f"/api/v2/courses/{course_id}").json()
    assert (got["type"], got["status"], got["externalPlatform"], got["groupId"]) == \
           ("external", "published", "Coursera (sandbox)", SYNC_GROUP)
    assert course_id in api("GET", f"/api/v2/groups/{SYNC_GROUP}/catalog/course-ids").json()
    assert course_id in api("GET", f"/api/v2/groups/{SYNC_GROUP}/library/course-ids").json()
    assert api("GET", f"/api/v2/integrations/{iid}/courses/a").json()["courseId"] == course_id
    _, _, archived = run(api, "DELETE", iid, [{"externalId": "a"}, {"externalId": "never"}])
    assert [r["status"] for r in archived] == ["success", "error"]
    assert api("GET", f"/api/v2/courses/{course_id}").json()["status"] == "archived"


def test_bulk_envelope_limits_and_results_before_the_run(lms, api):
    iid = integration(api)
    assert submit(api, "PUT", iid, None).json()["error"]["code"] == "invalidInput"
    assert api("PUT", f"/api/v2/bulk/integrations/{iid}/courses", json=[course()]).json()["error"]["code"] == "invalidInput"
    too_long = submit(api, "DELETE", iid, [{"externalId": str(i)} for i in range(1001)])
    assert too_long.json()["error"]["code"] == "inputTooLong"
    assert submit(api, "PUT", "65b0000000000000000000ff", [course()]).json()["error"]["code"] == "integrationNotFound"
    fault(lms, action="op_stuck", hold_s=0.5, times=1)
    location = submit(api, "PUT", iid, [course()]).headers["Location"]
    early = api("GET", location + "/results")
    assert (early.status_code, early.json()["error"]["code"]) == (400, "bulkOperationNotRun")


def test_three_bulk_operations_at_most(lms, api):
    iid = integration(api)
    fault(lms, action="op_stuck", hold_s=1.0, times=3)
    for _ in range(3):
        assert submit(api, "PUT", iid, [course()]).status_code == 202
    busy = submit(api, "PUT", iid, [course()])
    assert busy.status_code == 429
    assert busy.json()["error"]["code"] == "bulkOperationsConcurrencyLimitReached"


def test_stat_import_attempt_rules(lms, api):
    iid = integration(api)
    run(api, "PUT", iid, [course("a")])
    _, _, r1 = run(api, "POST", iid, [stat("a")], "stats")
    _, _, r2 = run(api, "POST", iid, [stat("a", progress=70, lastActivityAt="2026-01-05T09:00:00.000Z")], "stats")
    assert r1[0]["resourceId"] == r2[0]["resourceId"]          # an overlapping import updates the attempt
    _, _, forced = run(api, "POST", iid, [stat("a", forceNew=True)], "stats")
    later = stat("a", firstActivityAt="2026-03-01T09:00:00.000Z", lastActivityAt="2026-03-02T09:00:00.000Z")
    _, _, r4 = run(api, "POST", iid, [later], "stats")                # began after every attempt ended: new
    assert len({r1[0]["resourceId"], forced[0]["resourceId"], r4[0]["resourceId"]}) == 3
    _, _, bad = run(api, "POST", iid, [stat("a", mail="nobody@acme.test"), stat("zzz"), stat("a", timeSpent=0),
                                       stat("a", progress=101)], "stats")
    messages = [r["errorMessage"] for r in bad]
    assert messages[:2] == ["No user found for mail nobody@acme.test", "No course found for externalId zzz"]
    assert "timeSpent" in messages[2] and "progress" in messages[3]
    course_id = api("GET", f"/api/v2/integrations/{iid}/courses/a").json()["courseId"]
    resp = api("GET", "/api/v2/courses/stats", params={"courseId[eq]": course_id})
    attempts = resp.json() + api("GET", resp.links["next"]["url"]).json()
    assert sorted(a["_id"] for a in attempts) == sorted({r1[0]["resourceId"], forced[0]["resourceId"], r4[0]["resourceId"]})
    first = next(a for a in attempts if a["_id"] == r1[0]["resourceId"])
    assert (first["progress"], first["completedAt"], first["timeSpent"]) == (70, None, 60_000)


def test_an_import_updates_the_attempt_started_in_a_path_session(lms, api):
    iid = integration(api, defaultCompletion=False, defaultProgress=1)
    run(api, "PUT", iid, [course("a")])
    started = requests.post(lms.url + "/_sandbox/attempts", timeout=5, json={
        "externalId": "a", "mail": "ada@acme.test", "pathSessionId": "65a0000000000000000005e1"}).json()
    assert started["progress"] == 1 and started["pathSessionId"]
    done = stat("a", progress=100, firstActivityAt="2026-01-01T00:00:00.000Z",
                lastActivityAt="2026-12-01T00:00:00.000Z")
    _, _, results = run(api, "POST", iid, [done], "stats")
    assert results[0]["resourceId"] == started["_id"]
    attempt = lms.company.attempts[started["_id"]]
    assert (attempt["progress"], attempt["completedAt"], attempt["pathSessionId"]) == \
           (100, "2026-12-01T00:00:00.000Z", "65a0000000000000000005e1")


def test_the_attempt_rule_in_both_orders(lms, api):
    """START inside a session, then an import whose first activity is a minute later: by the
    documented rule the import makes a second attempt. The other way round, START continues the
    attempt the import made."""
    from datetime import datetime, timezone
    t0 = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc).timestamp()
    iid = integration(api, defaultCompletion=False, defaultProgress=1)
    run(api, "PUT", iid, [course("a"), course("b")])
    session = "65a0000000000000000005e1"
    requests.post(lms.url + "/_sandbox/attempts", timeout=5, json={
        "externalId": "a", "mail": "ada@acme.test", "pathSessionId": session, "at": t0}).raise_for_status()
    late = stat("a", progress=30, firstActivityAt="2026-05-01T09:01:00.000Z", lastActivityAt="2026-05-01T09:30:00.000Z")
    run(api, "POST", iid, [late], "stats")
    c = lms.company
    user = c.user_by_mail("ada@acme.test")["_id"]
    course_a = next(cid for (_i, ext), cid in c.by_external.items() if ext == "a")
    assert len(c.attempts_of[(course_a, user)]) == 2
    # the reverse order: the import first, then START in the session a minute later
    run(api, "POST", iid, [stat("b", progress=30, firstActivityAt="2026-05-01T09:00:00.000Z",
                                lastActivityAt="2026-05-01T09:00:30.000Z")], "stats")
    started = requests.post(lms.url + "/_sandbox/attempts", timeout=5, json={
        "externalId": "b", "mail": "ada@acme.test", "pathSessionId": session, "at": t0 + 60}).json()
    course_b = next(cid for (_i, ext), cid in c.by_external.items() if ext == "b")
    assert c.attempts_of[(course_b, user)] == [started["_id"]] and started["pathSessionId"] == session
    assert started["progress"] == 30


def test_the_attempt_rules_compare_strictly(lms, api):
    """An import updates an open attempt only when it began *earlier* than that attempt's last
    activity, and creates one only when it began *later* than every attempt's end: at the very
    instant, neither (the sandbox then changes nothing)."""
    iid = integration(api, defaultCompletion=False, defaultProgress=1)
    run(api, "PUT", iid, [course("a")])
    at = "2026-05-01T09:00:00.000Z"
    started = requests.post(lms.url + "/_sandbox/attempts", timeout=5, json={
        "externalId": "a", "mail": "ada@acme.test", "at": 1777626000.0}).json()
    assert started["firstActivityAt"] == started["lastActivityAt"] == at
    run(api, "POST", iid, [stat("a", progress=30, firstActivityAt=at, lastActivityAt="2026-05-01T10:00:00.000Z")],
        "stats")
    (only,) = lms.company.attempts.values()
    assert (only["progress"], only["lastActivityAt"]) == (1, at)            # neither rule: nothing changed
    run(api, "POST", iid, [stat("a", progress=30, firstActivityAt="2026-05-01T08:59:59.999Z",
                                lastActivityAt="2026-05-01T10:00:00.000Z")], "stats")
    (only,) = lms.company.attempts.values()
    assert (only["_id"], only["progress"], only["lastActivityAt"]) == (started["_id"], 30, "2026-05-01T10:00:00.000Z")
    run(api, "POST", iid, [stat("a", progress=50, firstActivityAt="2026-05-01T10:00:00.001Z",
                                lastActivityAt="2026-05-01T11:00:00.000Z")], "stats")
    assert sorted(a["progress"] for a in lms.company.attempts.values()) == [30, 50]   # later than its end: new


def test_course_tags_replace_and_admin_tags(lms, api):
    iid = integration(api)
    _, _, results = run(api, "PUT", iid, [course("a")])
    cid = results[0]["resourceId"]
    admin = requests.post(f"{lms.url}/_sandbox/courses/{cid}/tags", json={"name": "Leadership"}, timeout=5).json()
    tag = api("POST", "/api/v2/tags", json={"name": "Python", "isMain": False}).json()
    assert api("POST", "/api/v2/tags", json={"name": "python", "isMain": False}).json()["error"]["code"] == \
        "tagNameNotAvailable"
    assert api("PUT", f"/api/v2/courses/{cid}/tags", json={"tagIds": [tag["_id"]]}).json() == [tag["_id"]]
    assert api("GET", f"/api/v2/courses/{cid}/tags").json() == [{"tagId": tag["_id"], "source": "native"}]
    assert admin["_id"] != tag["_id"]
    missing = api("PUT", f"/api/v2/courses/{cid}/tags", json={"tagIds": ["65f0000000000000000000ff"]})
    assert missing.json()["error"]["code"] == "tagNotFound"


def test_write_rate_limit_per_second(lms, api):
    statuses = [api("POST", "/api/v2/tags", json={"name": f"t{i}", "isMain": False}).status_code for i in range(14)]
    assert statuses.count(201) == 10 and statuses[10:] == [429] * 4
    assert api("GET", "/api/v2/tags").status_code == 200   # reads have their own budget


def test_faults_answer_like_the_real_api(lms, api):
    fault(lms, action="status_429", route="/api/v2/users", times=1, retry_after="2")
    fault(lms, action="bulk_disabled", route="/api/v2/bulk/*", times=1)
    limited = api("GET", "/api/v2/users")
    assert (limited.status_code, limited.json(), limited.headers["Retry-After"]) == \
           (429, {"error": "tooManyRequests"}, "2")
    iid = integration(api)
    disabled = submit(api, "PUT", iid, [course()])
    assert (disabled.status_code, disabled.json()["error"]["code"]) == (503, "bulkAPIDisabled")
    fault(lms, action="expire_token", route="/api/v2/users", times=1)
    assert api("GET", "/api/v2/users").status_code == 401
    assert api("GET", "/api/v2/groups").status_code == 401     # the token itself expired


def test_binds_to_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        Learning360Sandbox(host="0.0.0.0")
