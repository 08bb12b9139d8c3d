"""Full syncs through the engine against the sandbox over real HTTP, with faults switched on."""
from __future__ import annotations

import logging

import pytest
import requests

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.sinks import MemorySink
from tests.conftest import sandbox_connection


def sync(plugins, connection, scope="all"):
    sink = MemorySink()
    report = SyncEngine(plugins, sink).run(SyncRequest("req", connection.name, "coursera", scope), connection)
    return report, sink


def faults(sb, *rules):
    r = requests.post(sb.url + "/_sandbox/faults", json=list(rules), timeout=5)
    assert r.status_code == 201, r.text


def test_clean_sync_yields_one_event_per_item_and_row(sandbox, plugins, connection):
    report, sink = sync(plugins, connection)
    assert report.outcome == "completed"
    assert len(sink.of_type(ev.COURSE_UPSERTED)) == sandbox.catalog_size() == 30
    assert len(sink.of_type(ev.LEARNER_STAT_UPSERTED)) == len(sandbox.report_rows()) > 0
    course_ids = {e.data["external_id"] for e in sink.of_type(ev.COURSE_UPSERTED)}
    assert {e.data["course_external_id"] for e in sink.of_type(ev.LEARNER_STAT_UPSERTED)} <= course_ids


def test_sync_survives_faults_and_delivers_everything(sandbox, plugins):
    connection = sandbox_connection(sandbox, plugins, page_size=10)
    faults(sandbox,
           {"route": "*/contents", "action": "status_429", "times": 2, "retry_after": "0"},
           {"route": "*/contents", "action": "status_5xx", "status": 502, "body": "html", "after_n_calls": 1},
           {"route": "*/enrollmentReports", "action": "expire_token", "after_n_calls": 2},
           {"route": "*/enrollmentReports", "action": "malformed_json", "after_n_calls": 3},
           {"route": "*/enrollmentReports", "action": "status_429", "retry_after": "http-date:0"},
           {"route": "*/enrollmentReports", "action": "latency", "delay_s": 0.2, "after_n_calls": 5})
    report, sink = sync(plugins, connection)
    assert report.outcome == "completed", report.error
    assert len(sink.of_type(ev.COURSE_UPSERTED)) == 30
    assert len(sink.of_type(ev.LEARNER_STAT_UPSERTED)) == len(sandbox.report_rows())
    rules = requests.get(sandbox.url + "/_sandbox/faults", timeout=5).json()
    assert [(r["action"], r["fired"]) for r in rules] == [
        ("status_429", 2), ("status_5xx", 1), ("expire_token", 1), ("malformed_json", 1),
        ("status_429", 1), ("latency", 1)]


def test_broken_records_are_rejected_and_the_rest_delivered(plugins):
    with CourseraSandbox(OrgSpec(contents=30, learners=20, enrollments=90, broken_every=6)) as sb:
        report, sink = sync(plugins, sandbox_connection(sb, plugins))
        rows = len(sb.report_rows())
    assert report.outcome == "partial"
    rejected = sink.of_type(ev.RECORD_REJECTED)
    broken_contents = 30 // 6
    assert len(sink.of_type(ev.COURSE_UPSERTED)) == 30 - broken_contents
    assert len(sink.of_type(ev.COURSE_UPSERTED)) + len(sink.of_type(ev.LEARNER_STAT_UPSERTED)) + len(rejected) == 30 + rows
    assert all(r.data["record_id"] and r.data["errors"] for r in rejected)
    assert {"name"} in [set(r.data["errors"]) for r in rejected]
    assert {"enrolledAt"} in [set(r.data["errors"]) for r in rejected]


def test_missing_field_fault_rejects_that_page_only(sandbox, plugins):
    connection = sandbox_connection(sandbox, plugins, page_size=10)
    faults(sandbox, {"route": "*/enrollmentReports", "action": "missing_field", "field": "isCompleted"})
    report, sink = sync(plugins, connection, scope="progress")
    rows = len(sandbox.report_rows())
    assert report.outcome == "partial"
    assert len(sink.of_type(ev.RECORD_REJECTED)) == 10
    assert len(sink.of_type(ev.LEARNER_STAT_UPSERTED)) == rows - 10


@pytest.mark.parametrize("rule, kind", [
    ({"route": "*/contents", "action": "forbidden"}, "provider_config"),
    ({"route": "*/contents", "action": "status_5xx", "status": 503, "times": None}, "provider_transient"),
    ({"route": "*/contents", "action": "repeat_cursor", "after_n_calls": 1, "times": None}, "provider_system"),
])
def test_unrecoverable_faults_fail_the_run_with_a_typed_error(sandbox, plugins, rule, kind):
    connection = sandbox_connection(sandbox, plugins, page_size=10, max_attempts=2)
    faults(sandbox, rule)
    report, sink = sync(plugins, connection, scope="catalog")
    assert report.outcome == "failed" and report.error["kind"] == kind
    assert sink.of_type(ev.SYNC_STATUS)[-1].data["phase"] == "failed"


def test_no_secret_in_logs_events_or_errors(plugins, caplog):
    secret = "Zq-very-distinctive-client-secret-9"
    with CourseraSandbox(OrgSpec(contents=8, learners=5, enrollments=20, broken_every=4), client_secret=secret) as sb:
        good = sandbox_connection(sb, plugins)
        bad = sandbox_connection(sb, plugins, client_secret="Wrong-but-also-secret-77")
        with caplog.at_level(logging.DEBUG):
            faults(sb, {"route": "*/contents", "action": "status_429", "retry_after": "0"})
            _, ok_sink = sync(plugins, good)
            bad_report, bad_sink = sync(plugins, bad)
            plugins.provider("coursera").hooks.check_connection(connection=bad, context=None)
    assert bad_report.outcome == "failed" and bad_report.error["kind"] == "provider_config"
    texts = [caplog.text, repr(good), repr(bad), str(bad_report.error)]
    texts += [e.to_json() for e in ok_sink.events + bad_sink.events]
    for text in texts:
        assert secret not in text and "Wrong-but-also-secret-77" not in text


def test_regression_a_page_repeating_its_cursor_once_does_not_fail_the_sync(sandbox, plugins):
    """Before the reliability campaign, one stale page (next = its own start) failed the run."""
    connection = sandbox_connection(sandbox, plugins, page_size=10)
    faults(sandbox, {"route": "*/contents", "action": "repeat_cursor", "after_n_calls": 1, "times": 1})
    report, sink = sync(plugins, connection, scope="catalog")
    assert report.outcome == "completed" and len(sink.of_type(ev.COURSE_UPSERTED)) == sandbox.catalog_size()
