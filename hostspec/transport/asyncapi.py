"""The AsyncAPI 3 document of the host's topics: their Kafka bindings, keys, headers and the events
each carries (``python -m hostspec.cli.contracts --write`` writes ``schemas/asyncapi.json``)."""
from __future__ import annotations

from typing import Any

from hostspec.topics import TOPIC_TYPES, Topics
from hostspec.transport.cloudevents import STRUCTURED_TYPE
from hostspec.transport.config import topic_specs

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
