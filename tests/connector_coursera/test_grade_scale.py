"""Coursera's ``grade`` on either scale (0–1 as the spec's example, 0–100 as the gradebook's), read
per page, end to end over the sandbox; and no time spent read from a field the spec does not name."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from marshmallow import ValidationError

from connector_coursera import grade_scale
from connector_coursera.api_schemas import ENROLLMENT_REPORT, fast_report
from connector_coursera.mapping import stat_from_report
from connector_coursera.sandbox import CourseraSandbox, OrgSpec
from hostspec import events as ev
from hostspec.engine.run import SyncEngine
from hostspec.requests import SyncRequest
from hostspec.engine.sinks import MemorySink
from tests.conftest import load_fixture, sandbox_connection
from tests.connector_coursera.test_sandbox import api

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
COMPLETED = load_fixture("coursera", "enrollment_reports.json")["completed"]


def progress_sync(sb, plugins):
    sink = MemorySink()
    report = SyncEngine(plugins, sink).run(SyncRequest("r", "acme-coursera", "coursera", "progress"),
                                           sandbox_connection(sb, plugins))
    return report, {e.data["attempt_id"].rsplit("~", 1)[0]: e.data for e in sink.of_type(ev.LEARNER_STAT_UPSERTED)}


@pytest.mark.parametrize("scale", [1.0, 100.0])
@pytest.mark.parametrize("grade_format", ["number", "string"])
def test_graded_completions_score_the_same_on_either_scale(plugins, scale, grade_format):
    with CourseraSandbox(OrgSpec(contents=30, learners=20, enrollments=90),
                         grade_scale=scale, grade_format=grade_format) as sb:
        served = api(sb, "/enrollmentReports", limit=1000).json()["elements"]
        graded = [r for r in served if r.get("grade") is not None]
        assert graded and all((float(r["grade"]) > 1) == (scale == 100.0) for r in graded)
        report, stats = progress_sync(sb, plugins)
        rows = {sb.org.row(i)["id"]: sb.org.row(i) for i in sb.report_rows()}
    assert report.outcome == "completed" and report.counts.rejected == 0
    scored = {rid: stats[rid]["score_percent"] for rid, row in rows.items() if row.get("grade") is not None}
    assert scored and scored == {rid: round(rows[rid]["grade"] * 100, 2) for rid in scored}
    assert all(0 < s <= 100 for s in scored.values())


def test_a_low_grade_on_a_0_100_page_is_read_on_the_page_s_scale(plugins):
    """0.4 on a page whose other grades are 60–100 is 0.4 %, not 40 %."""
    with CourseraSandbox(OrgSpec(contents=30, learners=20, enrollments=90), grade_scale=100.0) as sb:
        low = next(i for i in sb.report_rows() if sb.org.row(i).get("grade") is not None)
        sb.org.progress_overrides[low] = {"grade": 0.004}          # served as 0.4
        report, stats = progress_sync(sb, plugins)
        low_id = sb.org.row(low)["id"]
    assert report.counts.rejected == 0 and stats[low_id]["score_percent"] == 0.4


def test_the_page_mark_goes_to_every_graded_row():
    page = [{**COMPLETED, "grade": 0.4}, {**COMPLETED, "grade": "96.7"}, {**COMPLETED, "grade": None}]
    marked = grade_scale.mark_page(page)
    assert [r.get(grade_scale.SCALE_KEY) for r in marked] == [100.0, 100.0, None]
    fraction_page = [{**COMPLETED, "grade": 0.4}, {**COMPLETED, "grade": "1"}]
    assert [r[grade_scale.SCALE_KEY] for r in grade_scale.mark_page(fraction_page)] == [1.0, 1.0]
    loaded = [ENROLLMENT_REPORT.load(r) for r in marked]
    assert [r.grade_scale for r in loaded] == [100.0, 100.0, 1.0]
    assert fast_report(marked[0]) == loaded[0]         # a string grade ("96.7") takes the schema path


@pytest.mark.parametrize("grades, scale", [
    ([0.5, 0.7, 50], 1.0),                      # one 0-100 vote among fractions: the fractions win
    ([0.5, 0.7, 50, 60], 100.0),                # a tie goes to 0-100 (a fraction can be a low 0-100 grade)
    ([0.5, float("inf"), 1e18, -1, float("nan")], 1.0),   # out-of-range grades do not vote
    ([0, 1, None], 1.0), ([0, 1, 100], 100.0), ([], 1.0)])
def test_the_page_votes(grades, scale):
    assert grade_scale.scale_of(grades) == scale


@pytest.mark.parametrize("grade", [50, float("inf"), "nan", -0.5, 1e18, "1e400"])
def test_a_grade_that_does_not_fit_the_page_s_scale_is_rejected_alone(grade):
    """A broken grade among fractions does not turn the page to 0-100: its row alone is refused,
    with a reason, on both load paths."""
    page = grade_scale.mark_page([{**COMPLETED, "grade": grade}] + [{**COMPLETED, "grade": g} for g in (0.4, 0.8)])
    assert all(r[grade_scale.SCALE_KEY] == 1.0 for r in page)
    assert fast_report(page[0]) is None
    with pytest.raises(ValidationError, match="not a grade on the page's 0-1 scale"):
        ENROLLMENT_REPORT.load(page[0])
    assert [ENROLLMENT_REPORT.load(r).grade_scale for r in page[1:]] == [1.0, 1.0]


def test_one_broken_grade_does_not_change_another_learner_s_score(plugins):
    """Over the sandbox: a 0-1 org, one row's grade set to 50; every other learner's score is the
    same as without it, and only that row is rejected."""
    with CourseraSandbox(OrgSpec(contents=30, learners=20, enrollments=90)) as sb:
        _, before = progress_sync(sb, plugins)
        broken = next(i for i in sb.report_rows() if sb.org.row(i).get("grade") is not None)
        sb.org.progress_overrides[broken] = {"grade": 50}
        sb.org.version += 1
        report, after = progress_sync(sb, plugins)
        broken_id = sb.org.row(broken)["id"]
    assert report.counts.rejected == 1 and broken_id not in after
    assert {k: v["score_percent"] for k, v in after.items()} == \
        {k: v["score_percent"] for k, v in before.items() if k != broken_id}


@pytest.mark.parametrize("grade, score", [(0.9223, 92.23), ("0.922300033569336", 92.23), ("96.7", 96.7),
                                          (96.7, 96.7), (1, 100.0)])
def test_a_row_read_alone_decides_by_its_own_grade(grade, score):
    mapped = stat_from_report(ENROLLMENT_REPORT.load({**COMPLETED, "grade": grade}), now=NOW)
    assert mapped["score_percent"] == score


def test_time_spent_is_not_read_from_a_field_the_spec_does_not_name():
    row = {k: v for k, v in COMPLETED.items() if k != "approxTotalCourseHrs"} | {"approxTotalLearningHours": 3.5}
    for report in (ENROLLMENT_REPORT.load(row), fast_report(row)):
        mapped = stat_from_report(report, now=NOW)
        assert mapped["time_spent_seconds"] is None and mapped["provenance"]["time_spent_seconds"] == "absent"

