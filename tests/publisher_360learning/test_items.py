"""Every learner stat converts to a valid 360Learning bulk-stats item."""
from __future__ import annotations

import pytest

from hostspec import events as ev
from publisher_360learning.items import BulkStatItemSchema, NotConvertible, to_bulk_stat
from tests.conftest import sandbox_sync_events
from tests.hostspec.test_events import stat_data

ITEM = BulkStatItemSchema()


def test_every_sandbox_stat_converts_to_a_valid_item():
    from connector_coursera.sandbox import OrgSpec

    sink = sandbox_sync_events(OrgSpec(contents=21, learners=30, enrollments=300), scope="progress")
    stats = sink.of_type(ev.LEARNER_STAT_UPSERTED)
    assert len(stats) > 250
    kinds = set()
    for event in stats:
        item = to_bulk_stat(event.data)
        assert ITEM.validate(item) == {}, (event.data, item)
        kinds.add(event.data["completion_status"])
        if event.data["completion_status"] == "completed":
            assert item["progress"] == 100 and item["lastActivityAt"] == event.data["completed_at"]
    assert kinds == {"not_started", "in_progress", "completed"}


def test_units_and_fallbacks():
    item = to_bulk_stat(stat_data(time_spent_seconds=0, progress_percent=33.6, first_activity_at=None))
    assert item["timeSpent"] == 1 and item["progress"] == 34
    # an activity without length ends a millisecond later: the attempt rules compare strictly
    assert (item["firstActivityAt"], item["lastActivityAt"]) == ("2026-01-02T00:00:00.000Z", "2026-01-02T00:00:00.001Z")
    assert to_bulk_stat(stat_data(time_spent_seconds=90))["timeSpent"] == 90_000
    none = to_bulk_stat(stat_data(first_activity_at=None, last_activity_at=None, progress_percent=None,
                                  completion_status="not_started", time_spent_seconds=None))
    assert (none["firstActivityAt"], none["lastActivityAt"]) == ("2026-01-03T00:00:00.000Z", "2026-01-03T00:00:00.001Z")
    assert none["progress"] == 0
    passed = to_bulk_stat(stat_data(completion_status="completed", progress_percent=100.0, result="passed",
                                     score_percent=92.5, completed_at="2026-01-02T00:00:00.000Z"))
    assert passed["result"] == "success" and passed["score"] == 92.5 and passed["forceNew"] is False
    assert ITEM.validate(passed) == {}


def test_an_import_for_an_open_attempt_begins_strictly_before_its_last_activity():
    """360Learning updates an open attempt only when the import's first activity is *earlier* than
    the attempt's last: a START pressed once (first = last activity) must not be met at its instant."""
    start = {"_id": "a1", "firstActivityAt": "2026-05-01T09:00:00.000Z", "lastActivityAt": "2026-05-01T09:00:00.000Z",
             "completedAt": None, "progress": 1}
    later = stat_data(first_activity_at="2026-05-01T09:01:00+00:00", last_activity_at="2026-05-01T10:00:00+00:00")
    item = to_bulk_stat(later, open_attempt=start)
    assert (item["firstActivityAt"], item["lastActivityAt"]) == ("2026-05-01T08:59:59.999Z", "2026-05-01T10:00:00.000Z")
    at_its_end = stat_data(first_activity_at="2026-05-01T09:30:00+00:00")
    ongoing = {**start, "lastActivityAt": "2026-05-01T09:30:00.000Z"}          # started 9:00, active until 9:30
    assert to_bulk_stat(at_its_end, open_attempt=ongoing)["firstActivityAt"] == "2026-05-01T09:00:00.000Z"
    no_start = {"_id": "a2", "lastActivityAt": "2026-05-01T09:30:00.000Z"}      # only its last activity is known
    assert to_bulk_stat(at_its_end, open_attempt=no_start)["firstActivityAt"] == "2026-05-01T09:29:59.999Z"
    earlier = stat_data(first_activity_at="2026-04-01T00:00:00+00:00")
    assert to_bulk_stat(earlier, open_attempt=start)["firstActivityAt"] == "2026-04-01T00:00:00.000Z"


def test_learner_without_email_is_not_convertible():
    with pytest.raises(NotConvertible):
        to_bulk_stat(stat_data(learner={"email": None, "provider_id": "E12345"}))
    assert to_bulk_stat(stat_data(learner={"email": None, "provider_id": "sso@acme.test"}))["userIdentifier"] == \
        {"type": "mail", "value": "sso@acme.test"}


# -- courses and tags ------------------------------------------------------------------------------
from publisher_360learning.items import ExternalCourseSchema, merge_tags, tag_names, to_external_course  # noqa: E402


def course_data(**over):
    data = {"external_id": "crs-1", "title": "Machine Learning", "description": "Intro", "language": "pt_BR",
            "content_type": "specialization", "launch_url": "https://www.coursera.org/learn/ml",
            "image_url": None, "duration_minutes": 300, "difficulty_level": "beginner",
            "sources": [{"name": "Stanford", "logo_url": None}, {"name": "DeepLearning.AI", "logo_url": "https://l.png"}],
            "subjects": ["Data Science"], "skills": []}
    return {**data, **over}


def test_course_becomes_a_valid_external_course():
    item = to_external_course(course_data())
    assert item == {"externalId": "crs-1", "name": "Machine Learning", "defaultLang": "pt_BR",
                    "launchUrl": "https://www.coursera.org/learn/ml", "contentType": "specialization",
                    "sources": [{"name": "Stanford"}, {"name": "DeepLearning.AI", "logoUrl": "https://l.png"}],
                    "subjects": ["Data Science"], "description": "Intro", "difficultyLevel": "beginner",
                    "duration": 300}
    assert ExternalCourseSchema().validate(item) == {}


def test_absent_optional_fields_are_left_out_not_sent_empty():
    item = to_external_course(course_data(description="", duration_minutes=None, difficulty_level=None))
    assert not {"description", "duration", "difficultyLevel", "imageUrl"} & set(item)


def test_tag_names_are_trimmed_and_deduplicated():
    skills = [{"name": " Machine  Learning "}, {"name": "machine learning"}, {"name": ""}, {"name": "SQL"}]
    assert tag_names({"skills": skills}) == ["Machine Learning", "SQL"]


def test_merge_tags_keeps_others_and_replaces_only_its_own():
    current = ["admin-1", "prov-old", "prov-kept", "admin-2"]
    merged = merge_tags(current, added_before={"prov-old", "prov-kept"}, wanted={"prov-kept", "prov-new"})
    assert merged == ["admin-1", "prov-kept", "admin-2", "prov-new"]
    assert merge_tags(["admin-1"], added_before=set(), wanted=set()) == ["admin-1"]
    # a tag an admin set that the provider also lists is never removed by the provider later
    assert merge_tags(["shared"], added_before=set(), wanted=set()) == ["shared"]
