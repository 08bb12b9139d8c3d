"""marshmallow schemas of Coursera payloads (unknown fields ignored) loading into frozen dataclasses.

Loading is tolerant where Coursera is known to vary: timestamps as numbers, numeric strings or
ISO strings; ``grade`` as number or string, on the scale its page uses (:mod:`.grade_scale`). Missing required fields are errors, which the
plugin turns into rejected records.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate, validates_schema

from . import contract, grade_scale
from .numbers import as_number


class Epoch(fields.Field):
    """An instant given as epoch number (in ``unit_s`` seconds), numeric string or ISO 8601 string."""

    def __init__(self, unit_s: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.unit_s = unit_s

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("must be an epoch timestamp")
        if isinstance(value, str):
            text = value.strip()
            try:
                value = float(text)
            except ValueError:
                try:
                    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                except ValueError:
                    raise ValidationError("must be an epoch timestamp or ISO 8601 date") from None
                return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        if not isinstance(value, (int, float)) or value < 0:
            raise ValidationError("must be a non-negative epoch timestamp")
        moment = _from_epoch(value, self.unit_s)
        if moment is None:
            raise ValidationError("epoch timestamp out of range")
        return moment


def _from_epoch(value: float, unit_s: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(value * unit_s, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


class Number(fields.Field):
    """A number, also when sent as a numeric string."""

    def _deserialize(self, value, attr, data, **kwargs):
        number = as_number(value)
        if number is None:
            raise ValidationError("must be a number")
        return number


class _Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


# -- contents -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Partner:
    name: str
    logo_url: str | None


@dataclass(frozen=True)
class ProgramLink:
    program_id: str
    content_url: str


@dataclass(frozen=True)
class Skill:
    name: str
    skill_id: str | None


@dataclass(frozen=True)
class Content:
    id: str
    content_id: str
    content_type: str
    name: str
    slug: str | None
    description: str | None
    language_code: str | None
    difficulty_level: str | None
    partners: tuple[Partner, ...]
    programs: tuple[ProgramLink, ...]
    metadata_type: str | None
    skills: tuple[Skill, ...]
    estimated_learning_time_s: float | None
    promo_photo: str | None
    domains: tuple[str, ...]
    last_updated_at: datetime | None


class PartnerSchema(_Lenient):
    name = fields.String(required=True, validate=validate.Length(min=1))
    logoUrl = fields.String(load_default=None, allow_none=True)


class ProgramLinkSchema(_Lenient):
    programId = fields.String(required=True)
    contentUrl = fields.String(required=True, validate=validate.Length(min=1))


class ExtraMetadataSchema(_Lenient):
    typeName = fields.String(load_default=None, allow_none=True)
    definition = fields.Dict(load_default=dict, allow_none=True)


class ContentSchema(_Lenient):
    id = fields.String(required=True, validate=validate.Length(min=1))
    contentId = fields.String(required=True, validate=validate.Length(min=1))
    contentType = fields.String(required=True)
    name = fields.String(required=True, validate=validate.Length(min=1))
    slug = fields.String(load_default=None, allow_none=True)
    description = fields.String(load_default=None, allow_none=True)
    languageCode = fields.String(load_default=None, allow_none=True)
    difficultyLevel = fields.String(load_default=None, allow_none=True)
    partners = fields.List(fields.Nested(PartnerSchema), load_default=list, allow_none=True)
    programs = fields.List(fields.Nested(ProgramLinkSchema), load_default=list, allow_none=True)
    extraMetadata = fields.Nested(ExtraMetadataSchema, load_default=None, allow_none=True)
    lastUpdatedAt = Epoch(contract.CONTENT_TIMESTAMP_UNIT_S, load_default=None, allow_none=True)

    @post_load
    def _make(self, d: dict[str, Any], **_kwargs: Any) -> Content:
        meta = d.get("extraMetadata") or {}
        definition = meta.get("definition") or {}
        skills_raw = definition.get("skills") or definition.get("skillTags") or []
        learning_time = definition.get("estimatedLearningTime")
        domains: list[str] = []
        for dt in definition.get("domainTypes") or []:
            for part in ("domain", "subdomain"):
                name = (dt.get(part) or {}).get("name") if isinstance(dt, dict) else None
                if isinstance(name, str) and name and name not in domains:
                    domains.append(name)
        return Content(
            id=d["id"], content_id=d["contentId"], content_type=d["contentType"], name=d["name"],
            slug=d.get("slug"), description=d.get("description"), language_code=d.get("languageCode"),
            difficulty_level=d.get("difficultyLevel"),
            partners=tuple(Partner(p["name"], p.get("logoUrl")) for p in d.get("partners") or []),
            programs=tuple(ProgramLink(p["programId"], p["contentUrl"]) for p in d.get("programs") or []),
            metadata_type=meta.get("typeName"),
            skills=tuple(Skill(s["skillName"], s.get("skillId")) for s in skills_raw
                         if isinstance(s, dict) and isinstance(s.get("skillName"), str) and s["skillName"]),
            estimated_learning_time_s=(float(learning_time) * contract.LEARNING_TIME_UNIT_S
                                       if isinstance(learning_time, (int, float)) and not isinstance(learning_time, bool)
                                       else None),
            promo_photo=definition.get("promoPhoto") if isinstance(definition.get("promoPhoto"), str) else None,
            domains=tuple(domains), last_updated_at=d.get("lastUpdatedAt"))


# -- enrollment reports -------------------------------------------------------------------------
@dataclass(frozen=True)
class EnrollmentReport:
    id: str
    external_id: str
    email: str | None
    content_id: str
    content_type: str
    program_id: str | None
    is_completed: bool
    completed_at: datetime | None
    grade: float | None
    grade_scale: float                   # what ``grade`` is out of: 1 or 100 (see grade_scale)
    overall_progress: float | None
    enrolled_at: datetime
    last_activity_at: datetime | None
    updated_at: datetime | None
    membership_state: str
    hours_spent: float | None
    course_type: str | None


_MS = contract.REPORT_TIMESTAMP_UNIT_S


class EnrollmentReportSchema(_Lenient):
    id = fields.String(required=True, validate=validate.Length(min=1))
    externalId = fields.String(required=True, validate=validate.Length(min=1))
    email = fields.String(load_default=None, allow_none=True)
    contentId = fields.String(required=True, validate=validate.Length(min=1))
    contentType = fields.String(required=True, validate=validate.OneOf(["Course", "Specialization", "Video"]))
    programId = fields.String(load_default=None, allow_none=True)
    isCompleted = fields.Boolean(required=True)
    completedAt = Epoch(_MS, load_default=None, allow_none=True)
    grade = Number(load_default=None, allow_none=True)
    overallProgress = Number(load_default=None, allow_none=True)
    enrolledAt = Epoch(_MS, required=True)
    lastActivityAt = Epoch(_MS, load_default=None, allow_none=True)
    updatedAt = Epoch(_MS, load_default=None, allow_none=True)
    membershipState = fields.String(required=True)
    approxTotalCourseHrs = Number(load_default=None, allow_none=True)
    pageGradeScale = Number(data_key=grade_scale.SCALE_KEY, load_default=None,
                            validate=validate.OneOf(contract.GRADE_SCALES))
    courseType = fields.String(load_default=None, allow_none=True)

    @validates_schema
    def _grade_fits_its_scale(self, d: dict[str, Any], **_kwargs: Any) -> None:
        grade = d.get("grade")
        if grade is None:
            return
        scale = d.get("pageGradeScale") or grade_scale.scale_of([grade])
        if not grade_scale.fits(grade, scale):
            raise ValidationError(f"{grade!r} is not a grade on the page's 0-{scale:g} scale", "grade")

    @post_load
    def _make(self, d: dict[str, Any], **_kwargs: Any) -> EnrollmentReport:
        grade = d.get("grade")
        return EnrollmentReport(
            id=d["id"], external_id=d["externalId"], email=d.get("email"), content_id=d["contentId"],
            content_type=d["contentType"], program_id=d.get("programId"), is_completed=d["isCompleted"],
            completed_at=d.get("completedAt"), grade=grade,
            grade_scale=d.get("pageGradeScale") or grade_scale.scale_of([grade]),
            overall_progress=d.get("overallProgress"),
            enrolled_at=d["enrolledAt"], last_activity_at=d.get("lastActivityAt"),
            updated_at=d.get("updatedAt"), membership_state=d["membershipState"],
            hours_spent=d.get(contract.HOURS_SPENT_FIELD), course_type=d.get("courseType"))


CONTENT = ContentSchema()
ENROLLMENT_REPORT = EnrollmentReportSchema()

_REPORT_REQUIRED_STR = ("id", "externalId", "contentId", "membershipState")
_REPORT_OPTIONAL_STR = ("email", "programId", "courseType")
def has_activity(row: Any) -> bool:
    """Whether an enrollment report row states a last activity (the field the report's activity
    filters apply to)."""
    return isinstance(row, dict) and row.get("lastActivityAt") is not None


_REPORT_OPTIONAL_EPOCH = ("completedAt", "lastActivityAt", "updatedAt")
_REPORT_OPTIONAL_NUMBER = ("grade", "overallProgress", contract.HOURS_SPENT_FIELD)
_CONTENT_TYPES = frozenset({"Course", "Specialization", "Video"})


def _number(value: Any) -> bool:
    return type(value) in (int, float)


def fast_report(record: Any) -> EnrollmentReport | None:
    """The row loaded without marshmallow when every field has its documented JSON type.

    Returns None for anything else (a type flip, a missing field, a string timestamp): the
    caller then loads it with :data:`ENROLLMENT_REPORT`, which accepts or rejects it. When this
    returns a value, it equals what the schema would load (a test checks it).
    """
    if type(record) is not dict:
        return None
    get = record.get
    for name in _REPORT_REQUIRED_STR:
        value = get(name)
        if type(value) is not str or not value:
            return None
    content_type = get("contentType")
    if type(content_type) is not str or content_type not in _CONTENT_TYPES or type(get("isCompleted")) is not bool:
        return None
    for name in _REPORT_OPTIONAL_STR:
        value = get(name)
        if value is not None and type(value) is not str:
            return None
    epochs = {}
    for name in ("enrolledAt", *_REPORT_OPTIONAL_EPOCH):
        value = get(name)
        if value is None and name != "enrolledAt":
            epochs[name] = None
            continue
        if type(value) is not int or value < 0:
            return None
        epochs[name] = _from_epoch(value, _MS)
        if epochs[name] is None:
            return None
    numbers = {}
    for name in _REPORT_OPTIONAL_NUMBER:
        value = get(name)
        if value is not None and not _number(value):
            return None
        numbers[name] = None if value is None else float(value)
    page_scale = get(grade_scale.SCALE_KEY)
    if page_scale is not None and (not _number(page_scale) or page_scale not in contract.GRADE_SCALES):
        return None
    scale = float(page_scale) if page_scale else grade_scale.scale_of([numbers["grade"]])
    if numbers["grade"] is not None and not grade_scale.fits(numbers["grade"], scale):
        return None                                   # the schema rejects it, with its reason
    return EnrollmentReport(
        id=record["id"], external_id=record["externalId"], email=get("email"), content_id=record["contentId"],
        content_type=record["contentType"], program_id=get("programId"), is_completed=record["isCompleted"],
        completed_at=epochs["completedAt"], grade=numbers["grade"],
        grade_scale=scale, overall_progress=numbers["overallProgress"],
        enrolled_at=epochs["enrolledAt"], last_activity_at=epochs["lastActivityAt"], updated_at=epochs["updatedAt"],
        membership_state=record["membershipState"], hours_spent=numbers[contract.HOURS_SPENT_FIELD],
        course_type=get("courseType"))
