"""The sandbox over real HTTP: Coursera's auth, paging, filters and error bodies, and its control API."""
from __future__ import annotations

import base64

import pytest
import requests

from connector_coursera import contract
from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from connector_coursera.sandbox.data import Org


def get_token(sb, key="standin-key", secret="standin-secret"):
    return requests.post(sb.url + contract.TOKEN_PATH, data={"grant_type": "client_credentials"},
                         auth=(key, secret), timeout=5)


def api(sb, path, token=None, **params):
    token = token or get_token(sb).json()["access_token"]
    return requests.get(sb.url + contract.BUSINESS.format(org_id=sb.spec.org_id) + path, params=params,
                        headers={"Authorization": f"Bearer {token}"}, timeout=5)


def test_token_endpoint_follows_the_contract(sandbox):
    body = get_token(sandbox).json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 1799 and len(body["access_token"]) == 28
    bad = get_token(sandbox, secret="wrong")
    assert bad.status_code == 401 and bad.json()["ErrorCode"] == "invalid_client"
    grant = requests.post(sandbox.url + contract.TOKEN_PATH, data={"grant_type": "password"},
                          auth=("standin-key", "standin-secret"), timeout=5)
    assert grant.status_code == 400


def test_missing_expired_and_revoked_tokens(sandbox):
    r = requests.get(sandbox.url + contract.BUSINESS.format(org_id=sandbox.spec.org_id), timeout=5)
    assert r.status_code == 401 and "invalid_access_token" in r.text
    token = get_token(sandbox).json()["access_token"]
    requests.post(sandbox.url + "/_sandbox/clock", json={"advance_s": 1800}, timeout=5)
    assert "access_token_expired" in api(sandbox, "", token=token).text
    token = get_token(sandbox).json()["access_token"]
    requests.post(sandbox.url + "/_sandbox/tokens/revoke", timeout=5)
    assert api(sandbox, "", token=token).status_code == 401


def test_other_org_is_forbidden_and_unknown_path_404(sandbox):
    token = get_token(sandbox).json()["access_token"]
    r = requests.get(sandbox.url + "/ent/api/businesses.v1/OtherOrgxxxxxxxxxxxxxx/contents",
                     headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert r.status_code == 403 and r.json()["errorCode"] == "Not Authorized"
    assert api(sandbox, "/nothing").status_code == 404


def test_contents_paging_uses_next_until_the_end(sandbox):
    seen, start = [], "0"
    while start is not None:
        body = api(sandbox, "/contents", start=start, limit=7).json()
        seen += [c["id"] for c in body["elements"]]
        assert body["paging"]["total"] == 30
        start = body["paging"].get("next")
    assert len(seen) == len(set(seen)) == sandbox.catalog_size() == 30


@pytest.mark.parametrize("params, status", [({"start": "abc"}, 400), ({"limit": "0"}, 400), ({"start": "-1"}, 400)])
def test_bad_paging_is_400_naptime(sandbox, params, status):
    r = api(sandbox, "/contents", **params)
    assert r.status_code == status and set(r.json()) == {"errorCode", "message", "details"}


def test_single_content_and_its_errors(sandbox):
    item = api(sandbox, "/contents", limit=1).json()["elements"][0]
    one = api(sandbox, f"/contents/{item['id']}").json()
    assert one["elements"][0] == item and one["paging"] == {}
    assert api(sandbox, "/contents/123~ABC").status_code == 400
    missing = api(sandbox, "/contents/Course~zzzzzzzzzzzzzzzzzzzzzz")
    assert missing.status_code == 404 and missing.json()["errorCode"] == "CONTENT_ID_NOT_IN_ORG"


def test_reports_hide_specializations_unless_asked(sandbox):
    without = api(sandbox, "/enrollmentReports", limit=1000).json()
    with_s12n = api(sandbox, "/enrollmentReports", limit=1000, includeS12n="true").json()
    assert with_s12n["paging"]["total"] > without["paging"]["total"]
    assert all(r["contentType"] != "Specialization" for r in without["elements"])


def test_last_activity_filter_is_exclusive(sandbox):
    rows = api(sandbox, "/enrollmentReports", limit=1000, includeS12n="true").json()["elements"]
    pivot = sorted(r["lastActivityAt"] for r in rows if r["lastActivityAt"])[10]
    after = api(sandbox, "/enrollmentReports", limit=1000, includeS12n="true", lastActivityAfter=pivot).json()
    assert after["elements"] and all(r["lastActivityAt"] > pivot for r in after["elements"])
    assert after["paging"]["total"] == sum(1 for r in rows if r["lastActivityAt"] and r["lastActivityAt"] > pivot)


@pytest.mark.parametrize("param, field, keeps_equal", [
    ("lastActivityAfter", "lastActivityAt", False), ("lastActivityBefore", "lastActivityAt", False),
    ("enrollAtAfter", "enrolledAt", True), ("enrollAtBefore", "enrolledAt", True)])
def test_report_bounds_on_the_exact_millisecond_follow_the_spec(sandbox, param, field, keeps_equal):
    """lastActivity bounds drop the rows equal to them; enrollAt bounds keep them."""
    rows = api(sandbox, "/enrollmentReports", limit=1000, includeS12n="true").json()["elements"]
    value = sorted(r[field] for r in rows if r.get(field) is not None)[10]
    got = {r["id"] for r in api(sandbox, "/enrollmentReports", limit=1000, includeS12n="true",
                                **{param: value}).json()["elements"]}
    beyond = (lambda v: v > value) if param.endswith("After") else (lambda v: v < value)
    kept = {r["id"] for r in rows if r.get(field) is not None
            and (beyond(r[field]) or (r[field] == value and keeps_equal))}
    assert got == kept and any(r.get(field) == value for r in rows)


def test_finder_without_program_id_is_400(sandbox):
    r = api(sandbox, "/enrollmentReports", q="byProgramId")
    assert r.status_code == 400 and "programId" in r.json()["message"]


def test_fault_rules_fire_the_set_number_of_times(sandbox):
    requests.post(sandbox.url + "/_sandbox/faults", json={"route": "*/contents", "action": "status_429",
                                                          "times": 2, "retry_after": "3"}, timeout=5)
    statuses = [api(sandbox, "/contents") for _ in range(3)]
    assert [r.status_code for r in statuses] == [429, 429, 200]
    assert statuses[0].headers["Retry-After"] == "3"
    log = requests.get(sandbox.url + "/_sandbox/requests", timeout=5).json()
    assert [e["fault"] for e in log if e["path"].endswith("/contents")] == ["status_429", "status_429", None]


def test_bad_fault_rule_is_refused(sandbox):
    r = requests.post(sandbox.url + "/_sandbox/faults", json={"action": "explode"}, timeout=5)
    assert r.status_code == 400 and "action" in r.json()["error"]


def test_data_changes_through_the_control_api(sandbox):
    first = api(sandbox, "/contents", limit=1).json()["elements"][0]
    assert requests.post(f"{sandbox.url}/_sandbox/contents/{first['contentId']}/remove", timeout=5).ok
    assert sandbox.catalog_size() == 29
    requests.post(sandbox.url + "/_sandbox/reset", timeout=5)
    assert sandbox.catalog_size() == 30


def test_generated_org_is_deterministic_and_lazy():
    a, b = Org.generate(OrgSpec(seed=7)), Org.generate(OrgSpec(seed=7))
    assert a.contents == b.contents and a.row(99) == b.row(99)
    assert Org.generate(OrgSpec(seed=8)).contents != a.contents
    big = Org.generate(OrgSpec(contents=50, learners=20_000, enrollments=1_000_000))
    last = big.row(999_999)
    assert last["enrolledAt"] > big.row(0)["enrolledAt"]
    ids = {big.row(i)["id"] for i in range(0, 1_000_000, 997)}
    assert len(ids) == len(range(0, 1_000_000, 997))  # (learner, content) pairs never repeat


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="enrollments"):
        OrgSpec(contents=2, learners=2, enrollments=5)


def test_binds_to_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        CourseraSandbox(host="0.0.0.0")


def test_basic_auth_header_is_required_form(sandbox):
    header = "Basic " + base64.b64encode(b"standin-key:standin-secret").decode()
    r = requests.post(sandbox.url + contract.TOKEN_PATH, data="grant_type=client_credentials",
                      headers={"Authorization": header, "Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    assert r.ok


@pytest.mark.parametrize("s12n, deleted", [(True, False), (False, False), (True, True), (False, True)])
def test_fast_row_selection_matches_the_general_one(s12n, deleted):
    org = Org.generate(OrgSpec(contents=21, learners=120, enrollments=2000))

    def keep(row):
        return (s12n or row["contentType"] != "Specialization") and (deleted or row["membershipState"] != "DELETED_MEMBER")

    assert list(org.select_plain(include_s12n=s12n, include_deleted=deleted)) == list(org.select_rows(keep))
