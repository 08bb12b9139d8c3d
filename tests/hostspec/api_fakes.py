"""An admin API on the in-memory control topic, with its requests, statuses and dead letters kept
in memory too (unit tests of the API; tests/integration runs the same calls on the broker)."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import falcon.testing

from hostspec.control import api as admin_api, audit
from hostspec import rejections
from hostspec.runtime import dead_letters
from hostspec import events as ev
from hostspec.control.rate import TenantRate
from hostspec.control.tokens import Tokens, write_token
from hostspec.control.delivery import DeliveryBoard
from hostspec.control.plane import ControlPlane
from hostspec.config.policy import SettingsPolicy
from hostspec.secrets import Secret
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.config.control_topic import MemoryControl
from hostspec.transport.consumers import InboundMessage

GROUP = "65a1b2c3d4e5f60718293a4b"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
PRINCIPALS = {"root": ("platform_admin", None), "acme-admin": ("tenant_admin", "acme"),
              "acme-trigger": ("tenant_trigger", "acme"), "beta-admin": ("tenant_admin", "beta")}


def body(tenant: str, **settings) -> dict:
    return {"tenant": tenant, "provider": "coursera", "group_id": GROUP,
            "settings": {"org_id": "DjYCkBQTQV69TtWA7RuNug", "client_id": f"{tenant}-key",
                         "client_secret": {"env": f"CONNECTOR_SECRET_{tenant.upper()}__COURSERA"}, **settings}}


class MemoryPlane(ControlPlane):
    """The control plane with the requests, status and dead-letter topics in one list."""

    def __init__(self, plugins, control: MemoryControl, policy: SettingsPolicy):
        super().__init__(plugins, KafkaConfig.from_env(bootstrap_servers="127.0.0.1:1"), Topics(), policy,
                         log=control, writer=control)
        self.published: list[ev.Event] = []

        self.delivery = DeliveryBoard()

    def check(self, name):       # no call to Coursera here: tests/hostspec/control/test_delivery.py checks for real
        self.connection(name)
        return {"connection": name, "ok": True, "checks": [], "warnings": []}

    def _publish(self, events, raw=()):
        self.published.extend(events)

    def _read(self, topic, type_, timeout_s):
        for offset, event in enumerate(self.published):
            if event.type == type_:
                yield InboundMessage(topic, 0, offset, event.key.encode(), event.to_json().encode()), event

    def _catch_up(self, timeout_s=10):
        """The fleet index fed what was published since the last call (the feeder's part)."""
        fed = getattr(self, "_fed", 0)
        for offset, event in enumerate(self.published[fed:], start=fed):
            request_tenant = self.tenant_of(event.data.get("connection") or "") if event.type == ev.SYNC_REQUESTED else None
            self.index.add(event, partition=0, offset=offset, tenant=request_tenant)
        self._fed = len(self.published)


def rejected(connection: str, tenant: str | None, n: int) -> ev.Event:
    return rejections.raw_rejection(stage="mapping", topic="learning.courses", partition=0, offset=n,
                                      value=b"{}", reason="a record the mapping refused", errors=None, now=NOW,
                                      key=f"{tenant}/{connection}/coursera/x{n}", source="/test", id_content=str(n),
                                      tenant=tenant, connection=connection, provider="coursera")


def run(connection: str, tenant: str | None, n: int) -> ev.Event:
    return dead_letters.skipped_request(f"r{n}", tenant=tenant, connection=connection, provider="coursera",
                                        scope="all", reason="a run", now=NOW, worker="w1")


class Api:
    """The app, its tokens (clear, as handed to each principal), plane and audit trail."""

    def __init__(self, plugins, tmp_path: Path, monkeypatch, rate: TenantRate | None = None):
        for tenant in ("ACME", "BETA"):
            monkeypatch.setenv(f"CONNECTOR_SECRET_{tenant.upper()}__COURSERA", "s")
        monkeypatch.setenv("API_TOKEN_OPS", "legacy-ops-token-0123456789")
        self.tokens_file = tmp_path / "tokens.toml"
        self.tokens = {name: write_token(self.tokens_file, name, role=role, tenant=tenant)
                       for name, (role, tenant) in PRINCIPALS.items()}
        self.tokens["ops"] = "legacy-ops-token-0123456789"
        policy = SettingsPolicy()
        self.control = MemoryControl(policy)
        self.plane = MemoryPlane(plugins, self.control, policy)
        for tenant in ("acme", "beta"):
            self.plane.put(f"{tenant}-c", body(tenant), actor="api:setup")
        self.plane.published += [run("acme-c", "acme", 1), run("beta-c", "beta", 2), run("acme-c", None, 3),
                                 rejected("acme-c", "acme", 1), rejected("beta-c", "beta", 2)]
        self.trail = audit.MemoryAudit()
        app = admin_api.make_app(self.plane, Tokens({"ops": Secret(env="API_TOKEN_OPS")}, self.tokens_file),
                                 trail=self.trail, rate=rate)
        self.client = falcon.testing.TestClient(app)

    def call(self, who: str | None, method: str, path: str, json=None, headers=None) -> falcon.testing.Result:
        auth = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.client.simulate_request(method, path, json=json, headers={**auth, **(headers or {})})
