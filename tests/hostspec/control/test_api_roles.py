"""API roles: every endpoint x role x own/other tenant answers what it should (issue 27, part 6).

The matrix is checked against the route table: an endpoint added to ``admin_api.routes`` without
a row here (and a rule in ``api_access.RULES``) fails the first test. Every call is also checked
against the audit trail: a write or a refusal of the token or the role leaves one valid
``learning.audit.v1`` event, a read leaves none.
"""
from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from hostspec.control import api as admin_api, access as api_access
from hostspec.control.plane import ControlPlane
from tests.conftest import SCHEMAS

from tests.hostspec.api_fakes import Api, body

P, A, T = "platform_admin", "tenant_admin", "tenant_trigger"
WHO = {P: "root", A: "acme-admin", T: "acme-trigger"}
TENANT = {"own": "acme", "other": "beta"}
N = "/connections/{name}"


def _c(side, suffix=""):          # a call naming the side's connection
    return f"/connections/{TENANT[side]}-c{suffix}"


# (method, route) -> (the call for a side: path, body), {role: status, or (own, other)}
MATRIX = {
    ("GET", "/"): (lambda s: ("/", None), {P: 200, A: 200, T: 200}),
    ("GET", "/providers"): (lambda s: ("/providers", None), {P: 200, A: 200, T: 403}),
    ("PUT", "/providers/{provider}/config/validate"): (
        lambda s: ("/providers/coursera/config/validate", body(TENANT[s])), {P: 200, A: (200, 403), T: 403}),
    ("GET", "/connections"): (lambda s: ("/connections", None), {P: 200, A: 200, T: 200}),
    ("POST", "/connections"): (lambda s: ("/connections", {"connection": f"{TENANT[s]}-new", **body(TENANT[s])}),
                               {P: 201, A: (201, 403), T: 403}),
    ("GET", N): (lambda s: (_c(s), None), {P: 200, A: (200, 404), T: 403}),
    ("PUT", N): (lambda s: (_c(s), body(TENANT[s], page_size=50)), {P: 200, A: (200, 404), T: 403}),
    ("DELETE", N): (lambda s: (_c(s), None), {P: 204, A: (204, 404), T: 403}),
    ("PUT", N + "/pause"): (lambda s: (_c(s, "/pause"), None), {P: 202, A: (202, 404), T: 403}),
    ("PUT", N + "/resume"): (lambda s: (_c(s, "/resume"), None), {P: 202, A: (202, 404), T: 403}),
    ("POST", N + "/syncs"): (lambda s: (_c(s, "/syncs"), {"scope": "catalog"}), {P: 202, A: (202, 404), T: (202, 404)}),
    ("GET", N + "/status"): (lambda s: (_c(s, "/status"), None), {P: 200, A: (200, 404), T: (200, 404)}),
    ("GET", N + "/delivery"): (lambda s: (_c(s, "/delivery"), None), {P: 200, A: (200, 404), T: (200, 404)}),
    ("POST", N + "/check"): (lambda s: (_c(s, "/check"), None), {P: 200, A: (200, 404), T: 403}),
    ("GET", N + "/deadletters"): (lambda s: (_c(s, "/deadletters"), None), {P: 200, A: (200, 404), T: 403}),
    ("POST", N + "/deadletters/redrive"): (lambda s: (_c(s, "/deadletters/redrive"), {"stage": "mapping"}),
                                           {P: 202, A: (202, 404), T: 403}),
    ("GET", "/audit"): (lambda s: ("/audit", None), {P: 200, A: 403, T: 403}),
    ("GET", "/runs"): (lambda s: ("/runs", None), {P: 200, A: 200, T: 200}),
    ("GET", "/deadletters"): (lambda s: ("/deadletters", None), {P: 200, A: 200, T: 403}),
    # r1 is a request of acme-c, r2 of beta-c (tests/hostspec/api_fakes.py)
    ("GET", "/requests/{request_id}"): (lambda s: (f"/requests/r{1 if s == 'own' else 2}", None),
                                        {P: 200, A: (200, 404), T: (200, 404)}),
}
CELLS = [(method, route, role, side) for (method, route) in MATRIX for role in (P, A, T) for side in ("own", "other")]


def _served() -> set[tuple[str, str]]:
    plane = ControlPlane.__new__(ControlPlane)
    return {(m[3:].upper(), path) for path, resource in admin_api.routes(plane).items()
            for m in dir(resource) if m.startswith("on_")}


def test_the_matrix_and_the_rules_name_every_route_and_method_served():
    assert set(MATRIX) == _served(), "a route without a row in MATRIX: say what each role gets"
    assert set(api_access.RULES) == _served(), "a route without a rule in api_access.RULES"


@pytest.fixture
def api(plugins, tmp_path, monkeypatch):
    return Api(plugins, tmp_path, monkeypatch)


AUDIT_SCHEMA = Draft202012Validator(json.loads((SCHEMAS / "learning.audit.v1.json").read_text()),
                                    format_checker=Draft202012Validator.FORMAT_CHECKER)


def assert_valid_audit(event_json: str) -> dict:
    body_ = json.loads(event_json)
    errors = [e.message for e in AUDIT_SCHEMA.iter_errors(body_)]
    assert errors == [], errors
    return body_["data"]


@pytest.mark.parametrize("method, route, role, side", CELLS, ids=[f"{m} {r} {ro} {s}" for m, r, ro, s in CELLS])
def test_endpoint_role_tenant(api, method, route, role, side):
    make, expected = MATRIX[(method, route)]
    status = expected[role] if isinstance(expected[role], int) else expected[role][side == "other"]
    path, payload = make(side)
    answer = api.call(WHO[role], method, path, json=payload)
    assert answer.status_code == status, (answer.status_code, answer.text)
    events = list(api.trail.events)

    what, other, nobody = (("request", "r2", "r404") if route == "/requests/{request_id}"
                           else ("connection", "beta-c", "nobody-c"))
    if status == 404:       # no existence oracle: the answer an absent connection gets, word for word
        assert answer.json == {"error_code": 404, "message": f"no {what} '{other}'"}
    if status == 404 and (method, route) != ("PUT", N):    # (a PUT of a free name creates it)
        absent = api.call(WHO[role], method, path.replace(other, nobody), json=payload)
        assert (absent.status_code, absent.json) == (404, {"error_code": 404, "message": f"no {what} '{nobody}'"})
    if status in (403, 404):
        assert "beta" not in json.dumps(api.control.written[2:]), "refused, yet something was stored"
    if answer.status_code < 300 and role != P:
        assert "beta" not in answer.text, "a tenant's answer names another tenant's object"

    if method == "GET" and status not in (401, 403):
        assert events == []
    else:
        assert len(events) == 1, events
        data = assert_valid_audit(events[0].to_json())
        assert (data["principal"], data["role"], data["method"], data["path"], data["status"]) == (
            WHO[role], role, method, path, status)
        assert data["tenant"] == (None if role == P else "acme") and data["remote_addr"]
        assert not any(token in events[0].to_json() for token in api.tokens.values())


def test_lists_show_only_the_callers_objects(api):
    names = {who: [c["connection"] for c in api.call(who, "GET", "/connections").json]
             for who in ("root", "ops", "acme-admin", "acme-trigger", "beta-admin")}
    assert names == {"root": ["acme-c", "beta-c"], "ops": ["acme-c", "beta-c"], "acme-admin": ["acme-c"],
                     "acme-trigger": ["acme-c"], "beta-admin": ["beta-c"]}
    assert api.call("acme-admin", "GET", "/").json["connections"] == 1
    assert api.call("root", "GET", "/").json["connections"] == 2


def test_runs_and_dead_letters_of_another_tenant_under_a_reused_name_stay_hidden(api):
    from tests.hostspec.api_fakes import rejected, run
    api.plane.published += [run("acme-c", "beta", 7), rejected("acme-c", "beta", 7)]   # beta's, before a re-use
    runs = api.call("acme-admin", "GET", "/connections/acme-c/status").json["runs"]
    assert sorted(r["request_id"] for r in runs) == ["r1", "r3"]          # its own, and one refused tenant-less
    # a platform admin asking about acme-c sees acme-c's life too: beta's runs left under the name are not its
    assert sorted(r["request_id"] for r in api.call("root", "GET", "/connections/acme-c/status").json["runs"]) == [
        "r1", "r3"]
    letters = api.call("acme-admin", "GET", "/connections/acme-c/deadletters").json
    assert len(letters) == 1
    redriven = api.call("acme-admin", "POST", "/connections/acme-c/deadletters/redrive", json={}).json
    assert redriven["redriven"] == [letters[0]["id"]]


def test_a_deleted_connections_dead_letters_stay_its_tenants(api):
    assert api.call("acme-admin", "DELETE", "/connections/acme-c").status_code == 204
    assert api.control.document("acme-c")["tenant"] == "acme"       # the tombstone says whose it was
    assert len(api.call("acme-admin", "GET", "/connections/acme-c/deadletters").json) == 1
    assert api.call("beta-admin", "GET", "/connections/acme-c/deadletters").status_code == 404
    assert api.call("acme-admin", "GET", "/connections/nobody/deadletters").status_code == 404


def test_a_body_naming_another_tenant_is_refused_on_the_callers_own_connection(api):
    moved = api.call("acme-admin", "PUT", "/connections/acme-c", json=body("beta"))
    assert moved.status_code == 403 and "tenant 'acme' only" in moved.json["message"]
    assert api.control.document("acme-c")["tenant"] == "acme"


def test_creating_a_name_another_tenant_holds_tells_only_that_it_is_taken(api):
    taken = api.call("acme-admin", "POST", "/connections", json={"connection": "beta-c", **body("acme")})
    assert taken.status_code == 409 and taken.json["message"] == "the connection name 'beta-c' is taken: choose another"
    assert api.call("root", "POST", "/connections", json={"connection": "beta-c", **body("beta")}).json["message"] == (
        "connection 'beta-c' exists (revision 1); replace it with PUT")


def test_a_trigger_token_cannot_lift_the_removal_guard(api):
    lifted = api.call("acme-trigger", "POST", "/connections/acme-c/syncs", json={"allow_mass_removal": True})
    assert lifted.status_code == 403
    assert api.call("acme-admin", "POST", "/connections/acme-c/syncs", json={"allow_mass_removal": True}
                    ).status_code == 202
    requested = [e.data for e in api.plane.published if e.type == "learning.sync.requested.v1"]
    assert [(r["requested_by"], r["allow_mass_removal"]) for r in requested] == [("api:acme-admin", True)]
