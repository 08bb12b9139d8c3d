"""Learner statistics as 360Learning bulk-stats items (``POST /api/v2/bulk/integrations/{id}/stats``).

Pure conversion of ``learning.learner_stat.upserted.v1`` data into the import item 360Learning's
API v2 documents, and a marshmallow schema of that item so every stat can be checked to convert.
The 360Learning publisher sends these; the rules here are the contract's:

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
