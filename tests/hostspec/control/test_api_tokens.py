"""Admin API tokens (hashed, rotated without a restart), refused tokens in the audit trail, the
audit trail read by platform admins, and each tenant's request rate (issue 27, part 6)."""
from __future__ import annotations

import json
import logging

import pytest

from hostspec.cli import main as cli
from hostspec.control.rate import TenantRate
from hostspec.control.tokens import Tokens, digest, read_tokens_file, write_token
from hostspec.errors import ConfigError

from tests.hostspec.api_fakes import Api, body
from .test_api_roles import assert_valid_audit


@pytest.fixture
def api(plugins, tmp_path, monkeypatch):
    return Api(plugins, tmp_path, monkeypatch)


def test_the_tokens_file_holds_digests_never_tokens(api):
    text = api.tokens_file.read_text()
    assert all(token not in text for token in api.tokens.values())
    assert digest(api.tokens["acme-admin"]) in text
    assert oct(api.tokens_file.stat().st_mode & 0o777) == "0o600"


def test_refused_tokens_are_audited_without_the_token(api):
    missing = api.call(None, "GET", "/connections")
    wrong = api.client.simulate_get("/connections/acme-c", headers={"Authorization": "Bearer guessed-token-42"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert wrong.headers["WWW-Authenticate"] == "Bearer" and wrong.json["message"] == "the bearer token is not valid"
    assert [e.data["status"] for e in api.trail.events] == [401, 401]
    for event in api.trail.events:
        data = assert_valid_audit(event.to_json())
        assert (data["principal"], data["role"], data["tenant"], data["outcome"]) == (None, None, None, "refused")
        assert data["remote_addr"] == "127.0.0.1" and "guessed-token-42" not in event.to_json()
    assert [e.data["reason"] for e in api.trail.events] == ["a bearer token is required", "the bearer token is not valid"]


def test_every_write_is_audited_with_its_result(api):
    api.call("acme-admin", "PUT", "/connections/acme-c", json=body("acme", page_size=20), headers={"If-Match": "9"})
    api.call("acme-admin", "PUT", "/connections/acme-c", json=body("acme", client_secret="inline-secret-value"))
    api.call("acme-admin", "POST", "/connections/acme-c/syncs", json={})
    api.call("acme-admin", "DELETE", "/connections/acme-c")
    seen = [(e.data["method"], e.data["status"], e.data["outcome"], e.data["connection"]) for e in api.trail.events]
    assert seen == [("PUT", 409, "refused", "acme-c"), ("PUT", 422, "refused", "acme-c"),
                    ("POST", 202, "done", "acme-c"), ("DELETE", 204, "done", "acme-c")]
    assert "revision 1, not 9" in api.trail.events[0].data["reason"]
    assert all(assert_valid_audit(e.to_json()) for e in api.trail.events)
    assert "inline-secret-value" not in json.dumps([e.body for e in api.trail.events])


def test_platform_admins_read_the_audit_trail_with_filters(api):
    api.call("acme-admin", "POST", "/connections/acme-c/syncs", json={})
    api.call("beta-admin", "PUT", "/connections/acme-c/pause")
    api.call(None, "GET", "/audit")
    everything = api.call("root", "GET", "/audit").json
    assert [(e["principal"], e["status"]) for e in everything] == [("acme-admin", 202), ("beta-admin", 404),
                                                                   (None, 401)]
    assert all(set(e) >= {"id", "time", "principal", "remote_addr", "outcome"} for e in everything)
    assert [e["principal"] for e in api.call("root", "GET", "/audit?tenant=beta").json] == ["beta-admin"]
    assert [e["status"] for e in api.call("ops", "GET", "/audit?outcome=refused&limit=1").json] == [401]
    assert api.call("root", "GET", "/audit?since=2999-01-01T00:00:00Z").json == []
    assert api.call("root", "GET", "/audit?outcome=maybe").status_code == 422
    assert api.call("acme-admin", "GET", "/audit").status_code == 403
    assert api.call("root", "GET", "/audit").json[-1]["status"] == 403      # the refusal just above, recorded


def test_a_token_is_rotated_and_revoked_without_a_restart(api, caplog):
    old = api.tokens["acme-admin"]
    assert api.call("acme-admin", "GET", "/connections").status_code == 200
    api.tokens["acme-admin"] = write_token(api.tokens_file, "acme-admin", role="tenant_admin", tenant="acme")
    assert api.call("acme-admin", "GET", "/connections").status_code == 200          # the new one, same app
    stale = api.client.simulate_get("/connections", headers={"Authorization": f"Bearer {old}"})
    assert stale.status_code == 401
    write_token(api.tokens_file, "acme-trigger", revoke=True)
    assert api.call("acme-trigger", "GET", "/connections").status_code == 401
    # a change that does not read: logged, and the version read before stays (no token in the log)
    with caplog.at_level(logging.ERROR):
        api.tokens_file.write_text(api.tokens_file.read_text() + '\n[tokens.x]\ntoken = "clear-text"\n')
        assert api.call("acme-admin", "GET", "/connections").status_code == 200
    assert "unknown keys token" in caplog.text and "clear-text" not in caplog.text
    assert api.tokens["acme-admin"] not in caplog.text and digest(api.tokens["acme-admin"]) not in caplog.text


def test_the_tokens_given_by_reference_before_roles_are_platform_admins(api):
    assert [c["connection"] for c in api.call("ops", "GET", "/connections").json] == ["acme-c", "beta-c"]
    assert api.call("ops", "GET", "/audit").status_code == 200
    assert api.call("ops", "PUT", "/connections/beta-c/pause").status_code == 202
    assert api.control.document("beta-c")["changed_by"] == "api:ops"


@pytest.mark.parametrize("table, words", [
    ('[tokens.a]\ntoken = "abc"\nrole = "platform_admin"\n', "unknown keys token"),
    ('[tokens.a]\nsha256 = "abc"\nrole = "platform_admin"\n', "64 lowercase hex"),
    (f'[tokens.a]\nsha256 = "{"a" * 64}"\nrole = "tenant_admin"\n', "needs its tenant"),
    (f'[tokens.a]\nsha256 = "{"a" * 64}"\nrole = "platform_admin"\ntenant = "acme"\n', "has no tenant"),
    (f'[tokens.a]\nsha256 = "{"a" * 64}"\nrole = "root"\n', "role must be one of"),
    (f'[tokens.a]\nsha256 = "{"a" * 64}"\nrole = "platform_admin"\n'
     f'[tokens.b]\nsha256 = "{"a" * 64}"\nrole = "platform_admin"\n', "have the same token"),
    (f'[tokens.ops]\nsha256 = "{"a" * 64}"\nrole = "platform_admin"\n', "also given by --token"),
    ('[other]\n', "only [tokens.NAME] tables"),
])
def test_a_wrong_tokens_file_names_the_entry_and_the_rule_never_a_digest(tmp_path, table, words):
    path = tmp_path / "tokens.toml"
    path.write_text(table)
    with pytest.raises(ConfigError) as refused:
        read_tokens_file(path, frozenset({"ops"}))
    assert words in str(refused.value) and "a" * 64 not in str(refused.value)


def test_api_token_prints_a_new_token_once_and_stores_its_digest(tmp_path, capsys):
    path = tmp_path / "tokens.toml"
    assert cli.main(["api-token", "acme-ci", "--file", str(path), "--role", "tenant_trigger", "--tenant", "acme"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 40 and token not in path.read_text()
    assert Tokens(file=path).authenticate(token).tenant == "acme"
    assert cli.main(["api-token", "acme-ci", "--file", str(path), "--role", "tenant_trigger"]) == 2
    assert cli.main(["api-token", "acme-ci", "--file", str(path), "--revoke"]) == 0
    assert Tokens(file=path).authenticate(token) is None


def test_a_tenant_past_its_request_rate_gets_429_with_retry_after(plugins, tmp_path, monkeypatch):
    now = [0.0]
    api = Api(plugins, tmp_path, monkeypatch, rate=TenantRate(2, 3, clock=lambda: now[0]))
    assert [api.call("acme-trigger", "GET", "/connections").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.call("acme-admin", "POST", "/connections/acme-c/syncs", json={})     # the same tenant
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json["error_code"] == 429 and "'acme' is over 2 requests per second" in refused.json["message"]
    assert not [e for e in api.plane.published if e.type == "learning.sync.requested.v1"]
    assert api.trail.events[-1].data["status"] == 429            # a write refused: recorded
    assert api.call("beta-admin", "GET", "/connections").status_code == 200    # another tenant: its own rate
    assert all(api.call("root", "GET", "/connections").status_code == 200 for _ in range(10))   # the operator
    now[0] += 0.5
    assert api.call("acme-admin", "GET", "/connections").status_code == 200
    assert api.call("acme-admin", "GET", "/connections").status_code == 429


def test_the_rate_refills_and_says_how_long_to_wait():
    now = [0.0]
    rate = TenantRate(0.25, 1, clock=lambda: now[0])
    assert rate.take("a") == 0 and rate.take("a") == pytest.approx(4.0)
    now[0] = 3.0
    assert TenantRate.retry_after(rate.take("a")) == 1
    now[0] = 4.1
    assert rate.take("a") == 0 and rate.take("b") == 0
    assert TenantRate(0).take("a") == 0
