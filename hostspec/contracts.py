"""Generate the language-neutral contracts in ``schemas/`` from the marshmallow schemas.

``python -m hostspec.contracts --write [DIR]`` rewrites the files; ``--check`` exits 1 when the
files differ from the code (the test suite runs the same comparison).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields, validate

from hostspec import event_schemas as s
from hostspec.events import DATA_SCHEMAS, SCHEMA_URI, SPECVERSION
from hostspec.topics import TOPIC_TYPES, Topics
from hostspec.transport.cloudevents import STRUCTURED_TYPE
from hostspec.transport.config import topic_specs

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "schemas"
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


KAFKA_BINDING = "0.5.0"
KEY_SCHEMA = {"type": "string", "minLength": 1,
              "description": "the event's partitionkey, tenant/connection/provider/entity: one entity's "
                             "events share a key and stay in order; course, stat and parked events are "
                             "partitioned by their tenant (murmur2 of the tenant modulo the partitions), "
                             "requests by their connection"}
HEADERS_SCHEMA = {"type": "object", "required": ["content-type"],
                  "properties": {"content-type": {"type": "string", "const": STRUCTURED_TYPE,
                                                  "description": "CloudEvents Kafka protocol binding, "
                                                                 "structured mode"}}}


def _topic_binding(spec: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"cleanup.policy": spec.configs["cleanup.policy"].split(",")}
    if "retention.ms" in spec.configs:
        config["retention.ms"] = int(spec.configs["retention.ms"])
    if "delete.retention.ms" in spec.configs:
        config["delete.retention.ms"] = int(spec.configs["delete.retention.ms"])
    return {"kafka": {"topic": spec.name, "partitions": spec.partitions, "topicConfiguration": config,
                      "bindingVersion": KAFKA_BINDING}}


def asyncapi() -> dict[str, Any]:
    topics = Topics()
    specs = {spec.name: spec for spec in topic_specs(topics)}
    channels, operations, messages = {}, {}, {}
    for attr, types in TOPIC_TYPES.items():
        address = getattr(topics, attr)
        refs = {}
        for t in types:
            msg = t.replace(".", "_")
            messages[msg] = {"name": t, "contentType": "application/cloudevents+json",
                             "headers": HEADERS_SCHEMA, "payload": {"$ref": f"./{t}.json"},
                             "bindings": {"kafka": {"key": KEY_SCHEMA, "bindingVersion": KAFKA_BINDING}}}
            refs[msg] = {"$ref": f"#/components/messages/{msg}"}
        channels[attr] = {"address": address, "messages": refs, "bindings": _topic_binding(specs[address])}
        action = "receive" if attr in ("requests", "connections") else "send"
        operations[f"{action}_{attr}"] = {
            "action": action, "channel": {"$ref": f"#/channels/{attr}"},
            "messages": [{"$ref": f"#/channels/{attr}/messages/{m}"} for m in refs]}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Learning connector host", "version": "1.0.0",
                 "description": "Topics the connector host consumes and produces. Keys are the "
                                "events' partitionkey; values are CloudEvents in structured JSON, "
                                "said by each record's content-type header (the CloudEvents Kafka "
                                "binding; requests are also read in binary mode). Topic names are "
                                "the defaults and can be changed in configuration."},
        "defaultContentType": "application/cloudevents+json",
        "channels": channels, "operations": operations,
        "components": {"messages": messages},
    }


def rendered() -> dict[str, str]:
    """File name -> exact text of every contract file."""
    files = {f"{t}.json": event_schema(t) for t in DATA_SCHEMAS}
    files["asyncapi.json"] = asyncapi()
    from hostspec.control.openapi import document  # the admin API's document embeds these schemas
    files["admin-api.openapi.json"] = document()
    return {name: json.dumps(doc, indent=2, ensure_ascii=False) + "\n" for name, doc in files.items()}


def differences(directory: Path = DEFAULT_DIR) -> list[str]:
    out = []
    for name, text in rendered().items():
        path = directory / name
        if not path.exists():
            out.append(f"{name}: missing")
        elif path.read_text(encoding="utf-8") != text:
            out.append(f"{name}: differs from the code")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hostspec.contracts", description=__doc__)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true")
    group.add_argument("--check", action="store_true")
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args(argv)
    if args.write:
        args.directory.mkdir(parents=True, exist_ok=True)
        for name, text in rendered().items():
            (args.directory / name).write_text(text, encoding="utf-8")
        from hostspec.field_rules import DOC, rendered_doc  # the provider guide's field-rules table

        if DOC.exists():
            DOC.write_text(rendered_doc(DOC.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    diffs = differences(args.directory)
    for line in diffs:
        print(line, file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
