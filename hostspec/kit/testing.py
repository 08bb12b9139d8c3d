"""A conformance suite a provider package runs against itself, in a few lines.

.. code-block:: python

    # tests/test_conformance.py of a provider package
    from hostspec.kit.testing import provider_test_class
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
* mapping is pure: mapping the same record twice gives the same result;
* ``record_id`` names each catalog item as ``map_course`` does (``external_id``), and an item that
  cannot be mapped causes no removal;
* every page is read (against the sandbox's ``expected`` counts), ``since`` and ``until`` are
  honoured, a progress fetch resumes from a ``PageEnd`` cursor, a second sync of unchanged data
  emits nothing, completed stats carry a completion date;
* a sync survives the sandbox answering 429 and 503 (``inject``): transient answers are retried;
  answered ``429`` with ``Retry-After: 3`` four times, the provider waits 3 s each time (by the
  sandbox's clock) and retries all four (:mod:`hostspec.kit.conformance.retry`);
* what the stats mean (:mod:`hostspec.kit.conformance.meaning`): unique stat keys, learner and attempt
  ids that identify, progress in percent, time spent in seconds, 100 % completed, first/last
  activity in order (the heuristics can be waived per provider with a reason: ``waivers``);
* golden records (``golden``): raw records the provider ships with the normalized result it
  expects map to it through ``map_course``/``map_stat`` and the host's rules, with a
  field-by-field diff on mismatch (:mod:`hostspec.kit.golden`);
* the catalog listing states its total (``ListingTotal``) unless ``ProviderInfo`` declares the
  API states none (:mod:`hostspec.kit.conformance.listing`);
* ``ProviderInfo.hosts`` is declared and covers the settings' default URLs; the sandbox passes
  the settings policy only with ``allow_sandboxes`` (:mod:`hostspec.kit.conformance.hosts`).

A failing check says what is wrong and shows the run's first dead letters with their reasons.
Assertion rewriting is on for this module (the ``hostspec`` pytest plugin registers it), so a
bare ``assert`` shows its values too. Needs pytest and jsonschema (the host's ``test`` extra).

For a provider's own tests, :func:`connection_for` builds a connection from settings (a
sandbox's ``settings``) without a connections file.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

import pytest
from marshmallow import ValidationError

from hostspec import events as ev
from hostspec import rules
from hostspec.kit.conformance.explain import explain
from hostspec.kit.conformance.hosts import HostChecks
from hostspec.kit.conformance.listing import ListingChecks
from hostspec.kit.conformance.meaning import MeaningChecks, swapped_activity
from hostspec.kit.conformance.retry import RetryChecks
from hostspec.config.connections import connection_from_settings
from hostspec.contracts import event_schema
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.errors import RecordRejected, scalar_id
from hostspec.kit.golden import check_golden
from hostspec.hookspecs import HOOK_ORDER
from hostspec.engine.plugins import HostPluginManager, Provider, get_plugin_manager
from hostspec.provider import SCOPES, Connection, PageEnd, SyncContext
from hostspec.engine.sinks import MemorySink
from hostspec.engine.state import StateDB

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


class _RejectFirst:
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


class _OnePlugin:
    """A plugin manager stand-in serving one provider with replaced hooks."""

    def __init__(self, provider: Provider, hooks: Any):
        self._provider = replace(provider, hooks=hooks)

    def provider(self, _name: str) -> Provider:
        return self._provider


class _Run:
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
             settings: Mapping[str, Any] | None = None) -> Iterator[_Run]:
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
        yield _Run(plugins, provider, settings, sandbox)
    finally:
        if sandbox is not None:
            sandbox.close()


class ProviderConformance(MeaningChecks, ListingChecks, RetryChecks, HostChecks):
    """The tests; :func:`provider_test_class` binds them to one provider. The identity and
    scale checks come from :class:`hostspec.kit.conformance.meaning.MeaningChecks` (``waivers``)."""

    plugin: Any = None
    provider_name: str | None = None
    sandbox_options: Mapping[str, Any] = {}
    settings: Mapping[str, Any] | None = None
    waivers: Mapping[str, str] = {}
    golden: str | None = None

    @pytest.fixture(scope="class")
    @classmethod
    def run(cls) -> Iterator[_Run]:
        with open_run(cls.plugin, name=cls.provider_name, sandbox_options=cls.sandbox_options,
                      settings=cls.settings) as run:
            yield run

    # -- identity ----------------------------------------------------------------------------------
    def test_provider_info_is_complete(self, run):
        info = run.provider.info
        assert info.name == info.name.lower() and info.name.replace("_", "").isalnum(), info.name
        assert info.version and info.title, "version and title are shown by `connector-host plugins`"
        assert info.scopes and set(info.scopes) <= set(SCOPES), info.scopes
        fields = info.settings_schema().fields
        assert set(info.secret_fields) <= set(fields), "secret_fields must name settings fields"
        assert set(info.identity_settings) <= set(fields) - set(info.secret_fields), \
            "identity_settings must name settings fields that are not secrets"

    def test_only_known_hooks(self, run):
        implemented = {name for name in dir(type(self).plugin)
                       if hasattr(getattr(type(self).plugin, name), "hostspec_impl")}
        assert implemented <= set(HOOK_ORDER), implemented - set(HOOK_ORDER)
        assert {"provider_info", "fetch_catalog", "map_course"} <= implemented or \
               {"provider_info", "fetch_progress", "map_stat"} <= implemented

    # -- settings --------------------------------------------------------------------------------------
    def test_settings_schema_refuses_missing_and_unknown_keys(self, run):
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
        import jsonschema   # here, not at the top: a test dependency (the extra "test"), not the host's

        assert run.report.outcome == "completed", run.explain()
        counts = run.report.counts
        if "catalog" in run.provider.info.scopes:
            assert counts.courses_emitted > 0
        if "progress" in run.provider.info.scopes:
            assert counts.stats_emitted > 0
        assert counts.rejected == 0, f"{counts.rejected} records rejected\n{run.explain()}"
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

    # -- record identity -------------------------------------------------------------------------
    def test_record_id_names_each_catalog_item_as_map_course_does(self, run):
        if "catalog" not in run.provider.info.scopes:
            pytest.skip("no catalog scope")
        hooks, ctx = run.provider.hooks, run.context("catalog")
        checked = 0
        for record in run.fetch("catalog"):
            if not isinstance(record, Mapping):
                continue
            try:
                mapped = hooks.map_course(record=record, connection=run.connection, context=ctx)
            except RecordRejected:
                continue
            if mapped is None:
                continue
            rid = scalar_id(hooks.record_id(record=record, scope="catalog"))
            assert rid == mapped.get("external_id"), (
                f"record_id names a catalog item {rid!r} but map_course gives it external_id "
                f"{mapped.get('external_id')!r}: when that item cannot be mapped, the host cannot tell it is "
                f"still listed and removes the course. Implement the record_id hook (or give the id to "
                f"RecordRejected).")
            checked += 1
        assert checked, "no catalog item could be mapped"

    def test_a_catalog_item_that_cannot_be_mapped_is_not_removed(self, run):
        if "catalog" not in run.provider.info.scopes:
            pytest.skip("no catalog scope")
        connection = connection_for(run.provider.name, run.settings, plugins=run.plugins, name="conformance-removal",
                                    catalog_complete_days=0)
        state = StateDB()
        first, report = run.sync(state=state, scope="catalog", connection=connection)
        assert report.outcome == "completed", explain(first, report)
        hooks = _RejectFirst(run.provider.hooks)
        again, report = run.sync(plugins=_OnePlugin(run.provider, hooks), state=state, scope="catalog",
                                 connection=connection)
        removed = [e.data["external_id"] for e in again.of_type(ev.COURSE_REMOVED)]
        letters = again.of_type(ev.RECORD_REJECTED)
        assert letters and letters[0].data["record_id"], (
            "a catalog item refused by map_course got a dead letter without an id: the record_id hook cannot "
            f"name it\n{explain(again, report)}")
        assert not removed, (
            f"a catalog item that could not be mapped ({letters[0].data['record_id']!r}) was taken for gone: "
            f"the next sync removes {removed}, which archives the course in 360Learning. record_id must give "
            f"the item's external_id.")

    # -- fetching --------------------------------------------------------------------------------
    def test_every_page_is_read(self, run):
        expected = getattr(run.sandbox, "expected", None)
        if not expected:
            pytest.skip("the sandbox states no expected counts (SandboxServer.expected)")
        for scope in run.provider.info.scopes:
            got = sum(isinstance(r, Mapping) for r in run.fetch(scope))
            assert got == expected[scope], (
                f"fetch_{scope} yielded {got} records, the sandbox serves {expected[scope]}: read every page "
                f"(hostspec.kit.paging.offset_pages or cursor_pages follow them)")

    def test_since_and_until_are_honoured(self, run):
        if "progress" not in run.provider.info.scopes:
            pytest.skip("no progress scope")
        stats = run.stats(run.fetch("progress"))
        moments = sorted(ev_time for s in stats if (ev_time := _moment(s.get("last_activity_at"))) is not None)
        if len({m.date() for m in moments}) < 4:
            pytest.skip("the sandbox's learner activity spans fewer than 4 days")
        middle = moments[len(moments) // 2]
        day = timedelta(days=1)
        after = run.stats(run.fetch("progress", since=middle))
        assert len(after) < len(stats), (
            f"fetch_progress(since={middle.isoformat()}) yielded {len(after)} of the {len(stats)} stats: since "
            f"is ignored (an incremental sync would fetch everything every day)")
        early = [s for s in after if (m := _moment(s.get("last_activity_at"))) is not None and m < middle - day]
        swapped = swapped_activity(stats)
        assert not (early and swapped), swapped
        assert not early, (
            f"fetch_progress(since={middle.isoformat()}) yielded {len(early)} stats with activity before it: since "
            f"is not applied; first: {early[0]}")
        before = run.stats(run.fetch("progress", until=middle))
        late = [s for s in before if (m := _moment(s.get("last_activity_at"))) is not None and m > middle + day]
        assert not late, (
            f"fetch_progress(until={middle.isoformat()}) yielded {len(late)} stats with activity after it: until is "
            f"ignored (a replay of a window would sync everything); first: {late[0]}")

    def test_a_progress_fetch_resumes_from_a_page_cursor(self, run):
        if "progress" not in run.provider.info.scopes:
            pytest.skip("no progress scope")
        everything = run.fetch("progress")
        cut = next((i for i, r in enumerate(everything) if isinstance(r, PageEnd)), None)
        if cut is None:
            pytest.skip("fetch_progress yields no PageEnd: a long progress sync starts over after a crash")
        cursor = everything[cut].cursor
        json.dumps(cursor)                                      # a cursor is committed as JSON
        rest = [_identity(s) for s in run.stats(everything[cut + 1:])]
        resumed = [_identity(s) for s in run.stats(run.fetch("progress", resume=cursor))]
        assert resumed == rest, (
            f"fetch_progress with context.resume={cursor!r} yielded {len(resumed)} stats, the records after that "
            f"cursor are {len(rest)}: start from context.resume (the cursor of the last PageEnd committed)")

    # -- syncing again -----------------------------------------------------------------------------
    def test_a_second_sync_of_unchanged_data_emits_nothing(self, run):
        state = StateDB()
        first, report = run.sync(state=state)
        again, report2 = run.sync(state=state)
        changed = [e for e in again.events if e.type in (ev.COURSE_UPSERTED, ev.LEARNER_STAT_UPSERTED)]
        if changed:
            before = {e.key: e.data for e in first.events}
            fields = sorted({k for e in changed for k, v in e.data.items()
                             if k != "fingerprint" and before.get(e.key, {}).get(k) != v})
        assert not changed, (
            f"a second sync of the same data emitted {len(changed)} events again; fields that changed: "
            f"{fields}. Mapping must not depend on the time of the sync (use context.now only for as_of).")

    def test_completed_stats_carry_a_completion_date(self, run):
        if "progress" not in run.provider.info.scopes:
            pytest.skip("no progress scope")
        undated = [e for e in run.sink.of_type(ev.RECORD_REJECTED) if "completed_at" in json.dumps(e.data["errors"])]
        assert not undated, (
            f"{len(undated)} completed stats were refused for their completed_at: when the API gives no "
            f"completion date, derive one (the last activity) with provenance 'derived'\n{run.explain()}")
        completed = [e.data for e in run.sink.of_type(ev.LEARNER_STAT_UPSERTED)
                     if e.data["completion_status"] == "completed"]
        if not completed:
            pytest.skip("the sandbox has no completed enrollment")
        assert all(isinstance(s["completed_at"], str) for s in completed)

    def test_golden_records_map_as_expected(self, run):
        golden = type(self).golden
        if golden is None:
            pytest.skip("the provider ships no golden records (provider_test_class(golden=...)); "
                        "add one per unit or scale conversion its mapping does")
        count = check_golden(golden, run.provider.hooks, run.connection, run.context("progress"), run.provider.name)
        assert count, f"no golden records found in {golden}"

    def test_transient_answers_are_retried(self, run):
        if not callable(getattr(run.sandbox, "inject", None)) or getattr(run.sandbox, "faults", None) is None:
            pytest.skip("the sandbox cannot inject faults (SandboxServer.inject)")
        for fault, said in (("429", "429 Too Many Requests (Retry-After: 0)"), ("5xx", "503")):
            run.sandbox.inject(fault, times=2)
            sink, report = run.sync()
            assert report.outcome == run.report.outcome, (
                f"after the sandbox answered {said} twice, the sync ended {report.outcome} instead of "
                f"{run.report.outcome}: retry transient answers with backoff, honouring Retry-After "
                f"(hostspec.kit.retry.retry_policy)\n{explain(sink, report)}")
            assert report.counts.courses_emitted == run.report.counts.courses_emitted
            assert report.counts.stats_emitted == run.report.counts.stats_emitted


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _identity(stat: Mapping[str, Any]) -> tuple[Any, ...]:
    learner = stat.get("learner") or {}
    return stat.get("course_external_id"), learner.get("provider_id") or learner.get("email"), stat.get("attempt_id")


def provider_test_class(plugin: Any, *, name: str | None = None, sandbox_options: Mapping[str, Any] | None = None,
                        settings: Mapping[str, Any] | None = None, waivers: Mapping[str, str] | None = None,
                        golden: Any = None) -> type:
    """A pytest test class checking ``plugin`` (a provider module or object).

    :param name: the provider's name, when the plugin object holds several (rare).
    :param sandbox_options: passed to the provider's ``start_sandbox`` hook.
    :param settings: connection settings to use instead of a sandbox (a recorded-fixture server,
        a test account); secrets may be plain strings here.
    :param waivers: heuristic checks this provider's API legitimately fails, each with the reason
        (``{"full_progress_completed": "100 % means watched, not passed"}``); the names are
        :data:`hostspec.kit.conformance.meaning.WAIVABLE`.
    :param golden: a golden-records file or folder (``Path(__file__).parent / "golden"``):
        raw records with the normalized result expected (:mod:`hostspec.kit.golden`).
    """
    label = (name or getattr(plugin, "__name__", "provider")).rsplit(".", 1)[-1]
    return type(f"Test{label.title().replace('_', '')}Conformance", (ProviderConformance,),
                {"plugin": plugin, "provider_name": name, "sandbox_options": dict(sandbox_options or {}),
                 "settings": None if settings is None else dict(settings), "waivers": dict(waivers or {}),
                 "golden": None if golden is None else str(golden),
                 "__test__": True})


__all__ = ["ProviderConformance", "connection_for", "explain", "open_run", "provider_test_class"]
