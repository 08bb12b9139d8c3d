"""Change detection, removals, incremental progress and replays, end to end against the sandbox."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.sinks import MemorySink
from hostspec.engine.state import StateDB
from tests.conftest import sandbox_connection


class Syncer:
    """Runs successive syncs of one connection with one persistent state."""

    def __init__(self, plugins, connection, tmp_path, **engine_kw):
        self.plugins, self.connection = plugins, connection
        self.state = StateDB(tmp_path / "state.sqlite")
        self.engine_kw = engine_kw
        self.n = 0

    def __call__(self, scope="all", **request_kw):
        self.n += 1
        sink = MemorySink()
        engine = SyncEngine(self.plugins, sink, state=self.state, **{"batch_size": 17, **self.engine_kw})
        report = engine.run(SyncRequest(f"req-{self.n}", self.connection.name, "coursera", scope, **request_kw),
                            self.connection)
        return report, sink


def control(sb, path, body=None):
    r = requests.post(sb.url + "/_sandbox" + path, json=body or {}, timeout=5)
    assert r.ok, r.text
    return r.json()


def test_second_sync_of_unchanged_sandbox_emits_nothing(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    first, _ = sync()
    assert first.counts.courses_emitted == 30 and first.counts.stats_emitted == len(sandbox.report_rows())
    second, sink = sync(mode="incremental")
    assert sink.of_type(ev.COURSE_UPSERTED) == [] and sink.of_type(ev.LEARNER_STAT_UPSERTED) == []
    final = sink.of_type(ev.SYNC_STATUS)[-1].data
    assert final["phase"] == "completed" and final["counts"]["courses_unchanged"] == 30
    assert final["counts"]["courses_emitted"] == final["counts"]["stats_emitted"] == 0


def test_changing_n_items_emits_exactly_n(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    sync()
    contents = sandbox.org.visible_contents(clips=False)
    changed = {c["contentId"] for c in contents[:3]}
    for cid in changed:
        control(sandbox, f"/contents/{cid}/modify", {"changes": {"name": f"Renamed {cid}"}})
    rows = [sandbox.org.row(i) for i in sandbox.report_rows()[:4]]
    for row in rows:
        control(sandbox, f"/learners/{row['externalId']}/progress", {"contentId": row["contentId"], "complete": True})
    report, sink = sync()
    assert {e.data["external_id"] for e in sink.of_type(ev.COURSE_UPSERTED)} == changed
    stats = sink.of_type(ev.LEARNER_STAT_UPSERTED)
    assert sorted((e.data["course_external_id"], e.data["learner"]["provider_id"]) for e in stats) == \
        sorted((r["contentId"], r["externalId"]) for r in rows)
    assert all(e.data["completion_status"] == "completed" for e in stats)
    assert report.counts.courses_unchanged == 27


def test_incremental_progress_asks_only_for_recent_activity_with_lookback(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path, lookback=timedelta(hours=48))
    requests.delete(sandbox.url + "/_sandbox/requests", timeout=5)
    first, _ = sync("progress")
    second, _ = sync("progress")
    log = [r for r in requests.get(sandbox.url + "/_sandbox/requests", timeout=5).json()
           if r["path"].endswith("/enrollmentReports")]
    assert "lastActivityAfter" not in log[0]["query"]       # first sync: everything
    after = [r["query"] for r in log if "lastActivityAfter" in r["query"]]
    assert after, "the second sync must filter by last activity"
    sent_ms = int(after[0].split("lastActivityAfter=")[1].split("&")[0])
    started_ms = int(first.started_at.timestamp() * 1000)
    assert started_ms - 48 * 3600_000 - 5000 <= sent_ms <= started_ms - 48 * 3600_000 + 5000


def test_the_look_back_is_a_setting_of_the_connection(sandbox, plugins, tmp_path):
    connection = sandbox_connection(sandbox, plugins, progress_lookback_hours=120)
    sync = Syncer(plugins, connection, tmp_path, lookback=timedelta(hours=48))
    first, _ = sync("progress")
    requests.delete(sandbox.url + "/_sandbox/requests", timeout=5)
    sync("progress")
    sent = _report_queries(sandbox)[0]
    sent_ms = int(sent.split("lastActivityAfter=")[1].split("&")[0])
    started_ms = int(first.started_at.timestamp() * 1000)
    assert abs(sent_ms - (started_ms - 120 * 3600_000)) <= 5000


def _report_queries(sb):
    return [r["query"] for r in requests.get(sb.url + "/_sandbox/requests", timeout=5).json()
            if r["path"].endswith("/enrollmentReports")]


def _a_new_enrollment(sb):
    """A learner and a course of the sandbox without an enrollment between them."""
    learner = sb.org.learner(0)["externalId"]
    course = next(c["contentId"] for c in sb.org.visible_contents(clips=False)
                  if c["contentType"] == "Course" and sb.org.row_index(learner, c["contentId"]) is None)
    return learner, course


def test_an_enrollment_without_any_activity_reaches_the_next_incremental_sync(sandbox, plugins, tmp_path):
    """An activity filter leaves out rows that never had any activity: the incremental fetch also
    asks for the enrollments made since (issue 15)."""
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path, lookback=timedelta(hours=48))
    sync("progress")
    learner, course = _a_new_enrollment(sandbox)
    control(sandbox, f"/learners/{learner}/enroll", {"contentId": course})
    report, sink = sync("progress")
    stats = [e.data for e in sink.of_type(ev.LEARNER_STAT_UPSERTED)]
    assert [(s["course_external_id"], s["learner"]["provider_id"], s["completion_status"]) for s in stats] == \
        [(course, learner, "not_started")]
    assert report.outcome == "completed"


def test_a_run_resumed_in_the_enrollment_pass_does_not_list_the_activity_pass_again(sandbox, plugins, tmp_path):
    from connector_coursera import plugin
    from hostspec.provider import PageEnd, SyncContext

    connection = sandbox_connection(sandbox, plugins, page_size=2)
    since = datetime(2000, 1, 1, tzinfo=timezone.utc)       # before every row (the epoch itself needs no bound)
    context = SyncContext(run_id="r", request_id="q", scope="progress", now=datetime.now(timezone.utc),
                          resume=None)
    items = list(plugin.fetch_progress(connection=connection, context=context, since=since, until=None))
    cursors = [i.cursor for i in items if isinstance(i, PageEnd)]
    assert "enrolled:0" in cursors and cursors[-1] == f"enrolled:{len(sandbox.report_rows()) - 2}"
    requests.delete(sandbox.url + "/_sandbox/requests", timeout=5)
    resumed = SyncContext(run_id="r2", request_id="q", scope="progress", now=context.now, resume="enrolled:4")
    rows = [i for i in plugin.fetch_progress(connection=connection, context=resumed, since=since, until=None)
            if isinstance(i, dict)]
    # the enrollment pass yields the rows without activity (those with activity are the first pass's)
    quiet = [i for i in sandbox.report_rows()[4:] if sandbox.org.row(i).get("lastActivityAt") is None]
    assert len(rows) == len(quiet) > 0 and all(r.get("lastActivityAt") is None for r in rows)
    assert all("enrollAtAfter" in q and "lastActivityAfter" not in q for q in _report_queries(sandbox))


def test_full_mode_re_emits_everything(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    sync("catalog")
    report, sink = sync("catalog", mode="full")
    assert len(sink.of_type(ev.COURSE_UPSERTED)) == 30 and report.counts.courses_unchanged == 0


def test_removed_items_yield_exactly_those_removals(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    sync("catalog")
    gone = [c["contentId"] for c in sandbox.org.visible_contents(clips=False)[5:8]]
    for cid in gone:
        control(sandbox, f"/contents/{cid}/remove")
    report, sink = sync("catalog")
    removed = sink.of_type(ev.COURSE_REMOVED)
    assert sorted(e.data["external_id"] for e in removed) == sorted(gone)
    assert all(e.data["reason"] == "not_in_catalog" and e.data["last_seen_at"] for e in removed)
    assert report.counts.courses_removed == 3
    _, again = sync("catalog")
    assert again.of_type(ev.COURSE_REMOVED) == []  # removed once, not every day


def test_a_sync_failing_halfway_through_the_catalog_removes_nothing(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins, page_size=10, max_attempts=2), tmp_path)
    sync("catalog")
    control(sandbox, f"/contents/{sandbox.org.visible_contents(clips=False)[0]['contentId']}/remove")
    control(sandbox, "/faults", {"route": "*/contents", "action": "status_5xx", "status": 503, "times": None,
                                 "after_n_calls": 1})
    report, sink = sync("catalog")
    assert report.outcome == "failed" and sink.of_type(ev.COURSE_REMOVED) == []


def test_an_unreadable_catalog_record_is_not_a_removal(plugins, tmp_path):
    with CourseraSandbox(OrgSpec(contents=12, learners=4, enrollments=10)) as sb:
        sync = Syncer(plugins, sandbox_connection(sb, plugins), tmp_path)
        sync("catalog")
        control(sb, "/faults", {"route": "*/contents", "action": "missing_field", "field": "name"})
        report, sink = sync("catalog")
    assert report.counts.rejected == 12 and sink.of_type(ev.COURSE_REMOVED) == []


def test_dry_run_counts_but_emits_only_status_and_keeps_no_state(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    report, sink = sync(dry_run=True)
    assert {e.type for e in sink.events} == {ev.SYNC_STATUS}
    assert sink.events[-1].data["dry_run"] is True and report.counts.courses_emitted == 30
    real, real_sink = sync()
    assert len(real_sink.of_type(ev.COURSE_UPSERTED)) == 30  # the dry run remembered nothing


def test_replay_of_a_subset_and_a_date_range(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    sync()
    row = sandbox.org.row(sandbox.report_rows()[0])
    _, sink = sync("progress", mode="full", learners=(row["externalId"],))
    learners = {e.data["learner"]["provider_id"] for e in sink.of_type(ev.LEARNER_STAT_UPSERTED)}
    assert learners == {row["externalId"]}
    course = sandbox.org.visible_contents(clips=False)[0]["contentId"]
    report, sink = sync("catalog", mode="full", courses=(course,))
    assert [e.data["external_id"] for e in sink.of_type(ev.COURSE_UPSERTED)] == [course]
    assert report.counts.courses_removed == 0  # a subset never removes anything
    from datetime import datetime, timezone
    req_since = datetime(2025, 3, 1, tzinfo=timezone.utc)
    requests.delete(sandbox.url + "/_sandbox/requests", timeout=5)
    sync("progress", mode="full", since=req_since, until=req_since + timedelta(days=30))
    queries = [r["query"] for r in requests.get(sandbox.url + "/_sandbox/requests", timeout=5).json()]
    since_ms, until_ms = int(req_since.timestamp() * 1000), int((req_since + timedelta(days=30)).timestamp() * 1000)
    # [since, until): the exclusive lower bound one millisecond before since, the exclusive upper one at until
    assert any(f"lastActivityAfter={since_ms - 1}&lastActivityBefore={until_ms}" in q for q in queries), queries


def test_completion_never_regresses_and_a_retake_is_a_new_attempt(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    i = next(i for i in sandbox.report_rows() if sandbox.org.row(i)["isCompleted"]
             and sandbox.org.row(i)["contentType"] == "Course")
    row = sandbox.org.row(i)
    sync("progress")
    # the provider now reports the same enrollment as incomplete (a glitch): completion is kept
    sandbox.org.progress_overrides[i] = {"isCompleted": False, "overallProgress": 30, "completedAt": None,
                                         "updatedAt": row["updatedAt"] + 1}
    _, sink = sync("progress", mode="full", learners=(row["externalId"],), courses=(row["contentId"],))
    (kept,) = sink.of_type(ev.LEARNER_STAT_UPSERTED)
    assert kept.data["completion_status"] == "completed" and kept.data["progress_percent"] == 100
    assert kept.data["provenance"]["completion_status"] == "retained"
    # a retake: a new enrollment date is a new attempt, the old one is not overwritten
    sandbox.org.progress_overrides[i] = {"isCompleted": False, "overallProgress": 10, "completedAt": None,
                                         "enrolledAt": row["enrolledAt"] + 86_400_000 * 400,
                                         "lastActivityAt": row["enrolledAt"] + 86_400_000 * 401}
    _, sink = sync("progress", mode="full", learners=(row["externalId"],), courses=(row["contentId"],))
    (retake,) = sink.of_type(ev.LEARNER_STAT_UPSERTED)
    assert retake.data["attempt_id"] != kept.data["attempt_id"]
    assert retake.data["completion_status"] == "in_progress"


def test_a_crashed_run_resumes_from_its_last_committed_page(sandbox, plugins, tmp_path):
    from hostspec.errors import RunAbandoned

    connection = sandbox_connection(sandbox, plugins, page_size=10)
    state = StateDB(tmp_path / "s.sqlite")
    calls = {"n": 0}

    def stop_after_35():
        calls["n"] += 1
        return calls["n"] > 35

    request = SyncRequest("req-crash", connection.name, "coursera", "progress")
    first_sink = MemorySink()
    try:
        # checkpoints by count only (batch_seconds out of reach): on a busy machine a 10 s pause
        # would add one at a page end and move where the redo starts
        SyncEngine(plugins, first_sink, state=state, batch_size=10, batch_seconds=3600,
                   should_stop=stop_after_35).run(request, connection)
        raise AssertionError("the run should have been abandoned")
    except RunAbandoned:
        pass
    sent_before_crash = {e.data["attempt_id"] for e in first_sink.of_type(ev.LEARNER_STAT_UPSERTED)}
    requests.delete(sandbox.url + "/_sandbox/requests", timeout=5)
    sink = MemorySink()
    report = SyncEngine(plugins, sink, state=state, batch_size=10, batch_seconds=3600).run(request, connection)
    starts = [r["query"] for r in requests.get(sandbox.url + "/_sandbox/requests", timeout=5).json()
              if r["path"].endswith("/enrollmentReports")]
    # Checkpoints fell after records 10, 20 and 30; the cursor committed with record 30 is the end of
    # page 2 (page 3's end marker comes after its last record), so the redo starts at 20 and finds
    # records 21-30 already delivered: their fingerprints make them "unchanged", not duplicates.
    assert "start=20" in starts[0], starts[0]
    assert all("start=0&" not in q and "start=10&" not in q for q in starts)
    again = {e.data["attempt_id"] for e in sink.of_type(ev.LEARNER_STAT_UPSERTED)}
    total = len(sandbox.report_rows())
    assert report.outcome == "completed" and report.counts.stats_unchanged == 10
    assert len(sent_before_crash) == 36  # 30 committed, 6 in the batch the crash threw away
    assert len(again) == total - 30 and len(sent_before_crash | again) == total


def test_many_removals_across_checkpoints(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    sync("catalog")
    gone = [c["contentId"] for c in sandbox.org.visible_contents(clips=False)[:25]]
    for cid in gone:
        control(sandbox, f"/contents/{cid}/remove")
    sync.engine_kw["batch_size"] = 3  # removals are committed over several checkpoints
    held, _ = sync("catalog")         # 25 of 30 at once: the removal guard holds them
    assert held.counts.removals_held == 25 and sync.state.count(kind="course") == 30
    report, sink = sync("catalog", allow_mass_removal=True)
    assert sorted(e.data["external_id"] for e in sink.of_type(ev.COURSE_REMOVED)) == sorted(gone)
    assert sync.state.count(kind="course") == 5


def test_a_dry_run_counts_only_the_real_removals(sandbox, plugins, tmp_path):
    """A dry run used to report every course in state as removed (its seen marks were rolled back)."""
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    sync("catalog")
    gone = sandbox.org.visible_contents(clips=False)[0]["contentId"]
    control(sandbox, f"/contents/{gone}/remove")
    report, sink = sync("catalog", dry_run=True)
    assert report.counts.courses_removed == 1 and sink.of_type(ev.COURSE_REMOVED) == []
    real, real_sink = sync("catalog")
    assert [e.data["external_id"] for e in real_sink.of_type(ev.COURSE_REMOVED)] == [gone]


def test_state_stays_bounded_request_ids_expire_and_a_removed_course_takes_its_stats(sandbox, plugins, tmp_path):
    from datetime import datetime, timezone

    from hostspec.engine.emit import REQUEST_DONE

    now = [datetime(2026, 12, 1, tzinfo=timezone.utc)]
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path, clock=lambda: now[0],
                  request_memory=timedelta(days=7))
    scope = sync.connection.state_scope
    sync()
    markers = lambda: sorted(sync.state.checkpoints_with_prefix(scope, REQUEST_DONE))  # noqa: E731
    assert markers() == [f"{REQUEST_DONE}req-1"]
    now[0] += timedelta(days=3)
    sync("catalog")
    assert markers() == [f"{REQUEST_DONE}req-1", f"{REQUEST_DONE}req-2"]
    now[0] += timedelta(days=5)                        # req-1 is 8 days old, req-2 5 days
    sync("catalog")
    assert markers() == [f"{REQUEST_DONE}req-2", f"{REQUEST_DONE}req-3"]
    course = next(c for c in sandbox.org.visible_contents(clips=False)
                  if sync.state.with_prefix(scope, "stat", f"{c['contentId']}/"))["contentId"]
    stats_before = sync.state.count(scope, "stat")
    of_course = len(sync.state.with_prefix(scope, "stat", f"{course}/"))
    control(sandbox, f"/contents/{course}/remove")
    sync("catalog")
    assert sync.state.with_prefix(scope, "stat", f"{course}/") == []
    assert sync.state.count(scope, "stat") == stats_before - of_course > 0


# -- the removal guard against the sandbox's listing faults (issue 15) -----------------------------------
@pytest.mark.parametrize("fault, why", [
    ({"action": "truncated_listing", "after_n_calls": 1}, "held 20 items but the provider counts 29"),  # page 2 ends it
    ({"action": "empty_listing"}, "held 0 items but the provider counts 29"),
    ({"action": "wrong_total", "delta": 3}, "held 29 items but the provider counts 32"),
])
def test_a_short_empty_or_disagreeing_listing_removes_nothing(sandbox, plugins, tmp_path, fault, why):
    """One course really gone as well: with a listing that cannot be trusted, not even it is removed."""
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins, page_size=10), tmp_path)
    assert sync("catalog")[0].outcome == "completed"
    control(sandbox, f"/contents/{sandbox.org.visible_contents(clips=False)[-1]['contentId']}/remove")
    control(sandbox, "/faults", {"route": "*/contents", "times": None, **fault})
    report, sink = sync("catalog")
    assert sink.of_type(ev.COURSE_REMOVED) == [] and report.outcome == "partial" and why in report.warning["message"]
    assert sink.of_type(ev.SYNC_STATUS)[-1].data["counts"]["removals_held"] == report.counts.removals_held > 0


def test_with_the_listing_healthy_again_a_real_removal_of_ten_percent_passes(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins, page_size=10), tmp_path)
    sync("catalog")
    gone = [c["contentId"] for c in sandbox.org.visible_contents(clips=False)[:3]]
    for cid in gone:
        control(sandbox, f"/contents/{cid}/remove")
    report, sink = sync("catalog")
    assert sorted(e.data["external_id"] for e in sink.of_type(ev.COURSE_REMOVED)) == sorted(gone)
    assert report.outcome == "completed" and report.counts.removals_held == 0


def test_a_grade_changed_without_new_activity_is_caught_by_the_weekly_full_sync(sandbox, plugins, tmp_path):
    """Late manual grading does not move lastActivityAt: incremental syncs never see it, the weekly
    full sync of the default schedule does (issue 15)."""
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path, lookback=timedelta(hours=48))
    sync("progress")
    graded = next(i for i in sandbox.report_rows() if sandbox.org.row(i).get("isCompleted"))
    row = sandbox.org.row(graded)
    sandbox.org.progress_overrides[graded] = {"grade": 0.991}        # lastActivityAt unchanged (long ago)
    _, incremental = sync("progress")
    key = (row["contentId"], row["externalId"])
    seen = [e for e in incremental.of_type(ev.LEARNER_STAT_UPSERTED)
            if (e.data["course_external_id"], e.data["learner"]["provider_id"]) == key]
    assert seen == []                                                # the blind spot, as documented
    _, weekly = sync("progress", mode="full")
    changed = [e for e in weekly.of_type(ev.LEARNER_STAT_UPSERTED)
               if (e.data["course_external_id"], e.data["learner"]["provider_id"]) == key]
    assert [e.data["score_percent"] for e in changed] == [99.1]


def test_an_incremental_catalog_fetches_only_the_changes_and_removes_at_the_next_complete_listing(plugins, tmp_path):
    """10,000 items, 10 changed and 1 removed: the daily listing asks for the changes only; the
    removal waits for the next complete listing (issue 15)."""
    with CourseraSandbox(OrgSpec(contents=10_000, learners=2, enrollments=2)) as sb:
        sync = Syncer(plugins, sandbox_connection(sb, plugins, catalog_complete_days=7, page_size=1000), tmp_path)
        first, _ = sync("catalog")
        items = sb.org.visible_contents(clips=False)
        assert first.counts.courses_emitted == len(items) >= 9_000
        changed = [c["contentId"] for c in items[100:110]]
        for cid in changed:
            control(sb, f"/contents/{cid}/modify", {"changes": {"description": f"New text of {cid}"}})
        gone = items[5000]["contentId"]
        control(sb, f"/contents/{gone}/remove")
        requests.delete(sb.url + "/_sandbox/requests", timeout=5)
        daily, sink = sync("catalog")
        calls = [r for r in requests.get(sb.url + "/_sandbox/requests", timeout=5).json()
                 if r["path"].endswith("/contents")]
        assert len(calls) == 1 and "modifiedSinceTimestamp=" in calls[0]["query"]
        assert sorted(e.data["external_id"] for e in sink.of_type(ev.COURSE_UPSERTED)) == sorted(changed)
        assert sink.of_type(ev.COURSE_REMOVED) == [] and daily.outcome == "completed"
        weekly, sink = sync("catalog", mode="full")
        assert [e.data["external_id"] for e in sink.of_type(ev.COURSE_REMOVED)] == [gone]
        assert weekly.counts.courses_removed == 1


def test_a_skillset_in_the_catalog_is_skipped_and_counted_not_dead_lettered(sandbox, plugins, tmp_path):
    sync = Syncer(plugins, sandbox_connection(sandbox, plugins), tmp_path)
    sync("catalog")
    item = sandbox.org.visible_contents(clips=False)[0]
    control(sandbox, f"/contents/{item['contentId']}/modify", {"changes": {"contentType": "SkillSet"}})
    report, sink = sync("catalog")
    assert report.counts.skipped == 1 and sink.of_type(ev.RECORD_REJECTED) == []
    assert sink.of_type(ev.COURSE_REMOVED) == []          # present at the provider: not a removal either
