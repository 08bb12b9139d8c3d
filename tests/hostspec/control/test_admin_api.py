"""The admin API over real HTTP (waitress), on the in-memory control topic: the same control plane,
checks and answers as on Kafka (tests/integration/test_control_plane.py runs them on the broker)."""
from __future__ import annotations

import json

import pytest
import requests
from openapi_spec_validator import validate as validate_openapi

from hostspec.control import api as admin_api, openapi
from hostspec.control.plane import ControlPlane
from hostspec.ops.health import HttpServer
from hostspec.config.policy import SettingsPolicy
from hostspec.secrets import Secret
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.config.control_topic import MemoryControl
from publisher_360learning.settings import target_problems
from tests.conftest import SCHEMAS

TOKEN = "ops-token-0123456789"
GROUP = "65a1b2c3d4e5f60718293a4b"


def coursera_body(**settings):
    return {"tenant": "acme", "provider": "coursera", "group_id": GROUP,
            "settings": {"org_id": "DjYCkBQTQV69TtWA7RuNug", "client_id": "acme-key",
                         "client_secret": {"env": "CONNECTOR_SECRET_ACME__COURSERA"}, **settings}}


@pytest.fixture
def api(plugins, monkeypatch):
    monkeypatch.setenv("API_TOKEN_OPS", TOKEN)
    policy = SettingsPolicy(secret_dirs=("/run/secrets/connectors",))
    control = MemoryControl(policy)
    plane = ControlPlane(plugins, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics(), policy,
                         log=control, writer=control,
                         target_check=lambda name, target, tenant: target_problems(policy, name, target, tenant))
    server = HttpServer(admin_api.make_app(plane, {"ops": Secret(env="API_TOKEN_OPS")}), 0, "127.0.0.1").start()

    class Client(requests.Session):
        url = f"http://127.0.0.1:{server.port}"
        memory = control

        def request(self, method, path, *a, **kw):
            return super().request(method, self.url + path, *a, timeout=10, **kw)

    client = Client()
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    yield client
    client.close()
    server.close()


def test_the_openapi_document_is_valid_and_names_every_route(plugins):
    doc = json.loads((SCHEMAS / "admin-api.openapi.json").read_text())
    validate_openapi(doc)                       # openapi-spec-validator, OpenAPI 3.1
    assert doc == openapi.document()
    plane = ControlPlane.__new__(ControlPlane)
    served = set(admin_api.routes(plane)) | set(admin_api.PUBLIC)
    assert served == set(doc["paths"])
    for path, resource in admin_api.routes(plane).items():
        methods = {m[3:] for m in dir(resource) if m.startswith("on_")}
        assert methods == set(doc["paths"][path]) - {"parameters"}, path


def test_public_routes_need_no_token_and_the_others_do(api):
    anonymous = requests.Session()
    assert anonymous.get(api.url + "/health", timeout=5).json() == {"status": "up"}
    ready = anonymous.get(api.url + "/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["checks"] == {"control_topic": True}
    assert "connector_requests_total" in anonymous.get(api.url + "/metrics", timeout=5).text
    assert anonymous.get(api.url + "/openapi.json", timeout=5).json()["openapi"] == "3.1.0"

    missing = anonymous.get(api.url + "/connections", timeout=5)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json()["error_code"] == 401 and "bearer token is required" in missing.json()["message"]
    wrong = anonymous.post(api.url + "/connections", json={"connection": "x", **coursera_body()},
                           headers={"Authorization": "Bearer not-the-token"}, timeout=5)
    assert wrong.status_code == 401 and "not valid" in wrong.json()["message"]
    assert api.memory.written == []             # nothing stored by a refused caller
    assert api.get("/connections").json() == []


def test_create_replace_pause_delete_and_their_conflicts(api):
    created = api.post("/connections", json={"connection": "acme-coursera", **coursera_body()})
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == "/connections/acme-coursera"
    doc = created.json()
    assert (doc["revision"], doc["changed_by"], doc["settings"]["client_secret"]) == (
        1, "api:ops", {"env": "CONNECTOR_SECRET_ACME__COURSERA"})
    assert api.post("/connections", json={"connection": "acme-coursera", **coursera_body()}).status_code == 409

    replaced = api.put("/connections/acme-coursera", json=coursera_body(page_size=50), headers={"If-Match": "1"})
    assert (replaced.status_code, replaced.json()["revision"]) == (200, 2)
    stale = api.put("/connections/acme-coursera", json=coursera_body(), headers={"If-Match": "1"})
    assert stale.status_code == 409 and "revision 2, not 1" in stale.json()["message"]

    assert api.put("/connections/acme-coursera/pause").status_code == 202
    assert api.get("/connections/acme-coursera").json()["paused"] is True
    assert api.memory.store().enabled() == []          # the scheduler skips it
    assert api.put("/connections/acme-coursera/resume").status_code == 202
    assert api.get("/connections").json()[0]["revision"] == 4

    assert api.delete("/connections/acme-coursera").status_code == 204
    assert api.get("/connections/acme-coursera").status_code == 404
    assert api.delete("/connections/acme-coursera").status_code == 404
    again = api.put("/connections/acme-coursera", json=coursera_body())
    assert (again.status_code, again.json()["revision"]) == (201, 6)   # revisions go on after a delete
    assert [d["revision"] for d in api.memory.written] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("change, field, words", [
    (lambda b: b["settings"].pop("org_id"), "org_id", "Missing data"),
    (lambda b: b["settings"].update(base_url="https://collector.example.net"), "base_url", "not allowed"),
    (lambda b: b["settings"].update(token_url="https://collector.example.net/token"), "token_url", "not allowed"),
    (lambda b: b["settings"].update(base_url="http://127.0.0.1:9"), "base_url", "development switch"),
    (lambda b: b["settings"].update(base_url="https://api.coursera.com@10.0.0.1/"), "base_url", "user info"),
    (lambda b: b["settings"].update(client_secret="inline-secret-value"), "client_secret", "never a value"),
    (lambda b: b["settings"].update(client_secret={"env": "KAFKA_SASL_PASSWORD"}), "client_secret", "outside this tenant's"),
    (lambda b: b["settings"].update(client_secret={"file": "/etc/shadow"}), "client_secret", "outside this tenant's"),
    (lambda b: b["settings"].update(client_secret={"file": "/run/secrets/connectors/../../../etc/shadow"}),
     "client_secret", "outside this tenant's"),
])
def test_refused_settings_name_the_field_and_the_rule(api, change, field, words):
    body = coursera_body()
    change(body)
    answer = api.post("/connections", json={"connection": "acme", **body})
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]          # flat: {"settings.org_id": [...]}
    assert words in json.dumps(errors[f"settings.{field}"]), errors
    assert all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in errors.values()), errors
    assert "inline-secret-value" not in answer.text
    assert api.memory.written == []
    check = api.put("/providers/coursera/config/validate", json=body)
    assert check.status_code == 200 and check.json()["error_count"] >= 1
    assert f"settings.{field}" in check.json()["errors"]


def test_refused_bodies_and_targets(api):
    assert api.post("/connections", data=b"{not json").status_code == 400
    big = api.post("/connections", data=b"{" + b" " * 1_100_000 + b"}", headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    assert api.put("/connections/bad%20name", json=coursera_body()).status_code == 422
    server_set = api.put("/connections/acme", json={**coursera_body(), "revision": 9, "changed_by": "me"})
    assert server_set.status_code == 422 and set(server_set.json()["errors"]) == {"revision", "changed_by"}
    unknown = api.put("/connections/acme", json={**coursera_body(), "provider": "udemy"})
    assert unknown.status_code == 422 and "unknown provider 'udemy'" in unknown.json()["message"]
    schedule = api.put("/connections/acme", json={**coursera_body(), "schedule": {"catalog": "99 * * * *"}})
    assert schedule.status_code == 422 and "schedule" in schedule.json()["message"]
    target = {"base_url": "https://evil.example.com", "client_id": "c", "author_id": "65a0000000000000000000a1",
              "client_secret": {"env": "CONNECTOR_SECRET_ACME__360"}}
    refused = api.put("/connections/acme", json={**coursera_body(), "target": target})
    assert refused.status_code == 422 and "target.base_url" in refused.json()["errors"]
    good = api.put("/connections/acme", json={**coursera_body(), "target": {**target, "base_url": None,
                                                                            "region": "eu"}})
    assert good.status_code == 201, good.text
    assert api.get("/nowhere").status_code == 404 and api.get("/nowhere").json()["error_code"] == 404


def test_a_tenant_placeholder_keeps_each_company_to_its_own_secrets(plugins, tmp_path):
    from hostspec.config.connections import ConnectionStore
    from hostspec.errors import SettingsRefused

    acme_dir = tmp_path / "acme"
    acme_dir.mkdir()
    (acme_dir / "coursera").write_text("s")
    (tmp_path / "beta").mkdir()
    (tmp_path / "beta" / "coursera").write_text("s")
    policy = SettingsPolicy(secret_env_prefixes=("CONNECTOR_SECRET_{tenant}_",),
                            secret_dirs=(str(tmp_path / "{tenant}"),))

    def settings_of(tenant, secret):
        entry = {**coursera_body(), "tenant": tenant}
        entry["settings"] = {**entry["settings"], "client_secret": secret}
        return ConnectionStore({"c": entry}, source="<test>", policy=policy)

    settings_of("acme", {"env": "CONNECTOR_SECRET_ACME_COURSERA"}).get("c", plugins)
    settings_of("acme-eu", {"env": "CONNECTOR_SECRET_ACME_EU_X"}).get("c", plugins)
    settings_of("acme", {"file": str(acme_dir / "coursera")}).get("c", plugins)
    for tenant, secret in (("beta", {"env": "CONNECTOR_SECRET_ACME_COURSERA"}),
                           ("beta", {"file": str(acme_dir / "coursera")}),
                           ("..", {"file": str(acme_dir / "coursera")})):
        with pytest.raises(SettingsRefused):
            settings_of(tenant, secret).get("c", plugins)
