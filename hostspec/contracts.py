"""The language-neutral contracts of the events: JSON Schema from the marshmallow schemas.

``python -m hostspec.cli.contracts --write`` writes them to ``schemas/`` with the AsyncAPI
(:mod:`hostspec.transport.asyncapi`) and OpenAPI (:mod:`hostspec.control.openapi`) documents,
and the AsyncAPI document once more as one self-contained file (:func:`bundled`).
"""
from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from hostspec import event_schemas as s
from hostspec.events import DATA_SCHEMAS, SCHEMA_URI, SPECVERSION
from hostspec.secrets import SecretField

DRAFT = "https://json-schema.org/draft/2020-12/schema"

# Rules that span several fields, for consumers in other languages (the code enforces them in
# hostspec.rules). The schema states those it can; an order between two dates it cannot, so it
# names them in a comment (ORDER_RULES: the only differences the contract tests allow).
ORDER_RULES = {
    s.LearnerStatDataSchema: "last_activity_at must not be earlier than first_activity_at",
    s.SyncRequestedDataSchema: "until must be later than since",
}
_LIVE_CONNECTION = ("tenant", "provider", "group_id", "settings")
_EXTRA: dict[type[Schema], dict[str, Any]] = {
    s.ConnectionDataSchema: {
        "if": {"properties": {"deleted": {"const": True}}, "required": ["deleted"]},
        "else": {"required": list(_LIVE_CONNECTION),
                 "properties": {k: {"not": {"type": "null"}} for k in _LIVE_CONNECTION}}},
    s.LearnerStatDataSchema: {"allOf": [
        {"if": {"properties": {"completion_status": {"const": "completed"}}},
         "then": {"properties": {"progress_percent": {"const": 100}, "completed_at": {"type": "string"}}}},
        {"if": {"properties": {"completion_status": {"enum": ["not_started", "in_progress"]}}},
         "then": {"properties": {"completed_at": {"type": "null"}}}},
        {"if": {"properties": {"completion_status": {"const": "not_started"}}},
         "then": {"properties": {"progress_percent": {"enum": [0, None]}}}},
    ]},
}


_LENGTH_WORDS = {"array": ("minItems", "maxItems"), "object": ("minProperties", "maxProperties"),
                 "string": ("minLength", "maxLength")}


def _validators(field: fields.Field, out: dict[str, Any]) -> None:
    for v in field.validators:
        if isinstance(v, validate.Length):   # a length means items, properties or characters
            low, high = _LENGTH_WORDS[out["type"]]
            if v.equal is not None:
                out[low] = out[high] = v.equal
            if v.min is not None:
                out[low] = v.min
            if v.max is not None:
                out[high] = v.max
        elif isinstance(v, validate.Range):
            if v.min is not None:
                out["minimum"] = v.min
            if v.max is not None:
                out["maximum"] = v.max
        elif isinstance(v, validate.OneOf):
            out["enum"] = list(v.choices)
        elif isinstance(v, validate.Regexp):
            out["pattern"] = v.regex.pattern
        elif isinstance(v, validate.Equal):
            out["const"] = v.comparable
        elif hasattr(v, "json_schema"):  # a rule function of hostspec.rules
            out.update(v.json_schema)


def field_schema(field: fields.Field) -> dict[str, Any]:
    out: dict[str, Any]
    if isinstance(field, SecretField):     # a provider's secret setting, as the admin API takes it
        return {"description": "a secret given by reference: {\"env\": NAME} or {\"file\": PATH}", "oneOf": [
            {"type": "object", "required": [k], "additionalProperties": False,
             "properties": {k: {"type": "string", "minLength": 1}}} for k in ("env", "file")]}
    if isinstance(field, fields.Nested):
        out = object_schema(field.schema.__class__)
    elif isinstance(field, fields.List):
        out = {"type": "array", "items": field_schema(field.inner)}
    elif isinstance(field, fields.Dict):
        out = {"type": "object"}
        if field.key_field is not None:
            out["propertyNames"] = field_schema(field.key_field)
        if field.value_field is not None:
            out["additionalProperties"] = field_schema(field.value_field)
    elif isinstance(field, fields.Email):
        out = {"type": "string", "format": "email"}
    elif isinstance(field, fields.DateTime):
        out = {"type": "string", "format": "date-time"}
    elif isinstance(field, fields.String):
        out = {"type": "string"}
    elif isinstance(field, fields.Integer):
        out = {"type": "integer"}
    elif isinstance(field, fields.Float):
        out = {"type": "number"}
    elif isinstance(field, fields.Boolean):
        out = {"type": "boolean"}
    elif isinstance(field, fields.Raw):
        return {}
    else:  # pragma: no cover - a new field type must be taught here first
        raise TypeError(f"no JSON Schema mapping for {type(field).__name__}")
    _validators(field, out)
    if field.allow_none:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def object_schema(schema_cls: type[Schema]) -> dict[str, Any]:
    schema = schema_cls()
    props = {name: field_schema(f) for name, f in schema.fields.items()}
    out: dict[str, Any] = {"type": "object", "properties": props,
                           "required": [n for n, f in schema.fields.items() if f.required],
                           "additionalProperties": False}
    doc = (schema_cls.__doc__ or "").strip()
    if doc:
        out = {"description": doc.splitlines()[0], **out}
    out.update(_EXTRA.get(schema_cls, {}))
    if schema_cls in ORDER_RULES:
        out["$comment"] = f"Also (not expressible in JSON Schema): {ORDER_RULES[schema_cls]}."
    return out


def event_schema(type_: str) -> dict[str, Any]:
    envelope = object_schema(s.EnvelopeSchema)
    envelope["properties"]["type"] = {"const": type_}
    envelope["properties"]["dataschema"] = {"const": SCHEMA_URI.format(type=type_)}
    envelope["properties"]["data"] = object_schema(DATA_SCHEMAS[type_])
    envelope["description"] = f"CloudEvents {SPECVERSION} structured event of type {type_}"
    return {"$schema": DRAFT, "$id": SCHEMA_URI.format(type=type_), "title": type_, **envelope}


def bundled(asyncapi: dict[str, Any]) -> dict[str, Any]:
    """``asyncapi`` with every payload under ``components.schemas`` instead of a sibling file:
    one document a schema registry or a code generator resolves alone. The schemas are those
    of :func:`event_schema`, less ``$schema`` and ``$id`` (an embedded schema keeps the
    document's base and dialect)."""
    messages = {}
    schemas = {}
    for key, message in asyncapi["components"]["messages"].items():
        type_ = message["name"]
        schemas[key] = {k: v for k, v in event_schema(type_).items() if k not in ("$schema", "$id")}
        messages[key] = {**message, "payload": {"$ref": f"#/components/schemas/{key}"}}
    return {**asyncapi, "components": {**asyncapi["components"], "messages": messages, "schemas": schemas}}
