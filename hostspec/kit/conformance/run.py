"""The conformance suite's machinery: a provider's sandbox (or settings), a connection to it and
one full sync (:class:`Run`, opened by :func:`open_run`), and the stand-ins some checks sync with.

The ``run`` fixture of :class:`hostspec.kit.testing.ProviderConformance` is :func:`open_run`;
:func:`connection_for` builds a connection for a provider's own tests.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from hostspec.config.connections import connection_from_settings
from hostspec.engine.plugins import HostPluginManager, Provider, get_plugin_manager
from hostspec.engine.run import SyncEngine
from hostspec.engine.sinks import MemorySink
from hostspec.engine.state import StateDB
from hostspec.errors import RecordRejected
from hostspec.kit.conformance.explain import explain
from hostspec.provider import Connection, SyncContext
from hostspec.requests import SyncRequest

GROUP_ID = "65a000000000000000000001"


def connection_for(provider: str, settings: Mapping[str, Any], *, name: str | None = None,
                   plugins: HostPluginManager | None = None, tenant: str = "conformance", group_id: str = GROUP_ID,
                   **host: Any) -> Connection:
    """A connection of ``provider`` with ``settings`` (a sandbox's ``settings``, a test account's),
    validated by the provider's schema, for a provider's own tests. ``host``: the connection-level
    keys of a connections file (``catalog_complete_days``, ``max_removal_share``…)."""
    plugins = plugins or get_plugin_manager()
    return connection_from_settings(name or f"{provider}-test", provider, settings, plugins, tenant=tenant,
                                    group_id=group_id, **host)


class RejectFirst:
    """The provider's hooks, with ``map_course`` refusing the first record it sees (as a provider
    does with an unreadable item) without naming it: the host must name it by ``record_id``."""

    def __init__(self, hooks: Any):
        self._hooks, self.victim = hooks, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hooks, name)

    def map_course(self, **kwargs: Any) -> Any:
        if self.victim is None:
            self.victim = kwargs["record"]
        if kwargs["record"] is self.victim:
            raise RecordRejected(None, {"_schema": ["refused on purpose by the conformance suite"]})
        return self._hooks.map_course(**kwargs)


class WindowSpy:
    """The provider's hooks, noting the window (``since``, ``until``) of every progress fetch."""

    def __init__(self, hooks: Any):
        self._hooks, self.windows = hooks, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hooks, name)

    def fetch_progress(self, **kwargs: Any) -> Any:
        self.windows.append((kwargs.get("since"), kwargs.get("until")))
        return self._hooks.fetch_progress(**kwargs)


class OnePlugin:
    """A plugin manager stand-in serving one provider with replaced hooks."""

    def __init__(self, provider: Provider, hooks: Any):
        self._provider = replace(provider, hooks=hooks)

    def provider(self, _name: str) -> Provider:
        return self._provider


class Run:
    """A sandbox, a connection to it, and the events of one full sync."""

    def __init__(self, plugins: Any, provider: Any, settings: Mapping[str, Any], sandbox: Any):
        self.plugins, self.provider, self.settings, self.sandbox = plugins, provider, dict(settings), sandbox
        self.connection = connection_from_settings(f"{provider.name}-conformance", provider.name, self.settings,
                                                   plugins, tenant="conformance", group_id=GROUP_ID)
        self.now = datetime.now(timezone.utc)
        self.sink, self.report = self.sync()

    def sync(self, *, plugins: Any = None, state: StateDB | None = None, scope: str = "all",
             connection: Connection | None = None) -> tuple[MemorySink, Any]:
        sink = MemorySink()
        connection = connection or self.connection
        report = SyncEngine(plugins or self.plugins, sink, state=state).run(
            SyncRequest("conformance", connection.name, self.provider.name, scope, "hostspec.kit.testing"), connection)
        return sink, report

    def explain(self, sink: MemorySink | None = None, report: Any = None) -> str:
        return explain(sink or self.sink, report or self.report)

    def fetch(self, scope: str, *, since: datetime | None = None, until: datetime | None = None,
              resume: Any = None) -> list[Any]:
        """Everything a fetch hook yields, records and markers."""
        context = replace(self.context(scope), resume=resume)
        if scope == "catalog":
            return list(self.provider.hooks.fetch_catalog(connection=self.connection, context=context))
        return list(self.provider.hooks.fetch_progress(connection=self.connection, context=context,
                                                       since=since, until=until))

    def stats(self, records: list[Any]) -> list[dict[str, Any]]:
        """The mapped stats of ``records`` (those that map)."""
        out = []
        for record in records:
            if isinstance(record, Mapping):
                try:
                    mapped = self.provider.hooks.map_stat(record=record, connection=self.connection,
                                                          context=self.context("progress"))
                except RecordRejected:
                    continue
                if mapped is not None:
                    out.append(mapped)
        return out

    def secrets(self) -> list[str]:
        out = []
        for name in self.provider.info.secret_fields:
            value = self.settings.get(name)
            if isinstance(value, str) and len(value) >= 4:
                out.append(value)
        return out

    def context(self, scope: str) -> SyncContext:
        return SyncContext(run_id="conformance", request_id="conformance", scope=scope,
                           now=self.now, options={}, resume=None,
                           log=logging.getLogger("hostspec.kit.testing"))


@contextmanager


def open_run(plugin: Any, *, name: str | None = None, sandbox_options: Mapping[str, Any] | None = None,
             settings: Mapping[str, Any] | None = None) -> Iterator[Run]:
    """The suite's ``run`` fixture outside pytest's fixtures: the provider's sandbox (or
    ``settings``) and one full sync of it; the sandbox closes on exit."""
    plugins = get_plugin_manager(load_entry_points=False, plugins=[(name or "provider", plugin)])
    names = [n for n in plugins.providers if name in (None, n)]
    assert len(names) == 1, f"expected one provider in {plugin!r}, found {names}"
    provider = plugins.provider(names[0])
    sandbox = None
    if settings is None:
        sandbox = provider.hooks.start_sandbox(options=dict(sandbox_options or {}))
        assert sandbox is not None, "no settings given and the provider ships no sandbox (start_sandbox)"
        settings = sandbox.settings
    try:
        yield Run(plugins, provider, settings, sandbox)
    finally:
        if sandbox is not None:
            sandbox.close()
