"""Shared fixtures: the plugin manager, a running Coursera sandbox, a connection to it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec.config.connections import connection_from_settings
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.plugins import get_plugin_manager
from hostspec.engine.sinks import MemorySink

FIXTURES = Path(__file__).parent / "fixtures"
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def connections_toml(base_url: str, *, secret_env: str, names=("acme",), org_id: str = "DjYCkBQTQV69TtWA7RuNug",
                     client_id: str = "standin-key", group_id: str = "65a1b2c3d4e5f60718293a4b",
                     **settings) -> str:
    """A connections file: one Coursera connection of tenant ``acme`` per name, secret from ``secret_env``."""
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    return "".join(f"""
[connections.{name}]
tenant = "acme"
provider = "coursera"
group_id = "{group_id}"

[connections.{name}.settings]
org_id = "{org_id}"
client_id = "{client_id}"
client_secret = {{ env = "{secret_env}" }}
base_url = "{base_url}"
{extra}""" for name in names)


def sandbox_sync_events(spec: OrgSpec, *, scope: str = "all", name: str = "c", **connection_kw) -> MemorySink:
    """The events of one sync of a fresh Coursera sandbox, kept in memory."""
    plugins = get_plugin_manager()
    with CourseraSandbox(spec) as sb:
        sink = MemorySink()
        connection = connection_from_settings(name, "coursera", sb.settings, plugins, **connection_kw)
        SyncEngine(plugins, sink).run(SyncRequest("r", name, "coursera", scope), connection)
    return sink


def load_fixture(*parts: str):
    return json.loads(FIXTURES.joinpath(*parts).read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _no_log_handler_left_behind():
    """An in-process CLI test installs its log handler on the root logger, writing to the test's
    captured stream; once that stream is closed, kafka-python's threads logging through it flood
    the output with "Logging error". Each test takes away what it added."""
    import logging
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)


@pytest.fixture(autouse=True)
def _fresh_tokens():
    """Tokens shared by the clients of one account (hostspec.kit.http.ClientCredentials) are
    per process: each test fakes its own token endpoint, so none carries over."""
    from hostspec.kit.http import forget_tokens
    forget_tokens()


@pytest.fixture(scope="session")
def plugins():
    return get_plugin_manager()


@pytest.fixture
def sandbox():
    with CourseraSandbox(OrgSpec(contents=30, learners=20, enrollments=90)) as sb:
        yield sb


def sandbox_connection(sb: CourseraSandbox, plugins, *, catalog_complete_days: float = 0,
                       progress_lookback_hours: float | None = None, **overrides):
    """A connection to the sandbox; every catalog sync a complete listing unless asked otherwise."""
    settings = {**sb.settings, "max_retry_after_s": 0.2, **overrides}
    host = {} if progress_lookback_hours is None else {"progress_lookback_hours": progress_lookback_hours}
    return connection_from_settings("acme-coursera", "coursera", settings, plugins, tenant="acme",
                                    group_id="65a1b2c3d4e5f60718293a4b",
                                    catalog_complete_days=catalog_complete_days, **host)


@pytest.fixture
def connection(sandbox, plugins):
    return sandbox_connection(sandbox, plugins)
