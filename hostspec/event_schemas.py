"""marshmallow schemas of the ``data`` of every event type (strict: unknown fields are errors).

These classes are the source of truth of the public contract; ``schemas/*.json`` are generated
from them (``python -m hostspec.cli.contracts --write``) and a test keeps both equal.
"""
from __future__ import annotations

import re

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from hostspec import rules

IDENT = validate.Length(min=1, max=256)
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
                       error="must be 1-128 letters, digits, '_', '.', ':' or '-'")
LANG = validate.Regexp(r"^[a-z]{2,3}(_[A-Za-z]{2,4})?$", error="must be a language code like en, pt_BR")
HTTPS_URL = validate.Regexp(r"^https?://\S+$", error="must be an http(s) URL")
SCOPE = validate.OneOf(["catalog", "progress", "all"])
CONTENT_TYPES = ["course", "specialization", "video", "program", "labs", "certificate", "mooc",
                 "article", "assessment", "audiobook", "book", "channel", "curriculum",
                 "interactive", "journey", "linkedContent", "podcast", "roleplay", "topvoice"]
COMPLETION = ["not_started", "in_progress", "completed"]
PROVENANCE = validate.OneOf(["native", "derived", "absent", "retained"])
COURSE_FIELDS_WITH_PROVENANCE = ["title", "description", "language", "content_type", "launch_url", "image_url",
                                 "duration_minutes", "difficulty_level", "subjects", "skills",
                                 "provider_updated_at"]
STAT_FIELDS_WITH_PROVENANCE = ["completion_status", "progress_percent", "score_percent", "result",
                               "first_activity_at", "last_activity_at", "completed_at",
                               "time_spent_seconds"]


class Strict(Schema):
    class Meta:
        unknown = RAISE


class JsonInteger(fields.Integer):
    """A JSON integer, as JSON Schema counts them: ``5`` or ``5.0``, never ``"5"`` or ``5.5``."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return super()._validated(value)


class JsonNumber(fields.Float):
    """A JSON number: not a numeric string, not NaN or infinity."""

    def _validated(self, value):
        if isinstance(value, str):
            raise self.make_error("invalid", input=value)
        number = super()._validated(value)
        if number != number or number in (float("inf"), float("-inf")):
            raise self.make_error("invalid", input=value)
        return number


class JsonDateTime(fields.AwareDateTime):
    """An RFC 3339 date-time with its offset (JSON Schema's ``date-time``): seconds required
    (Python alone would take ``2026-01-01T00:00Z``), ``t`` and ``z`` in either case."""

    def __init__(self, **kwargs):
        super().__init__(format="iso", **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not RFC3339.match(value):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        return super()._deserialize(value.upper(), attr, data, **kwargs)


class JsonBoolean(fields.Boolean):
    """``true`` or ``false`` only (marshmallow also takes 1, "yes", "on"…)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value is not True and value is not False:
            raise self.make_error("invalid", input=value)
        return value


def from_1970(value) -> None:
    """A replay bound is in 1970 or later, in its own offset (providers take epoch times, which
    start there; the same year check as the JSON Schema's pattern)."""
    if value is not None and value.year < 1970:
        raise ValidationError("must be in 1970 or later")


from_1970.json_schema = {"pattern": "^(19[7-9][0-9]|[2-9][0-9]{3})-"}  # type: ignore[attr-defined]


class Identity(Strict):
    """Who the event belongs to: the tenant's connection at a provider, in one 360Learning group."""

    tenant = fields.String(required=True, validate=NAME)
    connection = fields.String(required=True, validate=NAME)
    provider = fields.String(required=True, validate=NAME)
    group_id = fields.String(required=True, validate=IDENT)


class SourceSchema(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1))
    logo_url = fields.String(required=True, allow_none=True, validate=HTTPS_URL)


class SkillSchema(Strict):
    name = fields.String(required=True, validate=validate.Length(min=1))
    provider_id = fields.String(required=True, allow_none=True)


class CourseDataSchema(Identity):
    """``learning.course.upserted.v1``: one provider item as a 360Learning external course."""

    external_id = fields.String(required=True, validate=IDENT)
    title = fields.String(required=True, validate=validate.Length(min=1, max=1000))
    description = fields.String(required=True, allow_none=True)
    locked_fields = fields.List(fields.String(validate=validate.OneOf(["title", "description"])),
                                required=True)
    language = fields.String(required=True, validate=LANG)
    content_type = fields.String(required=True, validate=validate.OneOf(CONTENT_TYPES))
    launch_url = fields.String(required=True, validate=HTTPS_URL)
    image_url = fields.String(required=True, allow_none=True, validate=HTTPS_URL)
    duration_minutes = JsonInteger(required=True, allow_none=True,
                                      validate=validate.Range(min=1, max=100000))
    difficulty_level = fields.String(required=True, allow_none=True,
                                     validate=validate.OneOf(["beginner", "intermediate", "advanced"]))
    sources = fields.List(fields.Nested(SourceSchema), required=True)
    subjects = fields.List(fields.String(validate=validate.Length(min=1)), required=True)
    skills = fields.List(fields.Nested(SkillSchema), required=True)
    provider_updated_at = JsonDateTime(required=True, allow_none=True)
    # always written since 2026-12 (absent from older events): where each value came from, and
    # when the provider's data was read; neither is part of the fingerprint (they describe the
    # content, they are not content)
    provenance = fields.Dict(keys=fields.String(validate=validate.OneOf(COURSE_FIELDS_WITH_PROVENANCE)),
                             values=fields.String(validate=PROVENANCE), load_default=None)
    as_of = JsonDateTime(load_default=None)
    fingerprint = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))


class CourseRemovedDataSchema(Identity):
    """``learning.course.removed.v1``: an item no longer available to the organisation."""

    external_id = fields.String(required=True, validate=IDENT)
    reason = fields.String(required=True, validate=validate.OneOf(["not_in_catalog", "removed_by_provider"]))
    last_seen_at = JsonDateTime(required=True, allow_none=True)


class LearnerSchema(Strict):
    email = fields.Email(required=True, allow_none=True)
    provider_id = fields.String(required=True, validate=IDENT)


class LearnerStatDataSchema(Identity):
    """``learning.learner_stat.upserted.v1``: one learner's state in one course (one attempt)."""

    course_external_id = fields.String(required=True, validate=IDENT)
    learner = fields.Nested(LearnerSchema, required=True)
    attempt_id = fields.String(required=True, validate=IDENT)
    completion_status = fields.String(required=True, validate=validate.OneOf(COMPLETION))
    progress_percent = JsonNumber(required=True, allow_none=True, validate=rules.percent_in_range)
    score_percent = JsonNumber(required=True, allow_none=True, validate=rules.percent_in_range)
    result = fields.String(required=True, allow_none=True, validate=validate.OneOf(["passed", "failed"]))
    first_activity_at = JsonDateTime(required=True, allow_none=True)
    last_activity_at = JsonDateTime(required=True, allow_none=True)
    completed_at = JsonDateTime(required=True, allow_none=True)
    time_spent_seconds = JsonInteger(required=True, allow_none=True,
                                        validate=rules.not_negative)
    provenance = fields.Dict(keys=fields.String(validate=validate.OneOf(STAT_FIELDS_WITH_PROVENANCE)),
                             values=fields.String(validate=PROVENANCE), required=True)
    as_of = JsonDateTime(required=True)
    fingerprint = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))

    @validates_schema
    def _learning_rules(self, data, **_kwargs):
        errors = rules.check_stat(data)
        if errors:
            raise ValidationError(errors)


class SyncRequestedDataSchema(Strict):
    """``learning.sync.requested.v1``: ask the host to sync one connection."""

    connection = fields.String(required=True, validate=NAME)
    provider = fields.String(required=True, validate=NAME)
    scope = fields.String(load_default="all", validate=SCOPE)
    requested_by = fields.String(load_default=None, allow_none=True)
    mode = fields.String(load_default="incremental", validate=validate.OneOf(["incremental", "full"]))
    dry_run = JsonBoolean(load_default=False)
    allow_mass_removal = JsonBoolean(load_default=False)
    since = JsonDateTime(load_default=None, allow_none=True, validate=from_1970)
    until = JsonDateTime(load_default=None, allow_none=True, validate=from_1970)
    learners = fields.List(fields.String(validate=IDENT), load_default=None, allow_none=True,
                           validate=validate.Length(min=1, max=10000))
    courses = fields.List(fields.String(validate=IDENT), load_default=None, allow_none=True,
                          validate=validate.Length(min=1, max=10000))

    @validates_schema
    def _range(self, data, **_kwargs):
        if data.get("since") and data.get("until") and data["until"] <= data["since"]:
            raise ValidationError({"until": ["must be later than since"]})


class CountsSchema(Strict):
    catalog_fetched = JsonInteger(required=True)
    courses_emitted = JsonInteger(required=True)
    courses_unchanged = JsonInteger(required=True)
    courses_removed = JsonInteger(required=True)
    progress_fetched = JsonInteger(required=True)
    stats_emitted = JsonInteger(required=True)
    stats_unchanged = JsonInteger(required=True)
    rejected = JsonInteger(required=True)
    skipped = JsonInteger(required=True)
    removals_held = JsonInteger(load_default=0)   # absent from the listing, not removed (the removal guard)


class RunErrorSchema(Strict):
    kind = fields.String(required=True)
    message = fields.String(required=True)


class SyncStatusDataSchema(Strict):
    """``learning.sync.status.v1``: a run started, progressed or ended."""

    request_id = fields.String(required=True, allow_none=True)
    run_id = fields.String(required=True, allow_none=True)
    tenant = fields.String(required=True, allow_none=True)
    connection = fields.String(required=True, allow_none=True)
    provider = fields.String(required=True, allow_none=True)
    scope = fields.String(required=True, allow_none=True, validate=SCOPE)
    phase = fields.String(required=True, validate=validate.OneOf(
        ["queued", "started", "progress", "completed", "partial", "failed", "skipped"]))
    dry_run = JsonBoolean(required=True)
    counts = fields.Nested(CountsSchema, required=True)
    error = fields.Nested(RunErrorSchema, required=True, allow_none=True)
    started_at = JsonDateTime(required=True, allow_none=True)
    ended_at = JsonDateTime(required=True, allow_none=True)
    worker = fields.String(required=True, allow_none=True)
    merged_into = fields.String(load_default=None)   # this request ran as part of that one's run (coalescing)
    # a queued request re-driving these dead letters (their event ids)
    redrive_of = fields.List(fields.String(validate=IDENT), load_default=None, validate=validate.Length(min=1))
    # records each scope's fetch will yield, when the provider said (progress displays)
    expected = fields.Dict(keys=fields.String(validate=validate.OneOf(["catalog", "progress"])),
                           values=JsonInteger(validate=validate.Range(min=0)), load_default=None)


class KafkaOriginSchema(Strict):
    topic = fields.String(required=True)
    partition = JsonInteger(required=True)
    offset = JsonInteger(required=True)


class RecordRejectedDataSchema(Strict):
    """``learning.record.rejected.v1``: a provider record or an input message that was refused."""

    stage = fields.String(required=True, validate=validate.OneOf(["request", "mapping", "validation", "delivery"]))
    reason = fields.String(required=True, validate=validate.Length(min=1))
    errors = fields.Raw(required=True, allow_none=True)
    record_id = fields.String(required=True, allow_none=True)
    record = fields.Raw(required=True, allow_none=True)
    request_id = fields.String(required=True, allow_none=True)
    run_id = fields.String(required=True, allow_none=True)
    tenant = fields.String(required=True, allow_none=True)
    connection = fields.String(required=True, allow_none=True)
    provider = fields.String(required=True, allow_none=True)
    origin = fields.Nested(KafkaOriginSchema, required=True, allow_none=True)
    raw_value = fields.String(required=True, allow_none=True)
    raw_encoding = fields.String(required=True, allow_none=True, validate=validate.OneOf(["utf-8", "base64"]))


class ParkedStatDataSchema(Strict):
    """``learning.learner_stat.parked.v1``: a stat the publisher could not deliver yet because its
    learner (or course) does not exist in 360Learning; it is tried again on later runs."""

    reason = fields.String(required=True, validate=validate.OneOf(["learner_unknown", "course_unknown"]))
    detail = fields.String(required=True)
    attempts = JsonInteger(required=True, validate=validate.Range(min=1))
    first_parked_at = JsonDateTime(required=True)
    parked_at = JsonDateTime(required=True)
    tenant = fields.String(required=True, validate=NAME)
    connection = fields.String(required=True, validate=NAME)
    provider = fields.String(required=True, validate=NAME)
    event = fields.Dict(required=True)


class ConnectionOptionsSchema(Strict):
    """The host's own settings of a connection (the connections file's connection-level keys)."""

    max_removal_share = JsonNumber(load_default=None, allow_none=True, validate=validate.Range(min=0, max=0.99))
    catalog_complete_days = JsonNumber(load_default=None, allow_none=True, validate=validate.Range(min=0, max=365))
    progress_lookback_hours = JsonNumber(load_default=None, allow_none=True,
                                         validate=validate.Range(min=0, max=2160))
    account_calls_per_second = JsonInteger(load_default=None, allow_none=True,
                                           validate=validate.Range(min=1, max=10000))


class ConnectionDataSchema(Strict):
    """``learning.connection.v1``: one connection as stored on the compacted control topic
    (keyed by its name; the latest event wins). Secrets appear only as references,
    ``{"env": NAME}`` or ``{"file": PATH}``; ``deleted`` events end a connection."""

    connection = fields.String(required=True, validate=NAME)
    revision = JsonInteger(required=True, validate=validate.Range(min=1))
    # the revision that created this life of the connection (its first, or the first after a
    # deletion), kept by later changes: its state belongs to it (hostspec.incarnation)
    created_revision = JsonInteger(load_default=None, allow_none=True, validate=validate.Range(min=1))
    deleted = JsonBoolean(load_default=False)
    tenant = fields.String(load_default=None, allow_none=True, validate=NAME)
    provider = fields.String(load_default=None, allow_none=True, validate=NAME)
    group_id = fields.String(load_default=None, allow_none=True, validate=IDENT)
    paused = JsonBoolean(load_default=False)
    settings = fields.Dict(keys=fields.String(validate=IDENT), load_default=None, allow_none=True)
    options = fields.Nested(ConnectionOptionsSchema, load_default=None, allow_none=True)
    schedule = fields.Dict(keys=fields.String(validate=IDENT), load_default=None, allow_none=True)
    target = fields.Dict(keys=fields.String(validate=IDENT), load_default=None, allow_none=True)
    changed_by = fields.String(required=True, validate=validate.Length(min=1, max=200))
    changed_at = JsonDateTime(required=True)

    @validates_schema
    def _whole(self, data, **_kwargs):
        if data.get("deleted"):
            return
        missing = [k for k in ("tenant", "provider", "group_id", "settings") if data.get(k) is None]
        if missing:
            raise ValidationError({k: ["required unless deleted"] for k in missing})


ROLES = ["platform_admin", "tenant_admin", "tenant_trigger"]


class AuditDataSchema(Strict):
    """``learning.audit.v1``: one call of the admin API that wrote (or tried to write), or whose
    token was refused. Never a token, a secret or a request body: who, what, when (the event's
    ``time``), from where, and the answer."""

    principal = fields.String(required=True, allow_none=True, validate=NAME)   # the token's name; null: none valid
    role = fields.String(required=True, allow_none=True, validate=validate.OneOf(ROLES))
    tenant = fields.String(required=True, allow_none=True, validate=NAME)      # the principal's tenant
    method = fields.String(required=True, validate=validate.Regexp(r"^[A-Z]{1,16}$", error="must be an HTTP method"))
    path = fields.String(required=True, validate=validate.Length(min=1, max=2048))
    route = fields.String(required=True, allow_none=True, validate=validate.Length(min=1, max=256))
    connection = fields.String(required=True, allow_none=True, validate=validate.Length(min=1, max=256))
    status = JsonInteger(required=True, validate=validate.Range(min=100, max=599))
    outcome = fields.String(required=True, validate=validate.OneOf(["done", "refused", "failed"]))
    reason = fields.String(required=True, allow_none=True, validate=validate.Length(max=300))
    remote_addr = fields.String(required=True, allow_none=True, validate=validate.Length(max=256))


class EnvelopeSchema(Strict):
    """CloudEvents 1.0 structured-mode attributes (``data`` is checked by the type's schema)."""

    specversion = fields.String(required=True, validate=validate.Equal("1.0"))
    id = fields.String(required=True, validate=validate.Length(min=1))
    source = fields.String(required=True, validate=validate.Length(min=1))
    type = fields.String(required=True)
    # never null (CloudEvents readers refuse it): left out when unknown; parse_event reads an older
    # event's null as left out
    subject = fields.String(validate=validate.Length(min=1))
    time = JsonDateTime(required=True)
    datacontenttype = fields.String(required=True, validate=validate.Equal("application/json"))
    dataschema = fields.String(required=True)
    partitionkey = fields.String(required=True, validate=validate.Length(min=1))
    data = fields.Dict(required=True)
