"""Pure mapping: loaded Coursera objects in, the provider part of normalized event data out.

No I/O and no wall clock: the run's instant comes in as ``now``. Provenance of every learner-stat
field says whether the value is Coursera's own (``native``, possibly unit-converted), computed by
us from other fields (``derived``), or not given (``absent``).
"""
from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from hostspec import RecordRejected, isoformat

from . import contract, grade_scale
from .api_schemas import Content, EnrollmentReport

DEFAULT_LANGUAGE = "en"  # INFERRED: languageCode is present on every documented item
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_DURATION_MIN = 100000


def _https(url: str | None) -> str | None:
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def _language(code: str | None) -> str:
    if not code:
        return DEFAULT_LANGUAGE
    parts = code.replace("-", "_").split("_", 1)
    return parts[0].lower() + (f"_{parts[1]}" if len(parts) > 1 else "")


def launch_url(content: Content, program_id: str | None) -> str:
    """The URL START sends a learner to: the program's own link, else the public page."""
    chosen = [p for p in content.programs if p.program_id == program_id] or list(content.programs)
    for link in chosen:
        if _https(link.content_url):
            return link.content_url
    template = contract.PUBLIC_URL.get(content.content_type)
    if template and content.slug:
        return template.format(slug=content.slug)
    raise RecordRejected(content.id, {"programs": ["no launch URL: no program link and no slug"]})


def course_from_content(content: Content, *, program_id: str | None = None) -> dict[str, Any]:
    content_type = contract.CONTENT_TYPES.get(content.content_type)
    if content_type is None:
        raise RecordRejected(content.id, {"contentType": [f"unsupported content type {content.content_type!r}"]})
    minutes = None
    if content.estimated_learning_time_s and content.estimated_learning_time_s > 0:
        minutes = min(_MAX_DURATION_MIN, math.ceil(content.estimated_learning_time_s / 60))
    return {
        "external_id": content.content_id,
        "title": content.name.strip(),
        "description": (content.description or "").strip() or None,
        "language": _language(content.language_code),
        "content_type": content_type,
        "launch_url": launch_url(content, program_id),
        "image_url": _https(content.promo_photo),
        "duration_minutes": minutes,
        "difficulty_level": contract.DIFFICULTY.get((content.difficulty_level or "").upper()),
        "sources": [{"name": p.name, "logo_url": _https(p.logo_url)} for p in content.partners],
        "subjects": list(content.domains),
        "skills": [{"name": s.name, "provider_id": s.skill_id} for s in content.skills],
        "provider_updated_at": isoformat(content.last_updated_at) if content.last_updated_at else None,
        # built here from the program's URL and the item's id, not given by Coursera
        "provenance": {"launch_url": "derived"},
    }


def _iso(moment: datetime | None) -> str | None:
    return isoformat(moment) if moment is not None else None


def stat_from_report(report: EnrollmentReport, *, now: datetime) -> dict[str, Any]:
    """One enrollment row as learner-stat data, with provenance per field."""
    prov: dict[str, str] = {}
    completed = report.is_completed
    progress = report.overall_progress

    if completed:
        status, prov["completion_status"] = "completed", "native"
    elif (progress or 0) > 0 or report.last_activity_at is not None:
        status, prov["completion_status"] = "in_progress", "derived"
    else:
        status, prov["completion_status"] = "not_started", "derived"

    if completed:
        progress_percent: float | None = 100.0
        prov["progress_percent"] = "native" if progress == 100 else "derived"
    elif progress is not None:
        progress_percent, prov["progress_percent"] = float(progress), "native"
    else:
        progress_percent, prov["progress_percent"] = None, "absent"

    score = grade_scale.score_percent(report.grade, report.grade_scale) if report.grade is not None else None
    prov["score_percent"] = "native" if score is not None else "absent"

    # Coursera has no pass/fail flag; completion requires passing every graded item.
    result = "passed" if completed else None
    prov["result"] = "derived" if completed else "absent"

    first = report.enrolled_at  # Coursera has no "started at": enrollment is the first activity
    prov["first_activity_at"] = "derived"

    if report.last_activity_at is not None:
        last, prov["last_activity_at"] = report.last_activity_at, "native"
    elif report.completed_at is not None:
        last, prov["last_activity_at"] = report.completed_at, "derived"
    else:
        last, prov["last_activity_at"] = None, "absent"

    completed_at = None
    if completed:
        if report.completed_at is not None:
            completed_at, prov["completed_at"] = report.completed_at, "native"
        else:
            completed_at, prov["completed_at"] = (last or first), "derived"
    else:
        prov["completed_at"] = "absent"

    # A re-enrollment moves enrolledAt after activity of the earlier enrollment: the learner's
    # first activity is then the earliest date the row knows (still ``derived``), and the row
    # keeps its progress instead of breaking the "last activity ≥ first" rule.
    if last is not None and last < first:
        first = last

    # A negative value is kept as is: the event contract rejects it rather than hiding bad data.
    seconds = int(round(report.hours_spent * 3600)) if report.hours_spent is not None else None
    prov["time_spent_seconds"] = "native" if seconds is not None else "absent"

    email = report.email if report.email and _EMAIL.match(report.email) else None
    return {
        "course_external_id": report.content_id,
        "learner": {"email": email, "provider_id": report.external_id},
        "attempt_id": f"{report.id}~{int(report.enrolled_at.timestamp() * 1000)}",
        "completion_status": status,
        "progress_percent": progress_percent,
        "score_percent": score,
        "result": result,
        "first_activity_at": _iso(first),
        "last_activity_at": _iso(last),
        "completed_at": _iso(completed_at),
        "time_spent_seconds": seconds,
        "provenance": prov,
        "as_of": _iso(report.updated_at) or isoformat(now),
    }
