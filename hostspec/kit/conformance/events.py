"""Conformance checks of a full sync's events: valid against the schemas, no secret, deterministic
ids, rejections instead of crashes, pure mapping, and record ids that name what ``map_course`` maps.

Mixed into :class:`hostspec.kit.testing.ProviderConformance` (``run``: :class:`hostspec.kit.conformance.run.Run`).
"""
from __future__ import annotations

import json
import logging
from typing import Mapping

import pytest

from hostspec import events as ev
from hostspec import rules
from hostspec.contracts import event_schema
from hostspec.engine.sinks import MemorySink
from hostspec.engine.state import StateDB
from hostspec.errors import RecordRejected, scalar_id
from hostspec.kit.conformance.explain import explain
from hostspec.kit.conformance.run import OnePlugin, RejectFirst, connection_for


class EventChecks:
    """The events of a full sync, and the identity of catalog records."""

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
        hooks = RejectFirst(run.provider.hooks)
        again, report = run.sync(plugins=OnePlugin(run.provider, hooks), state=state, scope="catalog",
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
