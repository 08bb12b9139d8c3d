"""Who may call what on the admin API: one rule per route and method, enforced for every call.

The checks, in this order, so that no answer tells a tenant anything of another's objects:

1. the bearer token names a principal (else 401, ``WWW-Authenticate: Bearer``);
2. the principal's tenant is within its request rate (else 429 with ``Retry-After``);
3. the principal's role may call this route at all (else 403; decided by the role alone, the
   same whatever object the path names);
4. the connection the path names is the principal's tenant's (else 404, the very answer an
   absent connection gets).

Handlers then keep lists to the principal's objects (:func:`visible`) and refuse a body naming
another tenant (:func:`check_tenant`, 403). A route and method with no rule is refused to every
role but platform admins (a test keeps :data:`RULES` equal to the route table).

The public paths (``/health`` and the like) and the web console's files (``/ui``,
:mod:`hostspec.control.console`) need no token. Every answer says ``X-Content-Type-Options:
nosniff``; the console's carry the browser's headers too (:data:`BROWSER_HEADERS`: a
Content-Security-Policy that allows only the console's own files, no inline script or style, and
connections to this origin only).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import falcon

from hostspec.control import console
from hostspec.control.rate import TenantRate
from hostspec.control.tokens import PLATFORM_ADMIN, TENANT_ADMIN, TENANT_TRIGGER, Principal, Tokens

PLATFORM = frozenset({PLATFORM_ADMIN})
ADMINS = frozenset({PLATFORM_ADMIN, TENANT_ADMIN})
EVERYONE = frozenset({PLATFORM_ADMIN, TENANT_ADMIN, TENANT_TRIGGER})


@dataclass(frozen=True)
class Rule:
    """``roles`` may call it; ``scope``: what the path's ``{name}`` must be for a tenant role:
    ``live`` its live connection, ``live_or_free`` that or no live connection (PUT creates),
    ``history`` a connection of its, live or deleted (dead letters outlive a connection)."""

    roles: frozenset[str]
    scope: str | None = None


BROWSER_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}

NAME = "/connections/{name}"
RULES: dict[tuple[str, str], Rule] = {
    ("GET", "/"): Rule(EVERYONE),
    ("GET", "/providers"): Rule(ADMINS),
    ("PUT", "/providers/{provider}/config/validate"): Rule(ADMINS),
    ("GET", "/connections"): Rule(EVERYONE),
    ("POST", "/connections"): Rule(ADMINS),
    ("GET", NAME): Rule(ADMINS, "live"),
    ("PUT", NAME): Rule(ADMINS, "live_or_free"),
    ("DELETE", NAME): Rule(ADMINS, "live"),
    ("PUT", NAME + "/pause"): Rule(ADMINS, "live"),
    ("PUT", NAME + "/resume"): Rule(ADMINS, "live"),
    ("POST", NAME + "/syncs"): Rule(EVERYONE, "live"),
    ("GET", NAME + "/status"): Rule(EVERYONE, "history"),
    ("GET", NAME + "/delivery"): Rule(EVERYONE, "live"),
    ("POST", NAME + "/check"): Rule(ADMINS, "live"),
    ("GET", NAME + "/deadletters"): Rule(ADMINS, "history"),
    ("POST", NAME + "/deadletters/redrive"): Rule(ADMINS, "history"),
    ("GET", "/audit"): Rule(PLATFORM),
    # the fleet: lists kept to the caller's tenant, another tenant's request answers 404 (api.py)
    ("GET", "/runs"): Rule(EVERYONE),
    ("GET", "/deadletters"): Rule(ADMINS),
    ("GET", "/requests/{request_id}"): Rule(EVERYONE),
}


def not_found(name: str) -> falcon.HTTPError:
    """What a connection the caller may not see answers: the same as an absent one."""
    return falcon.HTTPNotFound(title=f"no connection {name!r}")


def forbidden(message: str) -> falcon.HTTPError:
    return falcon.HTTPForbidden(title=message)


def principal(req: falcon.Request) -> Principal:
    return req.context.principal


def visible(req: falcon.Request, rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The rows (connections, runs, dead letters: each with its ``tenant``) the caller may see."""
    who = principal(req)
    return [r for r in rows if who.sees(r.get("tenant"))]


def check_tenant(req: falcon.Request, tenant: Any) -> None:
    """A body may name only the caller's own tenant (403 otherwise; a platform admin names any)."""
    who = principal(req)
    if not who.platform and tenant != who.tenant:
        raise forbidden(f"a {who.role} token writes connections of tenant {who.tenant!r} only")


def check_name_free(req: falcon.Request, documents: Any, name: str) -> None:
    """Connection names are one namespace: creating a name another tenant holds answers 409 and
    tells only that the name is taken (not whose, nor its revision)."""
    who = principal(req)
    doc = documents.document(name)
    if not who.platform and doc is not None and not doc.get("deleted") and not who.sees(doc.get("tenant")):
        raise falcon.HTTPConflict(title=f"the connection name {name!r} is taken: choose another")


def check_sync(req: falcon.Request, params: Mapping[str, Any]) -> None:
    """A trigger token requests syncs; overriding the removal guard is an admin's decision."""
    who = principal(req)
    if who.role == TENANT_TRIGGER and params.get("allow_mass_removal"):
        raise forbidden("a tenant_trigger token may not set allow_mass_removal")


class Access:
    """Falcon middleware: checks 1 to 4 of the module's docstring."""

    def __init__(self, tokens: Tokens, documents: Any, rate: TenantRate, public: Iterable[str]):
        self.tokens, self.documents, self.rate, self.public = tokens, documents, rate, frozenset(public)

    def process_request(self, req: falcon.Request, _resp: falcon.Response) -> None:
        if req.path in self.public or console.public(req.path):
            return
        scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise falcon.HTTPUnauthorized(title="a bearer token is required", challenges=["Bearer"])
        who = self.tokens.authenticate(given.strip())
        if who is None:
            raise falcon.HTTPUnauthorized(title="the bearer token is not valid", challenges=["Bearer"])
        req.context.principal, req.context.actor = who, who.actor
        if who.tenant is not None:
            wait = self.rate.take(who.tenant)
            if wait:
                raise falcon.HTTPTooManyRequests(
                    title="too many requests", retry_after=TenantRate.retry_after(wait),
                    description=f"tenant {who.tenant!r} is over {self.rate.rate:g} requests per second")

    def process_resource(self, req: falcon.Request, _resp: falcon.Response, _resource: Any,
                         params: dict[str, Any]) -> None:
        req.context.route_params = dict(params)
        who: Principal | None = getattr(req.context, "principal", None)
        if who is None or who.platform:        # a public route, or the operator
            return
        rule = RULES.get((req.method, req.uri_template or ""))
        if rule is None or who.role not in rule.roles:
            raise forbidden(f"a {who.role} token may not {req.method} {req.uri_template or req.path}")
        if rule.scope is None:
            return
        name = params["name"]
        doc = self.documents.document(name)
        live = doc is not None and not doc.get("deleted")
        if rule.scope == "live_or_free" and not live:
            return
        if (rule.scope == "live" and not live) or doc is None or not who.sees(doc.get("tenant")):
            raise not_found(name)

    def process_response(self, req: falcon.Request, resp: falcon.Response, _resource: Any,
                         _req_succeeded: bool) -> None:
        resp.set_header("X-Content-Type-Options", "nosniff")
        if console.public(req.path):
            for header, value in BROWSER_HEADERS.items():
                resp.set_header(header, value)


__all__ = ["ADMINS", "Access", "BROWSER_HEADERS", "EVERYONE", "PLATFORM", "RULES", "Rule", "check_name_free", "check_sync", "check_tenant",
           "not_found", "principal", "visible"]
