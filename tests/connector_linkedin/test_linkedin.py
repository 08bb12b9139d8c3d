"""LinkedIn Learning: mapping of assets and report rows, the client against its sandbox."""
from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest
import requests

from connector_linkedin.client import LinkedInClient
from connector_linkedin.mapping import course_from_asset, stat_from_report
from connector_linkedin.report_windows import DAY_MS, day_floor, plan
from connector_linkedin.sandbox import LinkedInSandbox, LinkedInSpec
from connector_linkedin.settings import LinkedInSettingsSchema
from hostspec import ProviderConfigError, RecordRejected
from hostspec.config.connections import connection_from_settings
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.sinks import MemorySink

NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)


@pytest.fixture
def sandbox():
    with LinkedInSandbox(LinkedInSpec(courses=6, learners=5, activities=20)) as sb:
        yield sb


def settings(sb, **over):
    return LinkedInSettingsSchema().load({**sb.settings, "page_size": 4, "max_retry_after_s": 1.5, **over})


def test_asset_maps_to_a_course(sandbox):
    asset = sandbox.asset(0)
    course = course_from_asset(asset)
    assert course["external_id"] == "urn:li:lyndaCourse:100000"
    assert course["title"] == asset["title"]["value"] and course["launch_url"].startswith("https://www.linkedin.com/")
    assert course["duration_minutes"] == -(-asset["details"]["timeToComplete"]["duration"] // 60)
    assert course["difficulty_level"] == asset["details"]["level"].lower()
    assert [s["name"] for s in course["skills"]] == [asset["details"]["classifications"][0]
                                                     ["associatedClassification"]["name"]["value"]]
    assert course["sources"][0]["name"] == "LinkedIn Learning" and course["language"] == "en"


@pytest.mark.parametrize("breakage, field", [
    (lambda a: a.pop("urn"), "urn"), (lambda a: a["title"].pop("value"), "title"),
    (lambda a: a["details"]["urls"].update(webLaunch="http://insecure"), "details.urls.webLaunch")])
def test_unreadable_assets_are_rejected_with_the_field(sandbox, breakage, field):
    asset = copy.deepcopy(sandbox.asset(1))
    breakage(asset)
    with pytest.raises(RecordRejected) as info:
        course_from_asset(asset)
    assert field in info.value.messages


def test_report_row_maps_to_a_stat_with_provenance(sandbox):
    completed = next(r for r in (sandbox.row(i) for i in range(20))
                     if any(a["engagementType"] == "COMPLETIONS" for a in r["activities"]))
    stat = stat_from_report(completed, now=NOW)
    assert (stat["completion_status"], stat["progress_percent"], stat["provenance"]["completed_at"]) == \
           ("completed", 100.0, "native")
    assert stat["learner"]["email"] == completed["learnerDetails"]["email"]
    assert stat["time_spent_seconds"] == completed["activities"][0]["engagementValue"]
    assert stat["score_percent"] is None and stat["provenance"]["score_percent"] == "absent"
    partial = copy.deepcopy(completed)
    partial["activities"] = [a for a in partial["activities"] if a["engagementType"] != "COMPLETIONS"]
    partial["activities"][1]["engagementValue"] = 40
    stat = stat_from_report(partial, now=NOW)
    assert (stat["completion_status"], stat["progress_percent"], stat["completed_at"]) == ("in_progress", 40.0, None)
    with pytest.raises(RecordRejected):
        stat_from_report({"learnerDetails": {}, "contentDetails": {"contentUrn": "urn:li:lyndaCourse:1"}}, now=NOW)


def test_report_windows_are_whole_days_history_once_then_day_by_day():
    day = day_floor(NOW)
    windows, horizon = plan(None, None, NOW, 30, None)          # a first sync: history, then the recent days
    assert [(w.kind, w.days) for w in windows] == [("history", 27), ("day", 1), ("day", 1), ("day", 1), ("day", 1)]
    assert windows[0].start_ms == day - 30 * DAY_MS and horizon == windows[1].start_ms == day - 3 * DAY_MS
    assert windows[-1].end_ms == day + DAY_MS
    since = datetime(2026, 11, 26, 13, tzinfo=timezone.utc)      # incremental: day by day from since's day
    windows, kept = plan(since, None, NOW, 30, horizon)
    assert kept == horizon and [w.kind for w in windows] == ["day"] * 3 and windows[0].start_ms == day - 2 * DAY_MS
    windows, _ = plan(datetime(2026, 10, 1, tzinfo=timezone.utc), None, NOW, 30, horizon)   # a replay before it
    assert [w.kind for w in windows][:1] == ["listing"] and windows[0].end_ms == horizon
    assert [w.days for w in plan(None, None, NOW, 4000, None)[0][:2]] == [365, 365]   # long history in parts


def test_client_pages_retries_and_renews_its_token(sandbox):
    requests.post(sandbox.url + "/_sandbox/faults", timeout=5, json=[
        {"action": "status_429", "route": "/v2/learningAssets", "retry_after": "1", "times": 1},
        {"action": "status_5xx", "route": "/v2/learningAssets", "status": 502, "times": 1},
        {"action": "expire_token", "route": "/v2/learningAssets", "after_n_calls": 1, "times": 1}])
    waits = []
    with LinkedInClient(settings(sandbox), sleep=waits.append) as client:
        assets = [a for a in client.assets() if isinstance(a, dict)]   # the paging markers aside
    assert [a["urn"] for a in assets] == [sandbox.asset(n)["urn"] for n in range(6)]
    assert 1.0 in waits and len(waits) == 2                           # Retry-After honoured, 502 backed off
    assert sum(r["path"] == "/oauth/v2/accessToken" for r in sandbox.requests) == 2


def test_wrong_secret_is_a_configuration_error_without_the_secret(sandbox):
    with pytest.raises(ProviderConfigError) as info:
        with LinkedInClient(settings(sandbox, client_secret="Wrong-li-secret-123")) as client:
            list(client.assets())
    assert "Wrong-li-secret" not in str(info.value)


def test_sync_end_to_end_and_incremental_window(sandbox, plugins):
    connection = connection_from_settings("li", "linkedin_learning", {**sandbox.settings, "page_size": 7}, plugins)
    sink = MemorySink()
    report = SyncEngine(plugins, sink).run(SyncRequest("r", "li", "linkedin_learning", "all"), connection)
    assert report.outcome == "completed" and report.counts.courses_emitted == 6
    assert report.counts.stats_emitted == len(sandbox.rows_between(0, 2**62)) == 20
    recent = SyncEngine(plugins, MemorySink()).run(
        SyncRequest("r2", "li", "linkedin_learning", "progress", since=datetime(2026, 10, 1, tzinfo=timezone.utc)),
        connection)
    assert 0 < recent.counts.stats_emitted < 20
