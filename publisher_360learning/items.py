"""Events as 360Learning bulk items, and marshmallow schemas of those items (pure, no I/O).

* ``learning.course.upserted.v1`` → an ExternalCourse of ``PUT /api/v2/bulk/integrations/{id}/courses``;
* ``learning.course.removed.v1`` → ``{"externalId"}`` of the archive call (``DELETE`` on that path);
* ``learning.learner_stat.upserted.v1`` → a statistic of ``POST /api/v2/bulk/integrations/{id}/stats``.

The publisher validates every item with these schemas before sending, so a bad row never reaches
the API; the sandbox validates what it receives with the same schemas. Rules for statistics:

* ``progress`` 0-100, an integer; 100 marks completion, and then ``lastActivityAt`` is read as
  the completion date. So only a completed stat sends 100 (an in-progress 99.7 % sends 99), and
  a completed stat without any date is not convertible: a completion date is never invented;
* dates in any RFC 3339 form (``+00:00``, an offset, no fraction) become 360Learning's
  ``YYYY-MM-DDThh:mm:ss.sssZ`` in UTC;
* ``timeSpent`` in milliseconds and at least 1 (0 is refused);
* ``firstActivityAt`` and ``lastActivityAt`` are required: an absent one borrows the other, and
  when both are absent the stat's ``as_of`` stands in (a learner enrolled but never active);
* ``userIdentifier`` is the learner's e-mail (360Learning also accepts its own user id, which a
  provider never knows); Coursera returns the e-mail as ``externalId`` when it has no SSO id;
* ``forceNew`` stays false: an import then updates the attempt a learner started in 360Learning
  (for instance inside a program session), so the session keeps its credit. When such an attempt
  is open, :func:`to_bulk_stat` moves ``firstActivityAt`` back to its start: by the documented
  attempt rule an import whose first activity is later than every attempt's last creates a new
  attempt instead (START in a session, then the provider's enrolment a minute later);
* the attempt rules compare strictly, and at an equal instant neither applies: so an import for
  an open attempt begins strictly before that attempt's last activity (a millisecond before when
  it would begin at it: a START pressed once has first = last activity), and an in-progress stat
  whose activity has no length ends a millisecond after it began, so that the next import of the
  attempt, beginning at the same first activity, still falls strictly before its end.

Which of two stats of one attempt is newer is decided by :func:`recency`, from the content only.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from marshmallow import RAISE, Schema, fields, validate

from . import contract
from .languages import LISTED_LANGUAGE, language_360

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
ISO_Z = validate.Regexp(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$", error="must be YYYY-MM-DDThh:mm:ss.sssZ")


class NotConvertible(ValueError):
    """The stat lacks what 360Learning needs; ``reason`` names what (a dead letter's reason)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


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
    defaultLang = fields.String(required=True, validate=LISTED_LANGUAGE)
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


def to_external_course(course: Mapping[str, Any], *,
                       default_lang: str = contract.DEFAULT_LANGUAGE) -> dict[str, Any]:
    """The 360Learning external course for ``learning.course.upserted.v1`` data.

    Title and description are the provider's: every upsert sends them, which is how 360Learning
    keeps them locked (the upsert replaces the course's fields). Skills are not part of the item:
    they become tags, merged separately (see :func:`merge_tags`). The language is 360Learning's
    spelling of the provider's (:func:`.languages.language_360`), or ``default_lang`` when
    360Learning offers none for it.
    """
    item: dict[str, Any] = {
        "externalId": course["external_id"],
        "name": course["title"],
        "defaultLang": language_360(course.get("language")) or default_lang,
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


def iso_z(value: str) -> str:
    """Any RFC 3339 date-time as 360Learning writes them: UTC, milliseconds, ``Z``.

    :raise ValueError: not a date-time with a time zone.
    """
    text = re.sub(r"(T\d{2}:\d{2}):60", r"\1:59", value.replace("z", "Z").replace("Z", "+00:00"))   # a leap second
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    try:
        u = parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value!r} is out of range") from None
    return _written(u)


def _written(u: datetime) -> str:
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}."
            f"{u.microsecond // 1000:03d}Z")


def _step(value: str, steps: int) -> str:
    """A date as 360Learning writes them, ``steps`` of its precision (a millisecond) later."""
    try:
        moved = datetime.fromisoformat(value.replace("Z", "+00:00")) + timedelta(
            milliseconds=steps * contract.INSTANT_STEP_MS)
    except OverflowError:       # the edge of year 1 or 9999: left as it is
        return value
    return _written(moved)


def _date(stat: Mapping[str, Any], name: str) -> str | None:
    value = stat.get(name)
    if value in (None, ""):
        return None
    try:
        return iso_z(str(value))
    except ValueError:
        raise NotConvertible("invalid_for_360learning", f"{name} {value!r} is not an RFC 3339 date-time") from None


_STATUS_RANK = {"not_started": 0, "in_progress": 1, "completed": 2}


def recency(stat: Mapping[str, Any]) -> str:
    """How recent a stat's content is, as a string that sorts like the content's age.

    First the provider's ``as_of`` (when its report was true), then the learner's last activity,
    completion date, status, progress and time spent: of two stats of one attempt the one with
    the larger recency is the newer, whatever topic, batch or instance each came through. Two
    different contents with equal recency are told apart by their fingerprint, so every instance
    picks the same one.
    """
    def when(name: str) -> str:
        try:
            return _date(stat, name) or ""
        except NotConvertible:
            return ""

    progress = stat.get("progress_percent")
    progress = progress if isinstance(progress, (int, float)) and math.isfinite(progress) else 0
    seconds = stat.get("time_spent_seconds") if isinstance(stat.get("time_spent_seconds"), int) else 0
    return "|".join((when("as_of"), when("last_activity_at"), when("completed_at"),
                     str(_STATUS_RANK.get(stat.get("completion_status"), 0)), f"{min(max(progress, 0), 100):07.3f}",
                     f"{max(seconds, 0):015d}", str(stat.get("fingerprint") or "")))


def progress_of(stat: Mapping[str, Any]) -> int:
    """0-100 as 360Learning reads it: 100 only for a completed stat."""
    if stat.get("completion_status") == "completed":
        return 100
    value = stat.get("progress_percent")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0
    return max(0, min(99, int(round(value))))


def to_bulk_stat(stat: Mapping[str, Any], *, open_attempt: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The 360Learning import item for one learner stat.

    :param open_attempt: the learner's open (not completed) attempt in 360Learning, as the
        courses stats API returns it, when there is one: the import must update it.
    :raise NotConvertible: no e-mail identifies the learner, a date is not a date, or a
        completed stat carries no date at all.
    """
    mail = learner_mail(stat)
    if mail is None:
        raise NotConvertible("learner_without_email", "the learner has no e-mail address 360Learning could match")
    completed = stat.get("completion_status") == "completed"
    first_seen, last_seen, completed_at = (_date(stat, n) for n in ("first_activity_at", "last_activity_at",
                                                                     "completed_at"))
    if completed and not (completed_at or last_seen or first_seen):
        raise NotConvertible("completion_without_date", "a completed stat without completion or activity date: "
                                                        "360Learning would take the sync time as completion date")
    first = first_seen or last_seen or completed_at or _date(stat, "as_of")
    last = max((completed_at if completed else None) or last_seen or first, first)
    if not completed and last == first:
        # 360Learning's rules are strict: the next import of this attempt, beginning at ``first``
        # again, updates it only if ``first`` is *earlier* than the attempt's last activity
        last = _step(first, 1)
    if open_attempt is not None:
        started, end = _attempt_start(open_attempt), _attempt_end(open_attempt)
        if started and started < first:
            first = started     # update the attempt the learner started (in a path session) instead of a new one
        if end and first >= end:
            first = _step(end, -1)    # strictly earlier than its last activity, or neither rule applies
    seconds = stat.get("time_spent_seconds") or 0
    item: dict[str, Any] = {
        "courseIdentifier": {"type": "externalId", "value": stat["course_external_id"]},
        "userIdentifier": {"type": "mail", "value": mail},
        "progress": progress_of(stat),
        "timeSpent": max(1, int(seconds) * 1000),
        "firstActivityAt": first,
        "lastActivityAt": last,
        "forceNew": False,
    }
    if stat.get("score_percent") is not None:
        item["score"] = stat["score_percent"]
    if stat.get("result") in ("passed", "failed"):
        item["result"] = "success" if stat["result"] == "passed" else "failed"
    return item


def _attempt_start(attempt: Mapping[str, Any]) -> str | None:
    return _attempt_date(attempt, ("firstActivityAt", "lastActivityAt"))


def _attempt_end(attempt: Mapping[str, Any]) -> str | None:
    return _attempt_date(attempt, ("completedAt", "lastActivityAt"))


def _attempt_date(attempt: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = attempt.get(name)
        if isinstance(value, str) and value:
            try:
                return iso_z(value)
            except ValueError:
                continue
    return None


def open_attempt_of(attempts: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The attempt an import should update: the most recent one not completed, if any."""
    open_ = [a for a in attempts if not a.get("completedAt") and (a.get("progress") or 0) < 100]
    return max(open_, key=lambda a: str(a.get("lastActivityAt") or ""), default=None)
