"""Pure mapping of LinkedIn Learning records to the host's course and learner-stat data."""
from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from hostspec import RecordRejected

from . import contract

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _text(value: Any) -> str | None:
    """A localized string ``{"value": …}`` (or a plain string)."""
    if isinstance(value, Mapping):
        value = value.get("value")
    return value if isinstance(value, str) and value.strip() else None


def _iso(ms: Any) -> str | None:
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or not math.isfinite(ms) or ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


def course_from_asset(asset: Mapping[str, Any]) -> dict[str, Any]:
    urn = asset.get("urn")
    title = asset.get("title") if isinstance(asset.get("title"), Mapping) else {}
    details = asset.get("details") if isinstance(asset.get("details"), Mapping) else {}
    problems: dict[str, list[str]] = {}
    if not isinstance(urn, str) or not urn.startswith("urn:li:"):
        problems["urn"] = ["missing or not a LinkedIn URN"]
    name = _text(title)
    if name is None:
        problems["title"] = ["missing"]
    urls = details.get("urls") if isinstance(details.get("urls"), Mapping) else {}
    launch = urls.get("webLaunch")
    if not isinstance(launch, str) or not launch.startswith("https://"):
        problems["details.urls.webLaunch"] = ["missing or not an https URL"]
    if problems:
        raise RecordRejected(urn if isinstance(urn, str) else None, problems)
    locale = title.get("locale") if isinstance(title.get("locale"), Mapping) else {}
    language = locale.get("language") if isinstance(locale.get("language"), str) else "en"
    ttc = details.get("timeToComplete") if isinstance(details.get("timeToComplete"), Mapping) else {}
    seconds = ttc.get("duration") if isinstance(ttc.get("duration"), (int, float)) else None
    unit = contract.TIME_UNITS_S.get(str(ttc.get("unit", "SECOND")))
    duration = max(1, math.ceil(seconds * unit / 60)) if seconds and unit and seconds > 0 else None
    images = details.get("images") if isinstance(details.get("images"), Mapping) else {}
    image = images.get("primary") if isinstance(images.get("primary"), str) and images["primary"].startswith("http") else None
    skills, subjects = [], []
    for item in details.get("classifications") or []:
        c = item.get("associatedClassification") if isinstance(item, Mapping) else None
        if not isinstance(c, Mapping) or _text(c.get("name")) is None:
            continue
        if c.get("type") in contract.SKILL_TYPES:
            skills.append({"name": _text(c["name"]), "provider_id": c.get("urn") if isinstance(c.get("urn"), str) else None})
        elif c.get("type") in contract.SUBJECT_TYPES:
            subjects.append(_text(c["name"]))
    authors = [_text(a.get("name")) for a in details.get("contributors") or []
               if isinstance(a, Mapping) and a.get("contributionType") == "AUTHOR" and _text(a.get("name"))]
    return {
        "external_id": urn,
        "title": name,
        "description": _text(details.get("description")) or _text(details.get("shortDescription")),
        "language": language.lower(),
        "content_type": "course",
        "launch_url": launch,
        "image_url": image,
        "duration_minutes": duration if duration and duration <= 100_000 else None,
        "difficulty_level": contract.LEVELS.get(str(details.get("level"))),
        "sources": [{"name": "LinkedIn Learning", "logo_url": None}] + [{"name": a, "logo_url": None} for a in authors],
        "subjects": sorted(set(subjects)),
        "skills": skills,
        "provider_updated_at": _iso(details.get("lastUpdatedAt")),
    }


def number(value: Any) -> float | None:
    """A finite number of a report (never a boolean), else None."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None


def activities_by_type(row: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """A report row's TOTAL activities by engagement type."""
    by_type: dict[str, Mapping[str, Any]] = {}
    for activity in row.get("activities") or []:
        if isinstance(activity, Mapping) and activity.get("engagementMetricQualifier", contract.TOTAL) == contract.TOTAL:
            by_type[str(activity.get("engagementType"))] = activity
    return by_type


def row_identity(row: Mapping[str, Any]) -> str | None:
    """``learner~course`` of a report row (the learner's uniqueUserId, else e-mail), or None."""
    learner = row.get("learnerDetails") or {}
    content = row.get("contentDetails") or {}
    if isinstance(learner, Mapping) and isinstance(content, Mapping):
        who = learner.get("uniqueUserId") or learner.get("email")
        if isinstance(who, str) and isinstance(content.get("contentUrn"), str):
            return f"{who}~{content['contentUrn']}"
    return None


def stat_from_report(row: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """One INDIVIDUAL × CONTENT report row as learner-stat data, with provenance per field."""
    learner = row.get("learnerDetails") if isinstance(row.get("learnerDetails"), Mapping) else {}
    content = row.get("contentDetails") if isinstance(row.get("contentDetails"), Mapping) else {}
    urn = content.get("contentUrn")
    email = learner.get("email") if isinstance(learner.get("email"), str) and _EMAIL.match(learner["email"]) else None
    uid = learner.get("uniqueUserId") if isinstance(learner.get("uniqueUserId"), str) and learner["uniqueUserId"] else email
    if not isinstance(urn, str) or not urn or uid is None:
        raise RecordRejected(f"{uid}~{urn}" if uid and isinstance(urn, str) else None,
                             {"contentDetails.contentUrn": ["missing"]} if not isinstance(urn, str) or not urn
                             else {"learnerDetails": ["neither uniqueUserId nor email"]})
    by_type = activities_by_type(row)

    def value(kind: str) -> float | None:
        return number(by_type.get(kind, {}).get("engagementValue"))

    prov: dict[str, str] = {}
    completions, progress, seconds = value(contract.COMPLETIONS), value(contract.PROGRESS_PERCENTAGE), \
        value(contract.SECONDS_VIEWED)
    completed = bool(completions and completions >= 1)
    firsts = [a.get("firstEngagedAt") for a in by_type.values()]
    lasts = [a.get("lastEngagedAt") for a in by_type.values()]
    first = _iso(min((x for x in firsts if isinstance(x, (int, float))), default=None))
    last = _iso(max((x for x in lasts if isinstance(x, (int, float))), default=None))
    prov["first_activity_at"] = "native" if first else "absent"
    prov["last_activity_at"] = "native" if last else "absent"
    if completed:
        status, prov["completion_status"] = "completed", "native"
        progress_percent, prov["progress_percent"] = 100.0, "native" if progress == 100 else "derived"
        done = _iso(by_type[contract.COMPLETIONS].get("lastEngagedAt"))
        completed_at, prov["completed_at"] = (done, "native") if done else (last or first, "derived")
    else:
        status = "in_progress" if (progress or seconds or last) else "not_started"
        prov["completion_status"] = "derived"
        progress_percent = progress
        prov["progress_percent"] = "native" if progress is not None else "absent"
        completed_at, prov["completed_at"] = None, "absent"
    prov["score_percent"], prov["result"] = "absent", "absent"   # LinkedIn reports no score or result
    prov["time_spent_seconds"] = "native" if seconds is not None else "absent"
    if completed_at is None and completed:
        completed_at = now.isoformat()
    return {
        "course_external_id": urn,
        "learner": {"email": email, "provider_id": uid},
        "attempt_id": f"{uid}~{urn}",          # LinkedIn reports one record per learner and course
        "completion_status": status,
        "progress_percent": progress_percent,
        "score_percent": None,
        "result": None,
        "first_activity_at": first,
        "last_activity_at": last,
        "completed_at": completed_at,
        "time_spent_seconds": int(seconds) if seconds is not None else None,
        "provenance": prov,
        "as_of": _iso(row.get("latestDataAt")) or now.isoformat(),
    }
