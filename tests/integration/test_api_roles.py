"""API roles on the broker (issue 27, part 6): tenant tokens from a hashed tokens file see and
change only their tenant's connections, a token is rotated while the API runs, a tenant past its
request rate gets 429, and every write and refused token is an event on the audit topic that
passes its published JSON Schema."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests
from jsonschema import Draft202012Validator

from hostspec.control.tokens import write_token
from tests.conftest import SCHEMAS

from .conftest import read_topic
from .test_control_plane import TOKEN, session, start_api

pytestmark = pytest.mark.kafka
GROUP = "65a1b2c3d4e5f60718293a4b"


def body(tenant: str) -> dict:
    return {"tenant": tenant, "provider": "coursera", "group_id": GROUP,
            "settings": {"org_id": "o1", "client_id": f"{tenant}-key",
                         "client_secret": {"env": f"CONNECTOR_SECRET_{tenant.upper()}__COURSERA"}}}


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_tenant_tokens_rotation_rate_and_the_audit_topic(tmp_path, bootstrap, prefix, topics):
    tokens_file = tmp_path / "tokens.toml"
    acme = write_token(tokens_file, "acme-admin", role="tenant_admin", tenant="acme")
    beta = write_token(tokens_file, "beta-trigger", role="tenant_trigger", tenant="beta")
    api, url = start_api(tmp_path, bootstrap, prefix, "api", "--tokens-file", str(tokens_file),
                         "--tenant-rate", "1", "--tenant-burst", "10")
    ops = session()
    try:
        assert "--token ops is a platform admin" in api.log()            # the old way, said what it is
        for tenant in ("acme", "beta"):
            assert ops.post(f"{url}/connections", json={"connection": f"{tenant}-c", **body(tenant)},
                            timeout=30).status_code == 201

        # a tenant admin: its own connection only; another's answers as an absent one
        assert [c["connection"] for c in requests.get(f"{url}/connections", headers=bearer(acme),
                                                      timeout=10).json()] == ["acme-c"]
        hidden = requests.get(f"{url}/connections/beta-c", headers=bearer(acme), timeout=10)
        absent = requests.get(f"{url}/connections/nobody", headers=bearer(acme), timeout=10)
        assert (hidden.status_code, absent.status_code) == (404, 404)
        assert hidden.json()["message"] == "no connection 'beta-c'" and absent.json()["message"] == "no connection 'nobody'"
        assert requests.put(f"{url}/connections/beta-c", json=body("acme"), headers=bearer(acme),
                            timeout=10).status_code == 404
        asked = requests.post(f"{url}/connections/acme-c/syncs", json={}, headers=bearer(acme), timeout=30)
        assert asked.status_code == 202, asked.text
        assert requests.delete(f"{url}/connections/beta-c", headers=bearer(beta), timeout=10).status_code == 403
        assert requests.get(f"{url}/audit", headers=bearer(acme), timeout=10).status_code == 403
        assert requests.get(f"{url}/connections", headers=bearer("guessed-token"), timeout=10).status_code == 401

        # rotated while the API runs: the old token is refused at once, the new one works
        rotated = subprocess.run([sys.executable, "-m", "hostspec", "api-token", "acme-admin", "--file",
                                  str(tokens_file), "--role", "tenant_admin", "--tenant", "acme"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout.strip()
        assert requests.get(f"{url}/connections", headers=bearer(acme), timeout=10).status_code == 401
        assert requests.get(f"{url}/connections", headers=bearer(rotated), timeout=10).status_code == 200

        # beta's script over its rate: 429 with Retry-After; acme and the operator go on
        answers = [requests.get(f"{url}/connections", headers=bearer(beta), timeout=10) for _ in range(14)]
        limited = [a for a in answers if a.status_code == 429]
        assert limited and int(limited[0].headers["Retry-After"]) >= 1, [a.status_code for a in answers]
        assert requests.get(f"{url}/connections", headers=bearer(rotated), timeout=10).status_code == 200
        assert ops.get(f"{url}/connections", timeout=10).status_code == 200

        # the audit topic: every write and every refusal of a token or a role, valid, without a token
        validator = Draft202012Validator(json.loads((SCHEMAS / "learning.audit.v1.json").read_text()),
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        events = read_topic(bootstrap, topics.audit, timeout=20, until=lambda values: len(values) >= 8)
        for event in events:
            assert [e.message for e in validator.iter_errors(event)] == []
        seen = [(e["data"]["principal"], e["data"]["method"], e["data"]["status"]) for e in events]
        assert seen == [("ops", "POST", 201), ("ops", "POST", 201), ("acme-admin", "PUT", 404),
                        ("acme-admin", "POST", 202), ("beta-trigger", "DELETE", 403), ("acme-admin", "GET", 403),
                        (None, "GET", 401), (None, "GET", 401)], seen
        assert all(e["data"]["remote_addr"] == "127.0.0.1" for e in events)
        text = json.dumps(events) + api.log()
        assert not any(t in text for t in (TOKEN, acme, beta, rotated, "guessed-token"))
        listed = ops.get(f"{url}/audit", timeout=30).json()
        assert [e["id"] for e in listed] == [e["id"] for e in events]
        assert api.proc.poll() is None
    finally:
        ops.close()
        api.stop(timeout=20)
