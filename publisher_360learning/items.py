"""Events as 360Learning bulk items, and marshmallow schemas of those items (pure, no I/O).

* ``learning.course.upserted.v1`` → an ExternalCourse of ``PUT /api/v2/bulk/integrations/{id}/courses``;
* ``learning.course.removed.v1`` → ``{"externalId"}`` of the archive call (``DELETE`` on that path);
* ``learning.learner_stat.upserted.v1`` → a statistic of ``POST /api/v2/bulk/integrations/{id}/stats``.

The publisher validates every item with these schemas before sending, so a bad row never reaches
the API; the sandbox validates what it receives with the same schemas. Rules for statistics:

* ``progress`` 0-100, an integer; 100 marks completion, and then ``lastActivityAt`` is read as
  the completion date, so a completed stat sends its ``completed_at`` there;
* ``timeSpent`` in milliseconds and at least 1 (0 is refused);
* ``firstActivityAt`` and ``lastActivityAt`` are required: an absent one borrows the other, and
  when both are absent the stat's ``as_of`` stands in (a learner enrolled but never active);
* ``userIdentifier`` is the learner's e-mail (360Learning also accepts its own user id, which a
  provider never knows); Coursera returns the e-mail as ``externalId`` when it has no SSO id;
* ``forceNew`` stays false: an import then updates the attempt a learner started in 360Learning
  (for instance inside a program session), so the session keeps its credit.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from marshmallow import RAISE, Schema, fields, validate

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ISO_Z = validate.Regexp(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", error="must be YYYY-MM-DDThh:mm:ss.sssZ")


class NotConvertible(ValueError):
    """The stat lacks what 360Learning needs (a learner e-mail)."""


class _Identifier(Schema):
    class Meta:
        unknown = RAISE


class CourseIdentifierSchema(_Identifier):
    type = fields.String(required=True, validate=validate.OneOf(["externalId", "internalId"]))
    value = fields.String(required=True, validate=validate.Length(min=1))


class UserIdentifierSchema(_Identifier):
    type = fields.String(required=True, validate=validate.OneOf(["mail", "internalId"]))
    value = fields.String(required=True, validate=validate.Length(min=1))


class BulkStatItemSchema(Schema):
    """One item of 360Learning's bulk statistics import (API v2)."""

    class Meta:
        unknown = RAISE

    courseIdentifier = fields.Nested(CourseIdentifierSchema, required=True)
    userIdentifier = fields.Nested(UserIdentifierSchema, required=True)
    progress = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=100))
    timeSpent = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    firstActivityAt = fields.String(required=True, validate=ISO_Z)
    lastActivityAt = fields.String(required=True, validate=ISO_Z)
    score = fields.Float(validate=validate.Range(min=0, max=100))
    result = fields.String(validate=validate.OneOf(["success", "failed"]))
    forceNew = fields.Boolean()


LANG = validate.Regexp(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$", error="must be a language code like en, pt_BR")
CONTENT_TYPES = ["article", "assessment", "audiobook", "book", "certificate", "channel", "course",
                 "curriculum", "interactive", "journey", "labs", "linkedContent", "mooc", "podcast",
                 "program", "roleplay", "specialization", "topvoice", "video"]
NON_EMPTY = validate.Length(min=1)


class SourceItemSchema(_Identifier):
    name = fields.String(required=True, validate=NON_EMPTY)
    logoUrl = fields.String(validate=NON_EMPTY)


class ExternalCourseSchema(Schema):
    """One item of 360Learning's bulk external-course upsert (API v2)."""

    class Meta:
        unknown = RAISE

    externalId = fields.String(required=True, validate=NON_EMPTY)
    name = fields.String(required=True, validate=NON_EMPTY)
    defaultLang = fields.String(required=True, validate=LANG)
    launchUrl = fields.String(required=True, validate=NON_EMPTY)
    sources = fields.List(fields.Nested(SourceItemSchema), required=True)
    subjects = fields.List(fields.String(), required=True)
    description = fields.String(validate=NON_EMPTY)
    contentType = fields.String(validate=validate.OneOf(CONTENT_TYPES))
    difficultyLevel = fields.String(validate=validate.OneOf(["beginner", "intermediate", "advanced"]))
    duration = fields.Integer(strict=True, validate=validate.Range(min=1, max=100_000))
    imageUrl = fields.String(validate=NON_EMPTY)
    mobileLaunchUrl = fields.String(validate=NON_EMPTY)
    authorId = fields.String(validate=validate.Regexp(r"^[a-fA-F0-9]{24}$"))


class ArchiveItemSchema(_Identifier):
    externalId = fields.String(required=True, validate=NON_EMPTY)


def to_external_course(course: Mapping[str, Any]) -> dict[str, Any]:
    """The 360Learning external course for ``learning.course.upserted.v1`` data.

    Title and description are the provider's: every upsert sends them, which is how 360Learning
    keeps them locked (the upsert replaces the course's fields). Skills are not part of the item:
    they become tags, merged separately (see :func:`merge_tags`).
    """
    item: dict[str, Any] = {
        "externalId": course["external_id"],
        "name": course["title"],
        "defaultLang": course["language"],
        "launchUrl": course["launch_url"],
        "sources": [{"name": s["name"], **({"logoUrl": s["logo_url"]} if s.get("logo_url") else {})}
                    for s in course.get("sources") or []],
        "subjects": list(course.get("subjects") or []),
        "contentType": course["content_type"],
    }
    optional = {"description": course.get("description"), "difficultyLevel": course.get("difficulty_level"),
                "duration": course.get("duration_minutes"), "imageUrl": course.get("image_url")}
    item.update({k: v for k, v in optional.items() if v not in (None, "")})
    return item


def tag_names(course: Mapping[str, Any]) -> list[str]:
    """The provider's skills of a course as tag names: trimmed, first spelling kept, at most 100."""
    seen: dict[str, str] = {}
    for skill in course.get("skills") or []:
        name = " ".join(str(skill.get("name") or "").split())
        if name and name.casefold() not in seen:
            seen[name.casefold()] = name
    return list(seen.values())[:100]


def merge_tags(current: list[str], added_before: set[str], wanted: set[str]) -> list[str]:
    """The course's tags after a sync: keep every tag someone else set, drop the provider tags the
    provider no longer lists, add the ones it lists now. Order of ``current`` is kept."""
    keep = [t for t in current if t not in added_before or t in wanted]
    return keep + sorted(wanted - set(keep))


def learner_mail(stat: Mapping[str, Any]) -> str | None:
    learner = stat.get("learner") or {}
    for candidate in (learner.get("email"), learner.get("provider_id")):
        if isinstance(candidate, str) and _EMAIL.match(candidate):
            return candidate
    return None


def to_bulk_stat(stat: Mapping[str, Any]) -> dict[str, Any]:
    """The 360Learning import item for one learner stat.

    :raise NotConvertible: no e-mail identifies the learner.
    """
    mail = learner_mail(stat)
    if mail is None:
        raise NotConvertible("the learner has no e-mail address 360Learning could match")
    completed = stat.get("completion_status") == "completed"
    progress = 100 if completed else int(round(stat.get("progress_percent") or 0))
    first = stat.get("first_activity_at") or stat.get("last_activity_at") or stat["as_of"]
    last = (stat.get("completed_at") if completed else None) or stat.get("last_activity_at") or first
    seconds = stat.get("time_spent_seconds") or 0
    item: dict[str, Any] = {
        "courseIdentifier": {"type": "externalId", "value": stat["course_external_id"]},
        "userIdentifier": {"type": "mail", "value": mail},
        "progress": min(progress, 100),
        "timeSpent": max(1, int(seconds) * 1000),
        "firstActivityAt": first,
        "lastActivityAt": max(last, first),
        "forceNew": False,
    }
    if stat.get("score_percent") is not None:
        item["score"] = stat["score_percent"]
    if stat.get("result") in ("passed", "failed"):
        item["result"] = "success" if stat["result"] == "passed" else "failed"
    return item
