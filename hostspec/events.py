"""Normalized events: CloudEvents 1.0 structured JSON, typed, keyed and deterministically named.

Every event the host emits is built here, validated against its type's marshmallow schema
(so nothing is emitted that a consumer would reject) and carries:

* ``partitionkey`` (CloudEvents partitioning extension, also the Kafka key):
  ``tenant/connection/provider/entity`` so all events of one entity keep their order;
* a deterministic ``id``: the same type, key and content give the same id, so a duplicate
  delivered twice is recognisable.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from marshmallow import Schema, ValidationError

from hostspec import event_schemas as s
from hostspec.fastcheck import compile_all

try:                                       # C speed for the per-record JSON (optional: json does the same)
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

SPECVERSION = "1.0"
SCHEMA_URI = "urn:learning-connectors:schema:{type}"
ID_NAMESPACE = uuid.UUID("6f1e6c52-8a0e-4a55-9a0e-2a3c7a4b9d10")
_ID_NAMESPACE_BYTES = ID_NAMESPACE.bytes

SYNC_REQUESTED = "learning.sync.requested.v1"
COURSE_UPSERTED = "learning.course.upserted.v1"
COURSE_REMOVED = "learning.course.removed.v1"
LEARNER_STAT_UPSERTED = "learning.learner_stat.upserted.v1"
SYNC_STATUS = "learning.sync.status.v1"
RECORD_REJECTED = "learning.record.rejected.v1"
STAT_PARKED = "learning.learner_stat.parked.v1"
CONNECTION = "learning.connection.v1"
AUDIT = "learning.audit.v1"

DATA_SCHEMAS: dict[str, type[Schema]] = {
    SYNC_REQUESTED: s.SyncRequestedDataSchema,
    COURSE_UPSERTED: s.CourseDataSchema,
    COURSE_REMOVED: s.CourseRemovedDataSchema,
    LEARNER_STAT_UPSERTED: s.LearnerStatDataSchema,
    SYNC_STATUS: s.SyncStatusDataSchema,
    RECORD_REJECTED: s.RecordRejectedDataSchema,
    STAT_PARKED: s.ParkedStatDataSchema,
    CONNECTION: s.ConnectionDataSchema,
    AUDIT: s.AuditDataSchema,
}
EVENT_TYPES = tuple(DATA_SCHEMAS)
_ORJSON_TYPES = frozenset({COURSE_UPSERTED, COURSE_REMOVED, LEARNER_STAT_UPSERTED})
_schema_instances = {t: cls() for t, cls in DATA_SCHEMAS.items()}
_fast_checks = compile_all({t: cls for t, cls in DATA_SCHEMAS.items() if t not in (SYNC_REQUESTED, CONNECTION)})
_envelope = s.EnvelopeSchema()
_FINGERPRINT_EXCLUDES = frozenset({"fingerprint", "as_of"})
# a course's provenance describes its content without being content (stats': it is, e.g. "retained")
_CONTENT_ONLY = {COURSE_UPSERTED: frozenset({"provenance"})}


@functools.lru_cache(maxsize=4096)
def isoformat(moment: datetime) -> str:
    """UTC ISO 8601 with milliseconds and ``Z``, the form every event uses (cached: a run writes
    its start time into every event, and providers repeat dates)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(value: Any) -> bytes:
    """:func:`canonical_json` as UTF-8 bytes, byte for byte, through orjson when it writes the
    same bytes: it does for everything but floats Python writes with an exponent (``1e-05``,
    ``1e+16``; orjson writes ``0.00001``, ``1e16``), which go through :mod:`json` instead, so
    that fingerprints stay what they were (state written before compares equal)."""
    if _orjson is not None and not _exponent_float(value):
        try:
            return _orjson.dumps(value, option=_orjson.OPT_SORT_KEYS)
        except TypeError:      # what orjson does not take (an int beyond 64 bits): json judges
            pass
    return canonical_json(value).encode("utf-8")


def _exponent_float(value: Any) -> bool:
    """Whether ``value`` holds a float json and orjson write differently (or a NaN, an infinity).

    One loop over the values of a flat record, recursing only into containers: this runs once
    per record."""
    kind = type(value)
    if kind is dict:
        value = value.values()
    elif kind is not list and kind is not tuple:
        return kind is float and value != 0 and not 1e-4 <= abs(value) < 1e16
    for item in value:
        kind = type(item)
        if kind is float:
            if item != 0 and not 1e-4 <= abs(item) < 1e16:
                return True
        elif (kind is dict or kind is list or kind is tuple) and _exponent_float(item):
            return True
    return False


def fingerprint(data: Mapping[str, Any], type_: str | None = None) -> str:
    """sha256 of the data's content, ignoring the fingerprint itself and ``as_of`` (freshness),
    and for ``type_`` what describes rather than is its content."""
    excluded = _FINGERPRINT_EXCLUDES | _CONTENT_ONLY.get(type_ or "", frozenset())
    content = {k: v for k, v in data.items() if k not in excluded}
    return hashlib.sha256(canonical_bytes(content)).hexdigest()


def event_id(type_: str, key: str, content: str) -> str:
    """``uuid5(ID_NAMESPACE, type, key, content)``, written out (a third of ``uuid.uuid5``'s cost)."""
    digest = bytearray(hashlib.sha1(_ID_NAMESPACE_BYTES + f"{type_}\n{key}\n{content}".encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50     # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80     # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def partition_key(tenant: str | None, connection: str | None, provider: str | None, entity: str) -> str:
    return "/".join([tenant or "-", connection or "-", provider or "-", entity])


@dataclass(frozen=True)
class Event:
    """An event ready for a transport: its type, Kafka key and CloudEvent body."""

    type: str
    key: str
    body: dict[str, Any]

    @property
    def id(self) -> str:
        return self.body["id"]

    @property
    def data(self) -> dict[str, Any]:
        return self.body["data"]

    def to_bytes(self) -> bytes:
        """The event as UTF-8 JSON for a transport: through orjson for the validated types of the
        hot path (their numbers are finite, checked), else :meth:`to_json`."""
        if _orjson is not None and self.type in _ORJSON_TYPES:
            # copied: orjson's bytes keep the buffer they were written in (8 KB for a 1.4 KB stat
            # here), and a transaction holds thousands of values until it commits
            return bytes(memoryview(_orjson.dumps(self.body)))
        return self.to_json().encode("utf-8")

    def to_json(self) -> str:
        """Strict JSON: a NaN or an infinity (which a provider may send inside a record that ends
        in a dead letter) is written as a string, never as a bare ``NaN`` other parsers refuse."""
        try:
            return json.dumps(self.body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except ValueError:
            return json.dumps(_finite(self.body), ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def validate_data(type_: str, data: Mapping[str, Any]) -> None:
    """Raise marshmallow ``ValidationError`` when ``data`` breaks its type's contract.

    A compiled pre-check (:mod:`hostspec.fastcheck`) clears well-formed data quickly; anything it
    does not clear is judged by the marshmallow schema itself.
    """
    fast = _fast_checks.get(type_)
    if fast is not None and fast(data):
        return
    errors = _schema_instances[type_].validate(data)
    if errors:
        raise ValidationError(errors)


def make_event(type_: str, data: dict[str, Any], *, key: str, source: str, subject: str | None,
               time: datetime, id_content: str | None = None, validate: bool = True) -> Event:
    """Build (and by default validate) one CloudEvent.

    :param id_content: what makes the id unique besides type and key; default: the data's
        ``fingerprint`` field, else its canonical JSON.
    :param subject: what the event is about; left out when unknown (CloudEvents readers refuse
        a ``null`` attribute).
    """
    if validate:
        validate_data(type_, data)
    if id_content is None:
        id_content = data.get("fingerprint") or canonical_json(data)
    body = {
        "specversion": SPECVERSION,
        "id": event_id(type_, key, id_content),
        "source": source,
        "type": type_,
        **({"subject": subject} if subject else {}),
        "time": isoformat(time),
        "datacontenttype": "application/json",
        "dataschema": SCHEMA_URI.format(type=type_),
        "partitionkey": key,
        "data": data,
    }
    return Event(type_, key, body)


def parse_event(raw: bytes | str | Mapping[str, Any], expected_type: str | None = None) -> Event:
    """Parse and validate a CloudEvent from JSON bytes, text or a mapping.

    :raise ValidationError: with marshmallow messages (``_schema`` for non-JSON input).
    """
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValidationError({"_schema": [f"not UTF-8: {exc.reason} at byte {exc.start}"]}) from None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValidationError({"_schema": [f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]}) from None
    if not isinstance(raw, Mapping):
        raise ValidationError({"_schema": ["a CloudEvent must be a JSON object"]})
    if "subject" in raw and raw["subject"] is None:     # written so before 2026-12: read as left out
        raw = {k: v for k, v in raw.items() if k != "subject"}
    errors = _envelope.validate(raw)
    type_ = raw.get("type")
    if not isinstance(type_, str) or type_ not in DATA_SCHEMAS:  # a list or a dict is not hashable
        errors.setdefault("type", []).append(f"unknown event type {type_!r}; known: {', '.join(EVENT_TYPES)}")
    elif expected_type is not None and type_ != expected_type:
        errors.setdefault("type", []).append(f"expected {expected_type}, got {type_}")
    elif isinstance(raw.get("data"), Mapping):
        data_errors = _schema_instances[type_].validate(raw["data"])
        if data_errors:
            errors["data"] = data_errors
    if errors:
        raise ValidationError(errors)
    data = _schema_instances[type_].load(raw["data"]) if type_ == SYNC_REQUESTED else dict(raw["data"])
    return Event(type_, raw.get("partitionkey") or "", {**raw, "data": data})


__all__ = [
    "AUDIT", "COURSE_REMOVED", "COURSE_UPSERTED", "DATA_SCHEMAS", "EVENT_TYPES", "Event",
    "LEARNER_STAT_UPSERTED", "RECORD_REJECTED", "STAT_PARKED", "SYNC_REQUESTED", "SYNC_STATUS",
    "canonical_json", "event_id", "fingerprint", "isoformat", "make_event", "parse_event",
    "partition_key", "validate_data",
]
