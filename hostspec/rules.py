"""Learning rules every learner statistic obeys, each a small pure function.

Three kinds:

* value rules (:func:`percent_in_range`, :func:`not_negative`) check one field; the event schema
  uses them as field validators, and the JSON Schema export reads their bounds;
* record rules take the stat's data (dates as ISO strings or datetimes) and return
  ``{field: [message]}``, empty when the rule holds; :func:`check_stat` runs them all and the
  schema calls it, so no event that breaks a rule is ever emitted;
* :func:`keep_completion` transforms a stat so completion never regresses for one attempt.

These follow cmi5 and 360Learning attempt semantics: an attempt that was completed stays
completed; a retake is a new attempt (a new ``attempt_id``), never an overwrite.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping

from marshmallow import ValidationError

Errors = dict[str, list[str]]


def percent_in_range(value: float | None) -> None:
    """Progress and score are percentages: 0 to 100."""
    if value is not None and not 0 <= value <= 100:
        raise ValidationError("must be between 0 and 100")


percent_in_range.json_schema = {"minimum": 0, "maximum": 100}  # type: ignore[attr-defined]


def not_negative(value: float | None) -> None:
    """Time spent is never negative."""
    if value is not None and value < 0:
        raise ValidationError("must not be negative")


not_negative.json_schema = {"minimum": 0}  # type: ignore[attr-defined]


def _instant(value: Any) -> datetime | None:
    """An aware instant, or None when absent or malformed (the field's own validator reports it)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return value if value.tzinfo is not None else None


def completed_means_full_progress(stat: Mapping[str, Any]) -> Errors:
    """A completed stat has progress 100 and a completion date."""
    if stat.get("completion_status") != "completed":
        return {}
    errors: Errors = {}
    if stat.get("progress_percent") != 100:
        errors["progress_percent"] = ["must be 100 when completion_status is completed"]
    if stat.get("completed_at") is None:
        errors["completed_at"] = ["is required when completion_status is completed"]
    return errors


def completion_date_only_when_completed(stat: Mapping[str, Any]) -> Errors:
    """A stat that is not completed carries no completion date."""
    if stat.get("completion_status") != "completed" and stat.get("completed_at") is not None:
        return {"completed_at": ["must be null unless completion_status is completed"]}
    return {}


def last_activity_not_before_first(stat: Mapping[str, Any]) -> Errors:
    """Last activity is never earlier than first activity."""
    first, last = _instant(stat.get("first_activity_at")), _instant(stat.get("last_activity_at"))
    if first is not None and last is not None and last < first:
        return {"last_activity_at": ["must not be earlier than first_activity_at"]}
    return {}


def not_started_has_no_progress(stat: Mapping[str, Any]) -> Errors:
    """A not-started stat has no progress beyond 0."""
    progress = stat.get("progress_percent")
    if stat.get("completion_status") == "not_started" and progress not in (None, 0):
        return {"progress_percent": ["must be 0 or null when completion_status is not_started"]}
    return {}


RULES: tuple[Callable[[Mapping[str, Any]], Errors], ...] = (
    completed_means_full_progress,
    completion_date_only_when_completed,
    last_activity_not_before_first,
    not_started_has_no_progress,
)
"""Range rules (progress and score 0-100, time spent >= 0) live on the schema fields themselves."""


RETAINED_FIELDS = ("completion_status", "progress_percent", "completed_at", "result", "score_percent")


def completion_memo(stat: Mapping[str, Any]) -> dict[str, Any] | None:
    """What must be remembered of a stat for :func:`keep_completion` (None when not completed)."""
    if stat.get("completion_status") != "completed":
        return None
    return {"completed_at": stat.get("completed_at"), "result": stat.get("result"),
            "score_percent": stat.get("score_percent")}


def keep_completion(previous: Mapping[str, Any] | None, stat: Mapping[str, Any]) -> dict[str, Any]:
    """Completion never regresses within one attempt.

    :param previous: :func:`completion_memo` of the last emitted stat of the same attempt.
    :return: ``stat`` unchanged, or, when the attempt was completed before and this record
        says otherwise, the stat kept completed (progress 100, earlier completion date, result
        and score) with those fields' provenance set to ``retained``.
    """
    out = dict(stat)
    if not previous or stat.get("completion_status") == "completed":
        return out
    out.update(completion_status="completed", progress_percent=100.0, completed_at=previous["completed_at"],
               result=previous.get("result") if stat.get("result") is None else stat["result"],
               score_percent=previous.get("score_percent") if stat.get("score_percent") is None
               else stat["score_percent"])
    provenance = dict(stat.get("provenance") or {})
    for name in RETAINED_FIELDS:
        if out.get(name) != stat.get(name):
            provenance[name] = "retained"
    out["provenance"] = provenance
    return out


def check_stat(stat: Mapping[str, Any]) -> Errors:
    errors: Errors = {}
    for rule in RULES:
        for field, messages in rule(stat).items():
            errors.setdefault(field, []).extend(messages)
    return errors
