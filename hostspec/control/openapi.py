"""The admin API's OpenAPI 3.1 document, built from the same marshmallow schemas the API checks
bodies with (``python -m hostspec.cli.contracts --write`` writes ``schemas/admin-api.openapi.json``).

Written for generated clients (openapi-generator, openapi-python-client): every object a client
reads is a named schema under ``components``; a value that may be null is ``anyOf [schema,
{"type": "null"}]``, never an inline type array (:func:`clientable`); a field a body must give is
never nullable; every status an operation answers is listed with its content; validation errors
are flat, ``{"field.path": [messages]}`` (``FieldErrors``)."""
from __future__ import annotations

from typing import Any

from hostspec import __version__
from hostspec import event_schemas as s
from hostspec.contracts import object_schema

LISTED = ("connection", "provider", "tenant", "group_id", "paused", "revision", "changed_by", "changed_at")
SERVER_SET = ("connection", "revision", "created_revision", "deleted", "changed_by", "changed_at")
REQUEST_SET = ("connection", "provider", "requested_by")


def _without(schema: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    out = {**schema, "properties": {k: v for k, v in schema["properties"].items() if k not in names},
           "required": [r for r in schema["required"] if r not in names]}
    out.pop("if", None)
    out.pop("else", None)
    return out


def clientable(schema: Any) -> Any:
    """``schema`` with every ``"type": [T, "null"]`` written ``anyOf [{T...}, {"type": "null"}]``
    (generated clients read a nullable reference or enum that way; an inline type array makes
    some of them refuse ``null``)."""
    if isinstance(schema, list):
        return [clientable(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: clientable(v) for k, v in schema.items()}
    kind = out.get("type")
    if isinstance(kind, list) and "null" in kind:
        rest = [t for t in kind if t != "null"]
        inner = {k: v for k, v in out.items() if k not in ("type", "description")}
        if "enum" in inner:
            inner["enum"] = [v for v in inner["enum"] if v is not None]
        inner = {"type": rest[0] if len(rest) == 1 else rest, **inner}
        out = {**({"description": out["description"]} if "description" in out else {}),
               "anyOf": [inner, {"type": "null"}]}
    return out


def _nullable_ref(name: str) -> dict[str, Any]:
    return {"anyOf": [{"$ref": f"#/components/schemas/{name}"}, {"type": "null"}]}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without its null alternative (a field a body must give)."""
    kind = schema.get("type")
    if isinstance(kind, list):
        rest = [t for t in kind if t != "null"]
        schema = {**schema, "type": rest[0] if len(rest) == 1 else rest}
        if "enum" in schema:
            schema["enum"] = [v for v in schema["enum"] if v is not None]
    return schema


def _json(ref: str, example: Any = None) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"},
                                 **({"example": example} if example is not None else {})}}


# a connection a deployment with the Coursera provider stores as it is (its secret in the
# tenant's environment namespace): the bodies' example
EXAMPLE_BODY = {"tenant": "acme", "provider": "coursera", "group_id": "65a1b2c3d4e5f60718293a4b",
                "settings": {"org_id": "DjYCkBQTQV69TtWA7RuNug", "client_id": "acme-key",
                             "client_secret": {"env": "CONNECTOR_SECRET_ACME__COURSERA"}}}


def _answer(description: str, ref: str | None = None) -> dict[str, Any]:
    return {"description": description, **({"content": _json(ref)} if ref else {})}


ERRORS = {
    "400": _answer("a malformed body, parameter or If-Match, or no body where one is required", "Error"),
    "401": _answer("no bearer token, or an unknown one (recorded on the audit topic)", "Error"),
    "403": _answer("the token's role may not make this call (whatever it names), or the body names another "
                   "tenant than the token's", "Error"),
    "404": _answer("no such connection (or provider), or one of another tenant than the token's (the same "
                   "answer)", "Error"),
    "409": _answer("the connection exists (POST), or is not at the If-Match revision", "Error"),
    "413": _answer("a body larger than 1 MB", "Error"),
    "429": {"description": "the token's tenant is over its request rate", "headers": {"Retry-After": {
        "description": "seconds to wait before calling again", "schema": {"type": "integer", "minimum": 1}}},
            "content": _json("Error")},
    "422": _answer("refused: the errors name each field and what is wrong with it (the event schema, the "
                   "provider's settings schema, the deployment's settings policy)", "Error"),
    "503": _answer("Kafka did not acknowledge the change (nothing may be assumed stored), or stored it but this "
                   "server has not read it back yet (the message says which: GET before writing again)", "Error"),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {c: ERRORS[c] for c in sorted({"401", "403", "429", *codes})}


NAME = {"name": "name", "in": "path", "required": True, "description": "the connection's name",
        "schema": {"type": "string", "pattern": s.NAME.regex.pattern}}
IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
            "description": "the revision the change expects the connection to be at (optimistic concurrency)",
            "schema": {"type": "string", "pattern": "^\"?[0-9]{1,18}\"?$"}}
FILTERS = [{"name": n, "in": "query", "required": False, "description": d, "schema": sc} for n, d, sc in (
    ("stage", "only this stage", {"type": "string", "enum": ["request", "mapping", "validation", "delivery"]}),
    ("reason", "only reasons containing this text (case-insensitive)", {"type": "string"}),
    ("since", "only dead letters written at or after this time", {"type": "string", "format": "date-time"}),
    ("until", "only dead letters written before this time", {"type": "string", "format": "date-time"}))]
AUDIT_FILTERS = [{"name": n, "in": "query", "required": False, "description": d, "schema": sc} for n, d, sc in (
    ("since", "only calls at or after this time", {"type": "string", "format": "date-time"}),
    ("until", "only calls before this time", {"type": "string", "format": "date-time"}),
    ("principal", "only this principal's calls (a token's name)", {"type": "string"}),
    ("tenant", "only calls of this tenant's principals", {"type": "string"}),
    ("connection", "only calls naming this connection", {"type": "string"}),
    ("outcome", "only these results", {"type": "string", "enum": ["done", "refused", "failed"]}))]
LIMIT = {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}


def _add_delivery(schemas: dict[str, Any], paths: dict[str, Any]) -> None:
    """Delivery health, the credentials check and the warnings of a stored connection (issue 29)."""
    warnings = {"description": "advice on the stored connection (e.g. no publisher target): never a refusal",
                "type": "array", "items": {"type": "string"}}
    stored = schemas["Connection"]       # closed (additionalProperties false): warnings added to a copy
    schemas["ConnectionStored"] = {**stored, "description": "the connection as stored, with advice (warnings)",
                                   "properties": {**stored["properties"], "warnings": warnings}}
    for responses in (paths["/connections"]["post"]["responses"], paths["/connections/{name}"]["put"]["responses"]):
        for code in ("200", "201"):
            if code in responses:
                responses[code]["content"] = _json("ConnectionStored")
    count = {"type": "integer", "minimum": 0}
    when = {"type": ["string", "null"], "format": "date-time"}
    schemas["Delivery"] = {"type": "object", "required": [
        "connection", "delivered", "dead_lettered", "parked", "last_delivered_at"], "properties": {
        "connection": {"type": "string"},
        "delivered": {**count, "description": "items whose latest outcome at the publisher is delivered"},
        "dead_lettered": {**count, "description": "the connection's dead letters of stage delivery"},
        "parked": {**count, "description": "stats parked now (not delivered nor dead-lettered since)"},
        "last_delivered_at": when, "last_dead_lettered_at": when,
        "dead_letter_reasons": {"type": "object", "additionalProperties": count},
        "verdict": {"type": "string", "enum": ["failing", "parked", "delivering", "pending", "idle"],
                    "description": "in the status answer only: the delivery joined with the runs"}}}
    schemas["Runs"]["properties"]["delivery"] = {
        "description": "the delivery health with its verdict; null while this server has not read it",
        "anyOf": [{"$ref": "#/components/schemas/Delivery"}, {"type": "null"}]}
    step = {"type": "object", "required": ["name", "ok", "message"], "properties": {
        "name": {"type": "string", "enum": ["settings", "secrets", "provider"]}, "ok": {"type": "boolean"},
        "message": {"type": "string"}}}
    schemas["Check"] = {"type": "object", "required": ["connection", "ok", "checks"], "properties": {
        "connection": {"type": "string"}, "ok": {"type": "boolean"},
        "checks": {"type": "array", "items": step}, "warnings": warnings}}
    paths["/connections/{name}/delivery"] = {"parameters": [NAME], "get": {
        "summary": "what the publisher made of the connection's records: delivered, dead-lettered, parked now",
        "operationId": "delivery", "responses": {
            "200": _answer("the delivery health", "Delivery"),
            "503": _answer("this server has not read the delivery outcomes yet", "Error"), **_errors("404")}}}
    paths["/connections/{name}/check"] = {"parameters": [NAME], "post": {
        "summary": "check the connection's settings, secret references and credentials at the provider",
        "operationId": "checkConnection", "responses": {
            "200": _answer("each check; ok false when one failed (a provider out of reach too)", "Check"),
            **_errors("404")}}}


def _schemas() -> dict[str, Any]:
    connection = object_schema(s.ConnectionDataSchema)
    connection["properties"]["options"] = _nullable_ref("ConnectionOptions")
    body = _without(connection, SERVER_SET)
    body["required"] = ["tenant", "provider", "group_id", "settings"]
    for name in body["required"]:          # a body gives them: null is refused (422)
        body["properties"][name] = _not_null(body["properties"][name])
    body["description"] = ("A connection as written by a client: secrets as references only, {\"env\": NAME} or "
                           "{\"file\": PATH}, within the deployment's settings policy.")
    new = {**body, "properties": {"connection": connection["properties"]["connection"], **body["properties"]},
           "required": ["connection", *body["required"]]}
    sync = _without(object_schema(s.SyncRequestedDataSchema), REQUEST_SET)
    status = object_schema(s.SyncStatusDataSchema)
    status["properties"].update(counts={"$ref": "#/components/schemas/RunCounts"}, error=_nullable_ref("RunError"))
    listed = {"type": "object", "required": list(LISTED), "properties": {k: connection["properties"][k] for k in LISTED}}
    dead_letter = {"type": "object", "required": ["id", "time", "stage", "reason"], "properties": {
        "id": {"type": "string"}, "time": {"type": "string", "format": "date-time"},
        "stage": {"type": "string"}, "reason": {"type": "string"}, "connection": {"type": ["string", "null"]},
        "provider": {"type": ["string", "null"]}, "record_id": {"type": ["string", "null"]},
        "request_id": {"type": ["string", "null"]}, "partition": {"type": "integer"}, "offset": {"type": "integer"}}}
    secret_ref = {"description": "a secret given by reference: {\"env\": NAME} or {\"file\": PATH}", "oneOf": [
        {"type": "object", "required": [k], "additionalProperties": False,
         "properties": {k: {"type": "string", "minLength": 1}}} for k in ("env", "file")]}
    schemas = {
        "Connection": connection, "ConnectionOptions": object_schema(s.ConnectionOptionsSchema),
        "ConnectionBody": body, "NewConnection": new, "ConnectionListed": listed,
        "ValidationBody": {**body, "description": "a connection to check: a ConnectionBody, optionally named, its "
                                                  "provider the path's (given or not)",
                           "required": [r for r in body["required"] if r != "provider"],
                           "properties": {"connection": connection["properties"]["connection"], **body["properties"]}},
        "SyncParameters": sync, "SyncRequested": {"type": "object", "required": ["request_id", "connection", "scope",
                                                                                "mode"], "properties": {
            "request_id": {"type": "string"}, "connection": {"type": "string"}, "scope": {"type": "string"},
            "mode": {"type": "string"}}},
        "SyncStatus": status, "RunCounts": object_schema(s.CountsSchema), "RunError": object_schema(s.RunErrorSchema),
        "FieldErrors": {"description": "messages by field: a nested field is named by its path, dot-separated "
                                       "(settings.client_id; a list item by its index, courses.0)",
                        "type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "Error": {"type": "object", "required": ["error_code", "message"],
                  "properties": {"error_code": {"type": "integer"}, "message": {"type": "string"},
                                 "errors": {"$ref": "#/components/schemas/FieldErrors"}}},
        "DeadLetter": dead_letter,
        "RedriveSelection": {"type": "object", "additionalProperties": False, "properties": {
            "ids": {"type": "array", "items": {"type": "string"}},
            "stage": {"type": "string", "enum": ["request", "mapping", "validation", "delivery"]},
            "reason": {"type": "string"}, "since": {"type": "string", "format": "date-time"},
            "until": {"type": "string", "format": "date-time"},
            "force": {"type": "boolean", "description": "send again those already re-driven too"}}},
        "Redriven": {"type": "object", "required": ["redriven", "not_redriven", "requests"], "properties": {
            "redriven": {"type": "array", "items": {"type": "string"}},
            "not_redriven": {"type": "object", "additionalProperties": {"type": "string"}},
            "requests": {"type": "array", "items": {"type": "string"}},
            "already_redriven": {"type": "object", "description": "dead letters re-driven before: nothing sent "
                                 "again (without force)", "additionalProperties": {"type": "object"}}}},
        "Validation": {"type": "object", "required": ["provider", "error_count", "errors"],
                       "properties": {"provider": {"type": "string"}, "error_count": {"type": "integer"},
                                      "errors": {"$ref": "#/components/schemas/FieldErrors"}}},
        "SecretReference": secret_ref,
        "Provider": {"type": "object", "required": ["name", "version", "title", "scopes", "settings",
                                                    "secret_settings", "settings_schema"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "title": {"type": "string"},
            "scopes": {"type": "array", "items": {"type": "string"}},
            "settings": {"description": "the settings' names", "type": "array", "items": {"type": "string"}},
            "secret_settings": {"description": "the settings given as secret references",
                                "type": "array", "items": {"type": "string"}},
            "settings_schema": {"description": "the settings' JSON Schema (draft 2020-12): the connection's "
                                               "settings object", "type": "object"}}},
        "AuditEntry": {"description": "a write, or a refused token, as recorded on the audit topic (never a token, "
                                      "a secret or a body)", "type": "object", "properties": {
            "id": {"type": "string"}, "time": {"type": "string", "format": "date-time"},
            **object_schema(s.AuditDataSchema)["properties"]}},
        "Runs": {"type": "object", "required": ["connection", "revision", "paused", "phase", "runs"], "properties": {
            "connection": {"type": "string"}, "revision": {"type": "integer"}, "paused": {"type": "boolean"},
            "deleted": {"type": "boolean", "description": "the connection was deleted: its history stays"},
            "phase": {"type": ["string", "null"]},
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/SyncStatus"}}}},
        "Version": {"type": "object", "required": ["version", "connections"], "properties": {
            "version": {"type": "string"}, "connections": {"type": "integer"}}},
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        "Readiness": {"type": "object", "required": ["ready", "checks"], "properties": {
            "ready": {"type": "boolean"}, "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "error": {"type": "string"}}},
    }
    return {name: clientable(schema) for name, schema in schemas.items()}


def document() -> dict[str, Any]:
    schemas = _schemas()
    paths = {
        "/": {"get": {"summary": "the server's version", "operationId": "root",
                      "responses": {"200": _answer("the version and how many connections the token sees", "Version"),
                                    **_errors()}}},
        "/providers": {"get": {"summary": "installed providers and their settings", "operationId": "listProviders",
                               "responses": {"200": {"description": "providers", "content": {"application/json": {
                                   "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Provider"}}}}}, **_errors()}}},
        "/providers/{provider}/config/validate": {"put": {
            "summary": "check a connection for this provider without storing it", "operationId": "validate",
            "parameters": [{"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": _json("ValidationBody", EXAMPLE_BODY)},
            "responses": {"200": _answer("the errors of the settings and the target by field (none: it would be "
                                         "stored); a body that is not a connection answers 422", "Validation"),
                          **_errors("400", "404", "413", "422")}}},
        "/connections": {
            "get": {"summary": "every connection", "operationId": "listConnections", "responses": {
                "200": {"description": "connections", "content": {"application/json": {"schema": {
                    "type": "array", "items": {"$ref": "#/components/schemas/ConnectionListed"}}}}}, **_errors()}},
            "post": {"summary": "create a connection", "operationId": "createConnection",
                     "requestBody": {"required": True, "content": _json(
                         "NewConnection", {"connection": "acme-coursera", **EXAMPLE_BODY})},
                     "responses": {"201": _answer("stored (acknowledged by Kafka)", "Connection"),
                                   **_errors("400", "409", "413", "422", "503")}}},
        "/connections/{name}": {
            "parameters": [NAME],
            "get": {"summary": "a connection's document", "operationId": "getConnection",
                    "responses": {"200": _answer("the latest revision", "Connection"), **_errors("404")}},
            "put": {"summary": "create or replace a connection", "operationId": "putConnection",
                    "parameters": [IF_MATCH],
                    "requestBody": {"required": True, "content": _json("ConnectionBody", EXAMPLE_BODY)},
                    "responses": {"200": _answer("replaced", "Connection"), "201": _answer("created", "Connection"),
                                  **_errors("400", "409", "413", "422", "503")}},
            "delete": {"summary": "delete a connection: its schedule stops, its pending requests end refused",
                       "operationId": "deleteConnection", "parameters": [IF_MATCH],
                       "responses": {"204": {"description": "deleted"}, **_errors("400", "404", "409", "503")}}},
        "/connections/{name}/pause": {"parameters": [NAME], "put": {
            "summary": "stop the connection's schedule (requests sent to it still run)", "operationId": "pause",
            "responses": {"202": _answer("paused: the connection as listed", "ConnectionListed"),
                          **_errors("404", "503")}}},
        "/connections/{name}/resume": {"parameters": [NAME], "put": {
            "summary": "restart the connection's schedule", "operationId": "resume",
            "responses": {"202": _answer("resumed: the connection as listed", "ConnectionListed"),
                          **_errors("404", "503")}}},
        "/connections/{name}/syncs": {"parameters": [NAME], "post": {
            "summary": "request a sync (scope, mode, dry run, replay filters)", "operationId": "requestSync",
            "requestBody": {"required": False, "content": _json("SyncParameters")},
            "responses": {"202": _answer("published", "SyncRequested"),
                          **_errors("400", "404", "413", "422", "503")}}},
        "/connections/{name}/status": {"parameters": [NAME], "get": {
            "summary": "the connection's current phase and latest runs", "operationId": "status",
            "parameters": [LIMIT], "responses": {"200": _answer("runs, newest last", "Runs"), **_errors("400", "404")}}},
        "/connections/{name}/deadletters": {"parameters": [NAME], "get": {
            "summary": "the dead letters of a connection, live or deleted (404: no connection of that name was "
                       "ever stored)", "operationId": "listDeadLetters", "parameters": [*FILTERS, LIMIT],
            "responses": {"200": {"description": "dead letters, oldest first", "content": {"application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/FleetDeadLetter"}}}}},
                **_errors("400", "404", "422")}}},
        "/connections/{name}/deadletters/redrive": {"parameters": [NAME], "post": {
            "summary": "send dead letters again: refused requests as new requests, records as a full sync of "
                       "their connection; each re-drive leaves a queued status (since and until in the query "
                       "or the body, not both: 422)", "operationId": "redrive",
            "parameters": FILTERS[2:], "requestBody": {"required": False, "content": _json("RedriveSelection")},
            "responses": {"202": _answer("published", "Redriven"), **_errors("400", "404", "413", "422", "503")}}},
        "/audit": {"get": {
            "summary": "the audit trail: every write and every refused token, oldest first (platform admins only)",
            "operationId": "listAudit", "parameters": [*AUDIT_FILTERS, LIMIT],
            "responses": {"200": {"description": "audit entries", "content": {"application/json": {"schema": {
                "type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}}}},
                **_errors("400", "422", "503")}}},
    }
    _add_delivery(schemas, paths)
    fleet_schemas, fleet_paths = _fleet()
    schemas.update(fleet_schemas)
    paths.update(fleet_paths)
    text = {"text/plain": {"schema": {"type": "string"}}}
    for path, what, answers in (
            ("/health", "200 while the process serves", {"200": _answer("serving", "Health")}),
            ("/ready", "200 when ready, else 503", {"200": _answer("ready", "Readiness"),
                                                    "503": _answer("not ready: the checks say which", "Readiness")}),
            ("/metrics", "Prometheus metrics", {"200": {"description": "Prometheus' text format", "content": text}}),
            ("/openapi.json", "this document", {"200": {"description": "this document", "content": {
                "application/json": {"schema": {"type": "object"}}}}})):
        paths[path] = {"get": {"summary": what, "operationId": path.strip("/").replace(".", "_"), "security": [],
                               "responses": answers}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Learning connector host: admin API", "version": __version__,
                 "description": "Connections, syncs and dead letters of a connector-host deployment, in the manner "
                                "of Kafka Connect's REST API. Every change is a learning.connection.v1 event on the "
                                "compacted control topic, answered only once Kafka stored it. A token's role "
                                "(platform_admin, tenant_admin, tenant_trigger) decides what it may call; a tenant's "
                                "tokens see only that tenant's connections (docs/security.md). Writes and refused "
                                "tokens are learning.audit.v1 events on the audit topic."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "servers": [{"url": "http://localhost:8083"}],
        "security": [{"bearer": []}],
        "paths": clientable(paths),     # routes added in blocks of their own are written so too
        "components": {"schemas": clientable(schemas),
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "a token of a principal with a role (a hashed tokens "
                                                                     "file, or --token references for platform admins)"}}},
    }


def _fleet() -> tuple[dict[str, Any], dict[str, Any]]:
    """The fleet's lists (runs, dead letters, requests of every connection the token sees): their
    schemas and paths, kept apart from the per-connection routes."""
    def q(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    page_params = [
        q("limit", "the most items in this page (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}),
        q("cursor", "where the page starts: the next_cursor of the page before (another answers 422; empty: "
                    "the first page)", {"type": "string", "pattern": "^[A-Za-z0-9_-]*$"})]
    common = [q("tenant", "only this tenant's (a tenant's token sees only its own)", {"type": "string"}),
              q("provider", "only this provider's", {"type": "string"}),
              q("connection", "only this connection's (a deleted one's too)", {"type": "string"})]
    since_until = [q("since", "only at or after this time", {"type": "string", "format": "date-time"}),
                   q("until", "only before this time", {"type": "string", "format": "date-time"})]
    mark = {"type": ["object", "null"], "description": "the re-drive that sent it again (null: never re-driven)",
            "properties": {"by": {"type": ["string", "null"]}, "at": {"type": "string", "format": "date-time"},
                           "request_id": {"type": ["string", "null"]}}}
    deleted = {"type": "boolean", "description": "its connection was deleted (or the name is another tenant's now)"}
    run = object_schema(s.SyncStatusDataSchema)
    run["properties"].update(counts={"$ref": "#/components/schemas/RunCounts"}, error=_nullable_ref("RunError"))

    def page_of(ref: str) -> dict[str, Any]:
        return {"type": "object", "required": ["items", "total", "next_cursor"], "properties": {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}},
            "total": {"type": "integer", "description": "items matching the filters, in every page"},
            "next_cursor": {"type": ["string", "null"], "description": "the next page's cursor (null: the last page)"}}}

    schemas = {
        "FleetRun": {**run, "description": "a run's latest sync.status, and whether its connection is deleted",
                     "properties": {**run["properties"], "connection_deleted": deleted}},
        "FleetDeadLetter": {"allOf": [{"$ref": "#/components/schemas/DeadLetter"}, {"type": "object", "properties": {
            "tenant": {"type": ["string", "null"]}, "errors": {"description": "the field errors (null: none)"},
            "redriven": mark, "connection_deleted": deleted}}]},
        "RunPage": page_of("FleetRun"),
        "DeadLetterPage": page_of("FleetDeadLetter"),
        "Request": {"type": "object", "properties": {
            "request_id": {"type": "string"}, "connection": {"type": ["string", "null"]},
            "tenant": {"type": ["string", "null"]}, "provider": {"type": ["string", "null"]},
            "requested_by": {"type": ["string", "null"]},
            "requested_at": {"type": ["string", "null"], "format": "date-time"},
            "status": {"description": "its latest status (null: none yet)",
                       "anyOf": [{"$ref": "#/components/schemas/SyncStatus"}, {"type": "null"}]},
            "merged_into": {"type": ["string", "null"], "description": "the run it ran in, merged with another "
                                                                       "request (coalescing)"},
            "merged_into_request": {"type": ["string", "null"], "description": "the request that run was for"},
            "dead_letters": {"type": "array", "items": {"$ref": "#/components/schemas/FleetDeadLetter"}}}},
    }
    phases = ["queued", "started", "progress", "completed", "partial", "failed", "skipped"]
    stages = ["request", "mapping", "validation", "delivery"]
    paths = {
        "/runs": {"get": {
            "summary": "runs of every connection the token sees, newest first, in pages", "operationId": "listRuns",
            "parameters": [*common, q("phase", "only runs in this phase", {"type": "string", "enum": phases}),
                           *since_until, *page_params],
            "responses": {"200": _answer("a page of runs (their latest status)", "RunPage"),
                          **_errors("400", "422", "503")}}},
        "/deadletters": {"get": {
            "summary": "dead letters of every connection the token sees, newest first, in pages",
            "operationId": "listFleetDeadLetters",
            "parameters": [*common, q("stage", "only this stage", {"type": "string", "enum": stages}),
                           q("reason", "only reasons containing this text (case-insensitive)", {"type": "string"}),
                           *since_until, q("redriven", "only those re-driven (true) or not (false)",
                                           {"type": "boolean"}), *page_params],
            "responses": {"200": _answer("a page of dead letters", "DeadLetterPage"),
                          **_errors("400", "422", "503")}}},
        "/requests/{request_id}": {
            "parameters": [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "the id a sync request was answered with"}],
            "get": {"summary": "a sync request: its latest status, the run it merged into, its dead letters",
                    "operationId": "getRequest",
                    "responses": {"200": _answer("the request", "Request"), **_errors("404", "503")}}},
    }
    return schemas, paths


__all__ = ["document"]
