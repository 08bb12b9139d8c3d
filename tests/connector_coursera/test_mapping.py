"""Pure mapping of every Coursera content type and enrollment row kind, against golden files."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from marshmallow import ValidationError

from connector_coursera.api_schemas import CONTENT, ENROLLMENT_REPORT
from connector_coursera.mapping import course_from_content, stat_from_report
from hostspec import RecordRejected
from hostspec import events as ev
from tests.conftest import load_fixture

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
CONTENTS = load_fixture("coursera", "contents.json")
EXPECTED_COURSES = load_fixture("coursera", "expected_courses.json")
REPORTS = load_fixture("coursera", "enrollment_reports.json")
EXPECTED_STATS = load_fixture("coursera", "expected_stats.json")
IDENTITY = {"tenant": "acme", "connection": "c", "provider": "coursera", "group_id": "g"}


@pytest.mark.parametrize("name", sorted(CONTENTS))
def test_content_maps_to_golden_course(name):
    program = "y0TO1t4fEe2bIBLACu-NKq" if name == "course" else None
    mapped = course_from_content(CONTENT.load(CONTENTS[name]), program_id=program)
    assert mapped == EXPECTED_COURSES[name]
    data = {**IDENTITY, "locked_fields": ["title", "description"], **mapped}
    data["fingerprint"] = ev.fingerprint(data)
    ev.validate_data(ev.COURSE_UPSERTED, data)


def test_every_content_type_is_covered():
    assert {c["contentType"] for c in CONTENTS.values()} == {"Course", "Specialization", "Video"}


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_report_maps_to_golden_stat(name):
    mapped = stat_from_report(ENROLLMENT_REPORT.load(REPORTS[name]), now=NOW)
    assert mapped == EXPECTED_STATS[name]
    data = {**IDENTITY, **mapped}
    data["fingerprint"] = ev.fingerprint(data)
    ev.validate_data(ev.LEARNER_STAT_UPSERTED, data)


def test_program_choice_falls_back_to_first_program():
    content = CONTENT.load(CONTENTS["course"])
    assert "learning-program-uzmjj" in course_from_content(content)["launch_url"]
    assert "data-ai-lvseg" in course_from_content(content, program_id="y0TO1t4fEe2bIBLACu-NKq")["launch_url"]


def test_unknown_content_type_is_rejected():
    record = {**CONTENTS["course"], "contentType": "SkillSet"}
    with pytest.raises(RecordRejected) as excinfo:
        course_from_content(CONTENT.load(record))
    assert "contentType" in excinfo.value.messages


def test_item_without_any_launch_url_is_rejected():
    record = {**CONTENTS["clip"], "slug": None, "programs": []}
    with pytest.raises(RecordRejected, match="no launch URL"):
        course_from_content(CONTENT.load(record))


@pytest.mark.parametrize("field", ["id", "externalId", "contentId", "enrolledAt", "isCompleted"])
def test_missing_required_report_field_fails_loading(field):
    record = {k: v for k, v in REPORTS["completed"].items() if k != field}
    with pytest.raises(ValidationError) as excinfo:
        ENROLLMENT_REPORT.load(record)
    assert field in excinfo.value.messages


def test_type_flips_are_tolerated():
    record = {**REPORTS["completed"], "grade": "0.5", "enrolledAt": "2025-04-21T01:30:35Z", "completedAt": "1757000000000"}
    stat = stat_from_report(ENROLLMENT_REPORT.load(record), now=NOW)
    assert stat["score_percent"] == 50.0 and stat["first_activity_at"] == "2025-04-21T01:30:35.000Z"


def test_out_of_range_progress_is_mapped_as_is_and_refused_by_the_contract():
    record = {**REPORTS["in_progress_guided_project"], "overallProgress": 140}
    data = {**IDENTITY, **stat_from_report(ENROLLMENT_REPORT.load(record), now=NOW), "fingerprint": "0" * 64}
    with pytest.raises(ValidationError) as excinfo:
        ev.validate_data(ev.LEARNER_STAT_UPSERTED, data)
    assert "progress_percent" in excinfo.value.messages


def test_a_re_enrollment_keeps_its_progress_with_a_corrected_first_activity():
    """enrolledAt moved to the new enrollment, after the earlier enrollment's activity: the row used to be
    rejected whole (last activity before first); the learner's data is kept instead (issue 15)."""
    row = dict(REPORTS["completed"])
    row.update(enrolledAt=1760000000000, lastActivityAt=1756000000000, completedAt=1757000000000)
    mapped = stat_from_report(ENROLLMENT_REPORT.load(row), now=NOW)
    assert mapped["first_activity_at"] == mapped["last_activity_at"] <= mapped["completed_at"]
    assert mapped["provenance"]["first_activity_at"] == "derived" and mapped["completion_status"] == "completed"
    data = {**IDENTITY, **mapped}
    data["fingerprint"] = ev.fingerprint(data)
    ev.validate_data(ev.LEARNER_STAT_UPSERTED, data)
