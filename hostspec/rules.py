"""Learning rules every learner statistic obeys, each a small pure function.

A rule takes the stat's data (a mapping of :class:`hostspec.event_schemas.LearnerStatDataSchema`
fields, dates as ISO strings or datetimes) and returns a ``{field: [message]}`` dict, empty when
the rule holds. :func:`check_stat` runs them all; the schema calls it, so no event that breaks a
rule is ever emitted.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping

Errors = dict[str, list[str]]


def _instant(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None  # the field's own validator reports the format


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


def check_stat(stat: Mapping[str, Any]) -> Errors:
    errors: Errors = {}
    for rule in RULES:
        for field, messages in rule(stat).items():
            errors.setdefault(field, []).extend(messages)
    return errors
