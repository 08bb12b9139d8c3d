"""``connector-host api``: the admin HTTP API, in the manner of Kafka Connect's REST API.

Resources (the OpenAPI 3.1 document is ``schemas/admin-api.openapi.json``, also served at
``/openapi.json``)::

    GET    /providers                                  installed providers and their settings
    PUT    /providers/{provider}/config/validate       check a connection without storing it
    GET    /connections                                every connection (no settings)
    POST   /connections                                create one (409 if it exists)
    GET    /connections/{name}                         its document, secrets as references
    PUT    /connections/{name}                         create or replace (If-Match: a revision)
    DELETE /connections/{name}                         delete it (its pending requests end refused)
    PUT    /connections/{name}/pause | resume          stop or restart its schedule
    POST   /connections/{name}/syncs                   request a sync, with replay filters
    GET    /connections/{name}/status                  its current phase, latest runs and delivery health
    GET    /connections/{name}/delivery                what its publisher delivered, dead-lettered, parked
    POST   /connections/{name}/check                   check its credentials at the provider
    GET    /connections/{name}/deadletters             its dead letters (stage, reason, since, until)
    POST   /connections/{name}/deadletters/redrive     send them again
    GET    /runs                                       runs of every connection (filters, pages)
    GET    /deadletters                                dead letters of every connection (filters, pages)
    GET    /requests/{id}                              a request: its status, run and dead letters
    GET    /audit                                      the audit trail (platform admins)
    GET    /health  /ready  /metrics  /openapi.json    without a token
    GET    /ui  /ui/static/{file}                      the web console (hostspec.control.console), without a token

Every other call needs ``Authorization: Bearer <token>``. A token names a principal with a role
(:mod:`hostspec.control.tokens`: a hashed tokens file re-read when it changes, or ``--token``
references for platform admins); what each role may call, and the answers that keep tenants
apart, are :mod:`hostspec.control.access`; a tenant's calls are held to a request rate
(:mod:`hostspec.control.rate`); writes and refused tokens are recorded on the audit topic
(:mod:`hostspec.control.audit`). The principal's name is recorded as the author of every change
(``changed_by``, ``requested_by``: ``api:NAME``). Errors are JSON objects
``{"error_code": 422, "message": "...", "errors": {"field.path": ["..."]}}`` as in Kafka Connect,
the field errors flat (:mod:`hostspec.control.field_errors`). Every answer and status is in the
OpenAPI document (a schemathesis test holds the two together).
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

import falcon
from marshmallow import ValidationError

from hostspec import __version__
from hostspec.contracts import object_schema
from hostspec.control import audit, console, field_errors
from hostspec.ops import health
from hostspec.ops.http_metrics import RequestMetrics
from hostspec.control import index, redrive
from hostspec.control.access import Access, check_name_free, check_sync, check_tenant, principal, visible
from hostspec.control.rate import TenantRate
from hostspec.control.tokens import Tokens
from hostspec.control.plane import Conflict, ControlPlane, NotFound, NotReadBack
from hostspec.event_schemas import NAME
from hostspec.errors import (
    ConfigError,
    DeliveryError,
    DocumentRefused,
    HostError,
    InvalidRequestError,
    SettingsRefused,
    TransportError,
)
from hostspec.secrets import Secret

MAX_BODY = 1_000_000
OPENAPI = Path(__file__).resolve().parents[2] / "schemas" / "admin-api.openapi.json"
PUBLIC = ("/health", "/ready", "/metrics", "/openapi.json")


class ApiError(Exception):
    """An answer other than success: its status and Kafka Connect's error body."""

    def __init__(self, status: int, message: str, errors: Any = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors

    @staticmethod
    def handle(_req: falcon.Request, resp: falcon.Response, exc: "ApiError", _params: Any) -> None:
        resp.status = falcon.code_to_http_status(exc.status)
        resp.media = {"error_code": exc.status, "message": exc.message,
                      **({"errors": field_errors.flat(exc.errors)} if exc.errors is not None else {})}


def _serialize_http_error(_req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Falcon's own errors (401, 404 of an unknown path, 405) in the same shape."""
    message = exc.title + (f": {exc.description}" if exc.description else "")
    resp.media = {"error_code": exc.status_code, "message": message}
    resp.content_type = falcon.MEDIA_JSON


def _error(status: int, message: str, errors: Any = None) -> ApiError:
    return ApiError(status, message, errors)


def _host_error(exc: HostError | DeliveryError) -> ApiError:
    if isinstance(exc, SettingsRefused):
        return _error(422, str(exc), exc.messages)
    if isinstance(exc, InvalidRequestError):
        return _error(422, str(exc), exc.messages)
    if isinstance(exc, NotFound):
        return _error(404, str(exc))
    if isinstance(exc, Conflict):
        return _error(409, str(exc))
    if isinstance(exc, NotReadBack):
        return _error(503, str(exc))
    if isinstance(exc, (DeliveryError, TransportError)):
        return _error(503, f"Kafka did not acknowledge it: {exc}")
    if isinstance(exc, ConfigError):
        return _error(400, str(exc))
    return _error(500, str(exc))


def _unavailable(req: falcon.Request, resp: falcon.Response, exc: DeliveryError, params: Any) -> None:
    """A write (a change, a sync request, a re-drive) the broker did not acknowledge in time."""
    ApiError.handle(req, resp, _host_error(exc), params)


def _body(req: falcon.Request, *, required: bool = False) -> Any:
    """The JSON object of the request (``{}`` when there is none, unless ``required``: 400)."""
    if req.content_length and req.content_length > MAX_BODY:
        raise _error(413, f"the body is larger than {MAX_BODY} bytes")
    raw = req.bounded_stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise _error(413, f"the body is larger than {MAX_BODY} bytes")
    if required and not raw.strip():
        raise _error(400, "a JSON body is required")
    try:
        value = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise _error(400, "the body is not JSON") from None
    if not isinstance(value, dict):
        raise _error(422, "the body must be a JSON object")
    return value


def _instant(req: falcon.Request, name: str, body: Mapping[str, Any] | None = None) -> datetime | None:
    text = (body or {}).get(name, req.get_param(name))
    if text is None:
        return None
    if not isinstance(text, str):
        raise _error(422, f"{name} must be an ISO 8601 date-time", {name: ["must be a string"]})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _error(400, f"{name} must be an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise _error(400, f"{name} must carry a time zone (Z or +hh:mm)")
    return moment


class _Resource:
    def __init__(self, plane: ControlPlane):
        self.plane = plane


class Root(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"version": __version__, "connections": len(visible(req, self.plane.log.documents().values()))}


class OpenApi:
    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = OPENAPI.read_bytes()
        resp.content_type = "application/json"


class Providers(_Resource):
    def on_get(self, _req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = [{"name": p.name, "version": p.info.version, "title": p.info.title, "scopes": list(p.info.scopes),
                       "settings": sorted(p.info.settings_schema().fields),
                       "secret_settings": list(p.info.secret_fields),
                       "settings_schema": object_schema(type(p.info.settings_schema()))}
                      for p in self.plane.plugins.providers.values()]


class Validate(_Resource):
    """Kafka Connect's config validation: 200 with the errors of the settings and the target (the
    provider's schema, the deployment's policy, the publisher's target rules); a body that is not
    a connection at all (its own fields: unknown, missing, mistyped) is refused with 422, as
    ``PUT /connections/{name}`` would refuse it."""

    def on_put(self, req: falcon.Request, resp: falcon.Response, provider: str) -> None:
        body = _body(req, required=True)
        if provider not in self.plane.plugins.providers:
            raise _error(404, f"no provider {provider!r}; installed: {', '.join(sorted(self.plane.plugins.providers))}")
        name = body.pop("connection", "validation")
        _name_ok(name)
        if body.get("provider", provider) != provider:
            raise _error(422, f"the body names another provider than the path ({provider!r})",
                         {"provider": [f"must be {provider!r} (the path's) or left out"]})
        body["provider"] = provider
        check_tenant(req, body.get("tenant"))
        try:
            self.plane.validate(name, body)
            errors: dict[str, list[str]] = {}
        except DocumentRefused as exc:     # not a connection at all: as PUT would refuse it
            raise _host_error(exc) from None
        except SettingsRefused as exc:
            errors = field_errors.flat(exc.messages)
        except HostError as exc:
            raise _host_error(exc) from None
        resp.media = {"provider": provider, "error_count": field_errors.count(errors), "errors": errors}


class Connections(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = visible(req, self.plane.connections())

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _body(req, required=True)
        name = body.pop("connection", None)
        if not isinstance(name, str) or not name:
            raise _error(422, "connection (the name) is required", {"connection": ["required"]})
        _name_ok(name)
        check_tenant(req, body.get("tenant"))
        check_name_free(req, self.plane.log, name)
        try:
            change = self.plane.put(name, body, actor=req.context.actor, create_only=True)
        except HostError as exc:
            raise _host_error(exc) from None
        resp.status = falcon.HTTP_201
        resp.location = f"/connections/{name}"
        resp.media = {**change.doc, "warnings": list(change.warnings)}


class Connection(_Resource):
    def on_get(self, _req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            resp.media = self.plane.connection(name)
        except HostError as exc:
            raise _host_error(exc) from None

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _name_ok(name)
        body = _body(req, required=True)
        if "connection" in body:
            raise _error(422, "the connection is named by the path, not the body", {"connection": ["set by the path"]})
        check_tenant(req, body.get("tenant"))
        try:
            change = self.plane.put(name, body, actor=req.context.actor, expected_revision=_if_match(req))
        except HostError as exc:
            raise _host_error(exc) from None
        resp.status = falcon.HTTP_201 if change.created else falcon.HTTP_200
        resp.media = {**change.doc, "warnings": list(change.warnings)}

    def on_delete(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            self.plane.delete(name, actor=req.context.actor, expected_revision=_if_match(req))
        except HostError as exc:
            raise _host_error(exc) from None
        resp.status = falcon.HTTP_204


class Pause(_Resource):
    def __init__(self, plane: ControlPlane, paused: bool):
        super().__init__(plane)
        self.paused = paused

    def on_put(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            doc = self.plane.set_paused(name, self.paused, actor=req.context.actor)
        except HostError as exc:
            raise _host_error(exc) from None
        resp.status = falcon.HTTP_202
        resp.media = ControlPlane.listed(doc)


class Syncs(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        body = _body(req)
        set_here = sorted(set(body) & {"connection", "provider", "requested_by"})
        if set_here:
            raise _error(422, f"set by the server, not the request: {', '.join(set_here)}",
                         {k: ["set by the server"] for k in set_here})
        check_sync(req, body)
        try:
            request = self.plane.request_sync(name, body, actor=req.context.actor)
        except HostError as exc:
            raise _host_error(exc) from None
        resp.status = falcon.HTTP_202
        resp.media = {"request_id": request.request_id, "connection": name, "scope": request.scope,
                      "mode": request.mode}


class Status(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000) or 20
        try:
            answer = self.plane.runs(name, limit=limit)
        except HostError as exc:
            raise _host_error(exc) from None
        try:
            answer["delivery"] = self.plane.delivery_health(name, answer["runs"])
        except (NotReadBack, NotFound):   # not followed here, not read yet, or deleted: the runs still answer
            answer["delivery"] = None
        except HostError as exc:
            raise _host_error(exc) from None
        resp.media = answer


class Delivery(_Resource):
    def on_get(self, _req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            resp.media = self.plane.delivery_health(name)
        except HostError as exc:
            raise _host_error(exc) from None


class Check(_Resource):
    def on_post(self, _req: falcon.Request, resp: falcon.Response, name: str) -> None:
        try:
            resp.media = self.plane.check(name)
        except HostError as exc:
            raise _host_error(exc) from None


REDRIVE_KEYS = frozenset({"ids", "stage", "reason", "since", "until"})


def _filter(req: falcon.Request, name: str, body: Mapping[str, Any] | None = None, *,
            tenant: str | None = None) -> redrive.Filter:
    """The selection of connection ``name``'s dead letters (``tenant``: its tenant's, and those
    refused before any tenant was known). A filter comes from the query or the body, never both
    (422): neither silently overrides the other, and a malformed query is refused either way."""
    body = body or {}
    unknown = set(body) - REDRIVE_KEYS
    if unknown:       # a filter the server does not read would widen the selection silently
        raise _error(422, f"unknown selection keys: {', '.join(sorted(unknown))}",
                     {k: ["unknown key"] for k in sorted(unknown)})
    for key in ("since", "until"):
        _instant(req, key)      # a malformed query value: 400, whatever the body says
    both = sorted(k for k in body if req.get_param(k) is not None)
    if both:
        raise _error(422, f"given both in the query and the body: {', '.join(both)}",
                     {k: ["give it in the query or the body, not both"] for k in both})
    ids = body.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise _error(422, "ids must be a list of dead-letter ids", {"ids": ["must be a list of strings"]})
    stage = body.get("stage", req.get_param("stage"))
    reason = body.get("reason", req.get_param("reason"))
    if reason is not None and not isinstance(reason, str):
        raise _error(422, "reason must be a string", {"reason": ["must be a string"]})
    return redrive.Filter(connection=name, stage=_stage(stage), reason=reason, since=_instant(req, "since", body),
                          until=_instant(req, "until", body), ids=frozenset(ids or ()), tenant=tenant)


def _ever_stored(plane: ControlPlane, name: str) -> None:
    """Dead letters outlive their connection, but a name no connection ever had answers 404, as
    every other ``/connections/{name}`` route does."""
    if plane.log.document(name) is None:
        raise _error(404, f"no connection {name!r}")


def _stage(stage: Any) -> str | None:
    if stage is not None and stage not in ("request", "mapping", "validation", "delivery"):
        raise _error(422, "stage must be request, mapping, validation or delivery", {"stage": ["unknown stage"]})
    return stage


def _history_tenant(plane: ControlPlane, name: str) -> str | None:
    """The tenant whose history ``name`` is: its live connection's, or the deleted one's."""
    try:
        return plane.history(name).get("tenant")
    except NotFound:
        return None


class DeadLetters(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _ever_stored(self.plane, name)
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000) or 100
        try:
            letters = self.plane.dead_letters(_filter(req, name, tenant=_history_tenant(self.plane, name)), limit=limit)
        except HostError as exc:
            raise _host_error(exc) from None
        resp.media = [self.plane.index.letter(dl) for dl in letters]


class Redrive(_Resource):
    def on_post(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        _ever_stored(self.plane, name)
        body = _body(req)
        force = body.pop("force", False)
        if not isinstance(force, bool):
            raise _error(422, "force must be true or false", {"force": ["must be a boolean"]})
        which = _filter(req, name, body, tenant=_history_tenant(self.plane, name))
        try:
            plan = self.plane.redrive(which, actor=req.context.actor, force=force)
        except HostError as exc:
            raise _host_error(exc) from None
        resp.status = falcon.HTTP_202
        resp.media = {"redriven": plan.redriven, "not_redriven": plan.not_redrivable,
                      "requests": [e.id for e in plan.requests], "already_redriven": plan.already_redriven}


# -- the fleet: runs, dead letters and requests of every connection (hostspec.control.index) ---
def _page_params(req: falcon.Request) -> tuple[int, str | None]:
    limit = req.get_param_as_int("limit", min_value=1, max_value=1000) or 100
    return limit, req.get_param("cursor")


def _paged(page: Any, row: Any) -> dict[str, Any]:
    return {"items": [row(i) for i in page.items], "total": page.total, "next_cursor": page.next_cursor}


class FleetRuns(_Resource):
    PHASES = ("queued", "started", "progress", "completed", "partial", "failed", "skipped")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = _page_params(req)
        who, tenant = principal(req), req.get_param("tenant")   # a tenant's token sees its own only
        provider, connection, phase = (req.get_param(k) for k in ("provider", "connection", "phase"))
        if phase is not None and phase not in self.PHASES:
            raise _error(422, f"phase must be one of {', '.join(self.PHASES)}", {"phase": ["unknown phase"]})
        within = index.time_filter(_instant(req, "since"), _instant(req, "until"))

        def which(r: Mapping[str, Any]) -> bool:
            return (who.sees(r.get("tenant")) and (tenant is None or r.get("tenant") == tenant)
                    and (provider is None or r.get("provider") == provider)
                    and (connection is None or r.get("connection") == connection)
                    and (phase is None or r.get("phase") == phase)
                    and within(r.get("started_at") or r.get("ended_at")))
        try:
            found = self.plane.run_page(which, limit=limit, cursor=cursor)
        except index.BadCursor as exc:      # well formed, as the document says, but not ours: 422
            raise _error(422, str(exc), {"cursor": [str(exc)]}) from None
        except HostError as exc:
            raise _host_error(exc) from None
        resp.media = _paged(found, lambda r: {**r, "connection_deleted": self.plane.connection_deleted(
            r.get("connection"), r.get("tenant"))})


def _true_or_false(req: falcon.Request, name: str) -> bool | None:
    """A boolean query parameter as the document writes it, ``true`` or ``false`` (falcon alone
    also reads ``no``, ``0`` and a blank value)."""
    value = req.get_param(name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise _error(400, f"{name} must be true or false")
    return value == "true"


class FleetDeadLetters(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, cursor = _page_params(req)
        who, tenant = principal(req), req.get_param("tenant")   # a tenant's token sees its own only
        provider, connection = req.get_param("provider"), req.get_param("connection")
        redriven = _true_or_false(req, "redriven")
        base = redrive.Filter(connection=connection, stage=_stage(req.get_param("stage")), reason=req.get_param("reason"),
                              since=_instant(req, "since"), until=_instant(req, "until"))

        def which(dl: redrive.DeadLetter) -> bool:
            t = dl.data.get("tenant")
            return (base(dl) and who.sees(t) and (tenant is None or t == tenant)
                    and (provider is None or dl.data.get("provider") == provider))
        try:
            found = self.plane.dead_letter_page(which, redriven=redriven, limit=limit, cursor=cursor)
        except index.BadCursor as exc:      # well formed, as the document says, but not ours: 422
            raise _error(422, str(exc), {"cursor": [str(exc)]}) from None
        except HostError as exc:
            raise _host_error(exc) from None
        resp.media = _paged(found, lambda d: {**d, "connection_deleted": self.plane.connection_deleted(
            d.get("connection"), d.get("tenant"))})


class Request(_Resource):
    def on_get(self, req: falcon.Request, resp: falcon.Response, request_id: str) -> None:
        try:
            found = self.plane.request(request_id)
        except HostError as exc:
            raise _host_error(exc) from None
        if found is None or not principal(req).sees(found["tenant"]):     # another tenant's: as absent
            raise _error(404, f"no request {request_id!r}")
        resp.media = found


class Audit:
    def __init__(self, trail: audit.MemoryAudit | audit.KafkaAudit):
        self.trail = trail

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=1000) or 100
        outcome = req.get_param("outcome")
        if outcome is not None and outcome not in ("done", "refused", "failed"):
            raise _error(422, "outcome must be done, refused or failed", {"outcome": ["unknown outcome"]})
        query = audit.Query(since=_instant(req, "since"), until=_instant(req, "until"),
                            principal=req.get_param("principal"), tenant=req.get_param("tenant"),
                            connection=req.get_param("connection"), outcome=outcome)
        try:
            resp.media = self.trail.entries(query, limit=limit)
        except HostError as exc:
            raise _host_error(exc) from None


def _if_match(req: falcon.Request) -> int | None:
    value = req.get_header("If-Match")
    if value is None:
        return None
    match = re.fullmatch(r'"?([0-9]{1,18})"?', value)     # the document's pattern
    if match is None:
        raise _error(400, "If-Match must be a connection revision (a number)")
    return int(match.group(1))


def _name_ok(name: Any) -> None:
    try:
        if not isinstance(name, str):
            raise ValidationError("not a string")
        NAME(name)
    except ValidationError:
        raise _error(422, "the connection name must be letters, digits, '_', '.', ':' or '-' (128 at most)",
                     {"connection": ["invalid name"]}) from None


def routes(plane: ControlPlane, trail: audit.MemoryAudit | audit.KafkaAudit | None = None) -> dict[str, Any]:
    """Path template -> resource (the OpenAPI document lists the same paths)."""
    return {
        "/": Root(plane),
        "/providers": Providers(plane),
        "/providers/{provider}/config/validate": Validate(plane),
        "/connections": Connections(plane),
        "/connections/{name}": Connection(plane),
        "/connections/{name}/pause": Pause(plane, True),
        "/connections/{name}/resume": Pause(plane, False),
        "/connections/{name}/syncs": Syncs(plane),
        "/connections/{name}/status": Status(plane),
        "/connections/{name}/delivery": Delivery(plane),
        "/connections/{name}/check": Check(plane),
        "/connections/{name}/deadletters": DeadLetters(plane),
        "/connections/{name}/deadletters/redrive": Redrive(plane),
        "/runs": FleetRuns(plane),
        "/deadletters": FleetDeadLetters(plane),
        "/requests/{request_id}": Request(plane),
        "/audit": Audit(trail or audit.MemoryAudit()),
    }


def make_app(plane: ControlPlane, tokens: Tokens | Mapping[str, Secret], *,
             trail: audit.MemoryAudit | audit.KafkaAudit | None = None, rate: TenantRate | None = None,
             kafka: Callable[[], bool] | None = None) -> falcon.App:
    """The API on ``plane``. ``tokens``: a :class:`Tokens`, or ``--token`` references (platform
    admins); ``trail``: where audit events go (default: kept in memory); ``rate``: each tenant's
    request rate (default 10 per second, bursts of 20); ``kafka``: whether Kafka answers now
    (a :class:`hostspec.transport.liveness.BrokerProbe`'s ``alive``), a ``/ready`` check."""
    tokens = tokens if isinstance(tokens, Tokens) else Tokens(tokens)
    trail = trail if trail is not None else audit.MemoryAudit()
    rate = rate if rate is not None else TenantRate(10, 20)
    router = falcon.routing.CompiledRouter()      # shared with the metrics: a refused request has its route too
    app = falcon.App(router=router, middleware=[RequestMetrics(router.find), audit.AuditMiddleware(trail),
                                                Access(tokens, plane.log, rate, PUBLIC)])
    app.add_error_handler(ApiError, ApiError.handle)
    app.add_error_handler(DeliveryError, _unavailable)     # a write Kafka did not store: 503, never 500
    app.set_error_serializer(_serialize_http_error)
    for path, resource in routes(plane, trail).items():
        app.add_route(path, resource)
    app.add_route("/openapi.json", OpenApi())
    console.add_routes(app)
    health.add_routes(app, lambda: {"control_topic": plane.log.ready, **({"kafka": kafka()} if kafka else {})})
    return app


def parse_token(text: str) -> tuple[str, Secret]:
    """``NAME=env:VAR`` or ``NAME=file:/path`` (a token's value is never given on a command line)."""
    name, _, ref = text.partition("=")
    kind, _, where = ref.partition(":")
    if not name or kind not in ("env", "file") or not where:
        raise ConfigError(f"--token {name or '?'}=...: give NAME=env:VARIABLE or NAME=file:/path")
    return name, Secret(**{kind: where})


__all__ = ["make_app", "parse_token", "routes"]
