"""A conformance suite a provider package runs against itself, in a few lines.

.. code-block:: python

    # tests/test_conformance.py of a provider package
    from hostspec.testing import provider_test_class
    import connector_acme.plugin

    TestAcmeConformance = provider_test_class(connector_acme.plugin, sandbox_options={"courses": 12})

pytest then runs, against the provider's own sandbox (hook ``start_sandbox``) or against
``settings`` you pass (a recorded-fixture server, a test account):

* the plugin registers, its hooks are known and its ``provider_info`` is complete;
* the settings schema refuses missing and unknown keys and hides secrets from ``repr``;
* ``check_connection`` succeeds, and answers ``ok=False`` (without raising) to a wrong secret;
* ``fetch_catalog`` / ``fetch_progress`` stream (iterators, never lists);
* a full sync emits events that are valid against ``schemas/`` (JSON Schema) and the
  marshmallow contract, with nothing rejected, at least one course and one stat per scope;
* every stat respects the learning rules (:mod:`hostspec.rules`);
* no secret value appears in events or logs;
* event ids are deterministic: a second sync of the same data gives the same ids;
* an unreadable record raises ``RecordRejected`` with messages (never another exception);
* mapping is pure: mapping the same record twice gives the same result.

Needs pytest and jsonschema (the host's ``test`` extra).
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

import pytest

from . import events as ev
from . import rules
from .connections import connection_from_settings
from .engine import SyncEngine, SyncRequest
from .hookspecs import HOOK_ORDER
from .plugins import get_plugin_manager
from .provider import SCOPES, SyncContext
from .sinks import MemorySink

GROUP_ID = "65a000000000000000000001"


class _Run:
    """A sandbox, a connection to it, and the events of one full sync."""

    def __init__(self, plugins: Any, provider: Any, settings: Mapping[str, Any], sandbox: Any):
        self.plugins, self.provider, self.settings, self.sandbox = plugins, provider, dict(settings), sandbox
        self.connection = connection_from_settings(f"{provider.name}-conformance", provider.name, self.settings,
                                                   plugins, tenant="conformance", group_id=GROUP_ID)
        self.now = datetime.now(timezone.utc)
        self.sink, self.report = self.sync()

    def sync(self) -> tuple[MemorySink, Any]:
        sink = MemorySink()
        report = SyncEngine(self.plugins, sink).run(
            SyncRequest("conformance", self.connection.name, self.provider.name, "all", "hostspec.testing"),
            self.connection)
        return sink, report

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
                           log=logging.getLogger("hostspec.testing"))


class ProviderConformance:
    """The tests; :func:`provider_test_class` binds them to one provider."""

    plugin: Any = None
    provider_name: str | None = None
    sandbox_options: Mapping[str, Any] = {}
    settings: Mapping[str, Any] | None = None

    @pytest.fixture(scope="class")
    @classmethod
    def run(cls) -> Iterator[_Run]:
        plugins = get_plugin_manager(load_entry_points=False, plugins=[(cls.provider_name or "provider", cls.plugin)])
        names = [n for n in plugins.providers if cls.provider_name in (None, n)]
        assert len(names) == 1, f"expected one provider in {cls.plugin!r}, found {names}"
        provider = plugins.provider(names[0])
        sandbox = None
        settings = cls.settings
        if settings is None:
            sandbox = provider.hooks.start_sandbox(options=dict(cls.sandbox_options))
            assert sandbox is not None, "no settings given and the provider ships no sandbox (start_sandbox)"
            settings = sandbox.settings
        try:
            yield _Run(plugins, provider, settings, sandbox)
        finally:
            if sandbox is not None:
                sandbox.close()

    # -- identity ----------------------------------------------------------------------------------
    def test_provider_info_is_complete(self, run):
        info = run.provider.info
        assert info.name == info.name.lower() and info.name.replace("_", "").isalnum(), info.name
        assert info.version and info.title, "version and title are shown by `connector-host plugins`"
        assert info.scopes and set(info.scopes) <= set(SCOPES), info.scopes
        fields = info.settings_schema().fields
        assert set(info.secret_fields) <= set(fields), "secret_fields must name settings fields"

    def test_only_known_hooks(self, run):
        implemented = {name for name in dir(type(self).plugin)
                       if hasattr(getattr(type(self).plugin, name), "hostspec_impl")}
        assert implemented <= set(HOOK_ORDER), implemented - set(HOOK_ORDER)
        assert {"provider_info", "fetch_catalog", "map_course"} <= implemented or \
               {"provider_info", "fetch_progress", "map_stat"} <= implemented

    # -- settings --------------------------------------------------------------------------------------
    def test_settings_schema_refuses_missing_and_unknown_keys(self, run):
        from marshmallow import ValidationError

        schema = run.provider.info.settings_schema
        with pytest.raises(ValidationError):
            schema().load({})
        with pytest.raises(ValidationError):
            schema().load({**run.settings, "no_such_setting_xyz": 1})

    def test_settings_hide_secrets(self, run):
        text = repr(run.connection) + repr(run.connection.settings) + str(run.connection.settings)
        for secret in run.secrets():
            assert secret not in text

    # -- checking and fetching --------------------------------------------------------------------------
    def test_check_connection(self, run):
        result = run.provider.hooks.check_connection(connection=run.connection, context=run.context("check"))
        assert result is not None and result.ok, result
        if run.provider.info.secret_fields:
            name = run.provider.info.secret_fields[0]
            bad = connection_from_settings("bad", run.provider.name, {**run.settings, name: "wrong-secret-value"},
                                           run.plugins, group_id=GROUP_ID)
            refused = run.provider.hooks.check_connection(connection=bad, context=run.context("check"))
            assert refused is not None and not refused.ok
            assert "wrong-secret-value" not in refused.message

    def test_fetch_hooks_stream(self, run):
        hooks, scopes = run.provider.hooks, run.provider.info.scopes
        fetched = []
        if "catalog" in scopes:
            fetched.append(hooks.fetch_catalog(connection=run.connection, context=run.context("catalog")))
        if "progress" in scopes:
            fetched.append(hooks.fetch_progress(connection=run.connection, context=run.context("progress"),
                                                since=None, until=None))
        for records in fetched:
            assert isinstance(records, Iterator) and not hasattr(records, "__len__"), \
                f"fetch hooks must stream (return a generator), got {type(records).__name__}"
            next(records)
            records.close()

    # -- the events ------------------------------------------------------------------------------------
    def test_a_full_sync_emits_valid_events_and_rejects_nothing(self, run):
        import jsonschema

        from .contracts import event_schema

        assert run.report.outcome == "completed", run.report.error
        counts = run.report.counts
        if "catalog" in run.provider.info.scopes:
            assert counts.courses_emitted > 0
        if "progress" in run.provider.info.scopes:
            assert counts.stats_emitted > 0
        assert counts.rejected == 0
        validators = {t: jsonschema.Draft202012Validator(event_schema(t)) for t in ev.EVENT_TYPES}
        for event in run.sink.events:
            body = json.loads(event.to_json())
            errors = [e.message for e in validators[event.type].iter_errors(body)]
            assert not errors, (event.type, errors[:3])
            ev.parse_event(body)                                      # and the marshmallow contract

    def test_learning_rules_hold(self, run):
        for event in run.sink.of_type(ev.LEARNER_STAT_UPSERTED):
            assert rules.check_stat(event.data) == {}, event.data

    def test_no_secret_in_events_or_logs(self, run, caplog):
        with caplog.at_level(logging.DEBUG):
            sink, _report = run.sync()
        text = "".join(e.to_json() for e in [*run.sink.events, *sink.events]) + caplog.text
        for secret in run.secrets():
            assert secret not in text

    def test_event_ids_are_deterministic(self, run):
        again, _ = run.sync()

        def ids(sink: MemorySink) -> dict[str, str]:
            return {e.key: e.id for e in sink.events if e.type in (ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED)}

        assert ids(again) == ids(run.sink) and ids(again)

    def test_unreadable_records_are_rejected_not_crashed(self, run):
        from .errors import RecordRejected

        hooks, ctx = run.provider.hooks, run.context("catalog")
        for hook in ("map_course", "map_stat"):
            if (hook == "map_course") == ("catalog" in run.provider.info.scopes) or \
                    (hook == "map_stat" and "progress" in run.provider.info.scopes):
                for junk in ({}, {"id": None, "unexpected": [1, {"x": float("nan")}]}):
                    with pytest.raises(RecordRejected) as info:
                        getattr(hooks, hook)(record=junk, connection=run.connection, context=ctx)
                    assert info.value.messages, f"{hook} must say why a record is rejected"

    def test_mapping_is_pure(self, run):
        hooks = run.provider.hooks
        if "catalog" in run.provider.info.scopes:
            records = hooks.fetch_catalog(connection=run.connection, context=run.context("catalog"))
            record = next(r for r in records if isinstance(r, Mapping))
            records.close()
            ctx = run.context("catalog")
            assert hooks.map_course(record=record, connection=run.connection, context=ctx) == \
                hooks.map_course(record=dict(record), connection=run.connection, context=ctx)
        if "progress" in run.provider.info.scopes:
            records = hooks.fetch_progress(connection=run.connection, context=run.context("progress"),
                                           since=None, until=None)
            record = next(r for r in records if isinstance(r, Mapping))
            records.close()
            ctx = run.context("progress")
            assert hooks.map_stat(record=record, connection=run.connection, context=ctx) == \
                hooks.map_stat(record=dict(record), connection=run.connection, context=ctx)


def provider_test_class(plugin: Any, *, name: str | None = None, sandbox_options: Mapping[str, Any] | None = None,
                        settings: Mapping[str, Any] | None = None) -> type:
    """A pytest test class checking ``plugin`` (a provider module or object).

    :param name: the provider's name, when the plugin object holds several (rare).
    :param sandbox_options: passed to the provider's ``start_sandbox`` hook.
    :param settings: connection settings to use instead of a sandbox (a recorded-fixture server,
        a test account); secrets may be plain strings here.
    """
    label = (name or getattr(plugin, "__name__", "provider")).rsplit(".", 1)[-1]
    return type(f"Test{label.title().replace('_', '')}Conformance", (ProviderConformance,),
                {"plugin": plugin, "provider_name": name, "sandbox_options": dict(sandbox_options or {}),
                 "settings": None if settings is None else dict(settings), "__test__": True})


__all__ = ["ProviderConformance", "provider_test_class"]
