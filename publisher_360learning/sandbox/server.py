"""The 360Learning sandbox: API v2 over real HTTP on loopback, for tests and demos.

Faults (``POST /_sandbox/faults`` with ``{"action": …, "route": glob, "method": …, "times": n,
"probability": p, "after_n_calls": n}``): ``status_429`` (flat ``tooManyRequests``; optional
``retry_after`` seconds or ``"http-date:<s>"``, which the real API does not send), ``bulk_busy``
(429 bulkOperationsConcurrencyLimitReached), ``bulk_disabled`` (503 bulkAPIDisabled),
``status_5xx`` (``status``, ``body`` json|html), ``expire_token`` (401 invalid_token and the
caller's token expires), ``latency`` (``delay_s``), ``reset`` (connection closed),
``malformed_json`` (body cut in half), and on a bulk submission: ``op_error`` (the operation
ends in ``error`` with ``message``), ``op_stuck`` (stays ``queued`` ``hold_s``), ``op_slow``
(runs ``run_s``), ``item_error`` (the item with ``external_id`` fails).

It serves what the publisher uses (token, groups, users, integrations, bulk courses, archives
and statistics with the asynchronous operation life cycle, courses, tags, course statistics)
with the API's pagination (``Link: <…?next=…>; rel="next"``), error envelopes, scopes and rate
limits, and a control plane under ``/_sandbox`` (faults, users, attempts started in
360Learning, admin tags, ``links`` to switch the next links between absolute and relative forms,
snapshots, request log). An operation's results come in shuffled order
(``results_seed``; None keeps input order), each with the ``input`` it answers: 360Learning
documents no order.

``with Learning360Sandbox(users=["ada@acme.test"]) as sb: sb.url`` — or ``learning360-sandbox``.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections import deque
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, unquote, urlsplit

from hostspec.kit.sandboxes import (
    FaultBook,
    FaultRule,
    SandboxRequestHandler,
    SandboxServer,
    retry_after_header,
)

from .. import contract
from .store import COMPANY_ID, Company, Problem

CLIENT_ID, CLIENT_SECRET = "sandbox-client", "sandbox-secret"
ALL_SCOPES = frozenset({
    "integrations:read", "integrations:write", "integrations:bulk", "bulkOperations:read",
    "courses:read", "courses:write", "courseStats:read", "users:read", "groups:read", "tags:read",
    "tags:write"})
PAGE_SIZES = {"groups": 500, "users": 500, "integrations": 100, "operations": 20, "courses": 500,
              "course_stats": 500, "tags": 5000, "course_tags": 500, "catalog": 10_000}
FAULT_ACTIONS = frozenset({
    "status_429", "bulk_busy", "bulk_disabled", "status_5xx", "expire_token", "latency", "reset",
    "malformed_json", "op_error", "op_stuck", "op_slow", "item_error"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ID = r"([a-fA-F0-9]{24})"


class Learning360Sandbox(SandboxServer):
    """A running sandbox. ``settings`` are the publisher settings that point at it."""

    thread_name = "learning360-sandbox"

    def __init__(self, *, users: Iterable[str] = (), host: str = "127.0.0.1", port: int = 0,
                 credentials: dict[str, tuple[str, Iterable[str]]] | None = None,
                 token_ttl_s: float = contract.TOKEN_DEFAULT_TTL_S, expires_in_as_string: bool = False,
                 page_size: int | None = None, enforce_rate_limits: bool = True,
                 reserved_names: Iterable[str] = (), stage_s: float = 0.05, cursor_ttl_s: float = 600,
                 fault_seed: int = 42, results_seed: int | None = 360, link_style: str = "absolute"):
        self.bind(host, port, _make_handler(self))
        self._seed_users, self._reserved, self._stage_s = list(users), list(reserved_names), stage_s
        self._results_seed = results_seed        # bulk results shuffled (None: in input order)
        self.credentials = {cid: (secret, frozenset(scopes)) for cid, (secret, scopes) in
                            (credentials or {CLIENT_ID: (CLIENT_SECRET, ALL_SCOPES)}).items()}
        self.token_ttl_s, self.expires_in_as_string = token_ttl_s, expires_in_as_string
        self.page_size, self.enforce_rate_limits, self.cursor_ttl_s = page_size, enforce_rate_limits, cursor_ttl_s
        self.link_style = _link_style(link_style)
        self.faults = FaultBook(FAULT_ACTIONS, fault_seed)
        self.lock = threading.RLock()
        self.reset()
        self.api = Api(self)
        self._stop = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.company = Company(users=self._seed_users, reserved_names=self._reserved, stage_s=self._stage_s,
                                   results_seed=self._results_seed)
            self.tokens: dict[str, dict[str, Any]] = {}
            self.requests: deque[dict[str, Any]] = deque(maxlen=100_000)
            self._window: dict[str, deque[float]] = {"read": deque(), "write": deque()}
        self.faults.clear()

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """Publisher target settings for this sandbox (first credential, the synchronized group's author)."""
        client_id, (secret, _scopes) = next(iter(self.credentials.items()))
        return {"base_url": self.url, "client_id": client_id, "client_secret": secret,
                "author_id": "65a0000000000000000000a1"}

    def start(self) -> "Learning360Sandbox":
        super().start()
        self._spawn(self._tick, "learning360-sandbox-ops")   # moves bulk operations along their life cycle
        return self

    def _tick(self) -> None:
        while not self._stop.wait(0.01):
            with self.lock:
                self.company.advance()

    def close(self) -> None:
        self._stop.set()
        super().close()

    def describe(self) -> str:
        return (f"360Learning sandbox at {self.url}: company {COMPANY_ID}, "
                f"{len(self.company.users)} users, client_id {next(iter(self.credentials))}")

    # -- auth, version, scopes, rate limits ---------------------------------------------------------
    def issue_token(self, raw: bytes, content_type: str) -> dict[str, Any]:
        try:
            body = json.loads(raw) if "json" in content_type else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or set(body) - {"grant_type", "client_id", "client_secret", "user_id",
                                                      "company_id"} \
                or not all(isinstance(body.get(k), str) for k in ("grant_type", "client_id", "client_secret")):
            raise Problem(400, "invalid_request", flat=True)
        if body["grant_type"] != contract.TOKEN_GRANT:
            raise Problem(400, "unsupported_grant_type", flat=True)
        known = self.credentials.get(body["client_id"])
        if known is None or not secrets.compare_digest(known[0], body["client_secret"]):
            raise Problem(401, contract.INVALID_CLIENT, flat=True)
        token = "sbx_" + secrets.token_hex(16)
        with self.lock:
            self.tokens[token] = {"client_id": body["client_id"], "expires_at": time.time() + self.token_ttl_s}
        ttl: Any = str(int(self.token_ttl_s)) if self.expires_in_as_string else int(self.token_ttl_s)
        return {"token_type": "Bearer", "access_token": token, "expires_in": ttl}

    def authorize(self, headers: Any, scope: str) -> None:
        auth = headers.get("Authorization") or ""
        info = self.tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if info is None or time.time() >= info["expires_at"]:
            raise Problem(401, contract.INVALID_TOKEN, flat=True)
        if headers.get(contract.VERSION_HEADER) != contract.VERSION:
            raise Problem(400, "invalidApiVersion", f"header {contract.VERSION_HEADER}: {contract.VERSION} is required")
        if scope not in self.credentials[info["client_id"]][1]:
            raise Problem(403, "invalid_scope", f"Missing scope {scope}")

    def spoil_token(self, headers: Any) -> None:
        auth = headers.get("Authorization") or ""
        with self.lock:
            if auth[7:] in self.tokens:
                self.tokens[auth[7:]]["expires_at"] = 0

    def throttle(self, method: str) -> None:
        """The real limits: 50 reads/s and 10 writes/s per company, over a sliding second."""
        if not self.enforce_rate_limits:
            return
        kind, limit = ("write", contract.WRITES_PER_S) if method in WRITE_METHODS else ("read", contract.READS_PER_S)
        now = time.monotonic()
        with self.lock:
            window = self._window[kind]
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= limit:
                raise Problem(429, contract.RATE_LIMITED, flat=True)
            window.append(now)

    # -- pagination -------------------------------------------------------------------------------
    def page(self, route: str, path: str, query: dict[str, list[str]],
             items_for: Callable[[list[tuple[str, str, Any]]], list[Any]]) -> tuple[list[Any], dict[str, str]]:
        """One page of a list endpoint; the cursor carries the filters and the offset."""
        if "next" in query:
            try:
                cursor = json.loads(base64.urlsafe_b64decode(query["next"][-1] + "=" * (-len(query["next"][-1]) % 4)))
                filters, offset = [tuple(f) for f in cursor["f"]], int(cursor["o"])
                valid = cursor["r"] == route and time.time() - float(cursor["t"]) <= self.cursor_ttl_s
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                raise Problem(400, "invalidCursor", "The next cursor is invalid or expired")
        else:
            filters, offset = parse_filters(query), 0
        items = items_for(filters)  # type: ignore[arg-type]
        size = self.page_size or PAGE_SIZES[route]
        chunk = items[offset:offset + size]
        headers = {}
        if offset + size < len(items):
            token = base64.urlsafe_b64encode(json.dumps(
                {"r": route, "o": offset + size, "f": filters, "t": time.time()}).encode()).decode().rstrip("=")
            headers["Link"] = f'<{self.next_link(path, token)}>; rel="next"'
        return chunk, headers

    def next_link(self, path: str, token: str) -> str:
        """The next page's URL as ``link_style`` writes it: ``absolute`` (``http://host/api/v2/x?next=…``),
        ``path`` (``/api/v2/x?next=…``), ``rootless`` (``api/v2/x?next=…``) or ``relative`` to the
        page (``x?next=…``, like the OpenAPI's example ``<my/resource/url>``). [sandbox] which form
        360Learning sends is not documented: the guide's URL may be absolute or not."""
        query = f"?next={token}"
        return {"absolute": self.url + path, "path": path, "rootless": path.lstrip("/"),
                "relative": path.rsplit("/", 1)[-1]}[self.link_style] + query

    # -- control plane ------------------------------------------------------------------------------
    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        parts = path.strip("/").split("/")[1:]
        c = self.company
        if parts == ["health"]:
            return 200, {"ok": True, "url": self.url}
        if parts == ["reset"]:
            self.reset()
            return 200, {"reset": True}
        if parts == ["faults"]:
            if method == "DELETE":
                self.faults.clear()
                return 200, {"cleared": True}
            if method == "GET":
                return 200, self.faults.rules()
            try:
                self.faults.add_json(body)
            except (ValueError, TypeError) as exc:
                return 400, {"error": str(exc)}
            return 201, self.faults.rules()
        if parts == ["requests"]:
            if method == "DELETE":
                self.requests.clear()
            return 200, list(self.requests)
        if parts == ["tokens", "revoke"]:
            for info in self.tokens.values():
                info["expires_at"] = 0
            return 200, {"revoked": len(self.tokens)}
        if parts == ["links"] and method == "POST":
            try:
                self.link_style = _link_style((body or {}).get("style"))
            except ValueError as exc:
                return 400, {"error": str(exc)}
            return 200, {"style": self.link_style}
        if parts == ["snapshot"]:
            return 200, c.snapshot()
        if parts == ["users"] and method == "POST":
            mails = (body or {}).get("mails") or [(body or {}).get("mail")]
            return 201, [c.add_user(m) for m in mails if isinstance(m, str) and m]
        if parts == ["attempts"] and method == "POST":
            b = body or {}
            user = c.user_by_mail(str(b.get("mail")))
            course_id = b.get("courseId") or next(
                (cid for (_i, ext), cid in c.by_external.items() if ext == b.get("externalId")), None)
            if user is None or course_id is None:
                return 404, {"error": "no such user or course"}
            return 201, c.start_attempt(course_id, user["_id"], path_session_id=b.get("pathSessionId"),
                                        at=b.get("at"))
        if len(parts) == 3 and parts[0] == "courses" and parts[2] == "tags" and method == "POST":
            return 201, c.admin_tag(parts[1], str((body or {}).get("name")))
        return 404, {"error": f"no control endpoint {method} {path}"}


LINK_STYLES = ("absolute", "path", "rootless", "relative")


def _link_style(style: Any) -> str:
    if style not in LINK_STYLES:
        raise ValueError(f"link style must be one of {', '.join(LINK_STYLES)}")
    return str(style)


def parse_filters(query: dict[str, list[str]]) -> list[tuple[str, str, Any]]:
    """LHS bracket filters: ``mail[eq]=a``, ``status[ne]=x``, ``courseId[in][0]=…``, ``createdAt[gte]=…``."""
    filters: dict[tuple[str, str], Any] = {}
    for key, values in query.items():
        m = re.fullmatch(r"(\w+)\[(eq|ne|in|nin|lt|gte)\](?:\[\d+\])?", key)
        if not m:
            continue
        field, op = m.groups()
        if op in ("in", "nin"):
            filters.setdefault((field, op), []).extend(values)
        else:
            filters[(field, op)] = values[-1]
    return [(f, op, v) for (f, op), v in sorted(filters.items())]


def matches(item: dict[str, Any], filters: list[tuple[str, str, Any]]) -> bool:
    for field, op, value in filters:
        have = item.get(field)
        if field == "mail" and isinstance(have, str):
            have = have.casefold()
            value = [v.casefold() for v in value] if isinstance(value, list) else str(value).casefold()
        ok = {"eq": lambda: have == value, "ne": lambda: have != value, "in": lambda: have in value,
              "nin": lambda: have not in value, "lt": lambda: have is not None and str(have) < value,
              "gte": lambda: have is not None and str(have) >= value}[op]()
        if not ok:
            return False
    return True


class Api:
    """The v2 routes: ``(method, regex, scope, handler)``; handlers return (status, body, headers)."""

    def __init__(self, sandbox: Learning360Sandbox):
        self.sb = sandbox
        c = lambda: sandbox.company  # noqa: E731 - the company is replaced on reset
        self.c = c
        self.routes: list[tuple[str, re.Pattern[str], str, Callable[..., Any]]] = [
            (m, re.compile(p + "$"), s, h) for m, p, s, h in [
                ("GET", r"/api/v2/groups", "groups:read", self.groups),
                ("GET", rf"/api/v2/groups/{ID}", "groups:read", self.group),
                ("GET", rf"/api/v2/groups/{ID}/(catalog|library)/course-ids", "groups:read", self.shelf),
                ("GET", r"/api/v2/users", "users:read", self.users),
                ("GET", rf"/api/v2/users/{ID}", "users:read", self.user),
                ("GET", r"/api/v2/integrations", "integrations:read", self.integrations),
                ("POST", r"/api/v2/integrations", "integrations:write", self.create_integration),
                ("PATCH", rf"/api/v2/integrations/{ID}", "integrations:write", self.patch_integration),
                ("DELETE", rf"/api/v2/integrations/{ID}", "integrations:write", self.delete_integration),
                ("GET", rf"/api/v2/integrations/{ID}/courses/([^/]+)", "integrations:read", self.external_course),
                ("PUT", rf"/api/v2/bulk/integrations/{ID}/courses", "integrations:bulk", self.bulk("upsert")),
                ("DELETE", rf"/api/v2/bulk/integrations/{ID}/courses", "integrations:bulk", self.bulk("archive")),
                ("POST", rf"/api/v2/bulk/integrations/{ID}/stats", "integrations:bulk", self.bulk("stats")),
                ("GET", r"/api/v2/bulk/operations", "bulkOperations:read", self.operations),
                ("GET", rf"/api/v2/bulk/operations/{ID}", "bulkOperations:read", self.operation),
                ("GET", rf"/api/v2/bulk/operations/{ID}/results", "bulkOperations:read", self.results),
                ("GET", r"/api/v2/courses/stats", "courseStats:read", self.course_stats),
                ("GET", r"/api/v2/courses", "courses:read", self.courses),
                ("GET", rf"/api/v2/courses/{ID}", "courses:read", self.course),
                ("PUT", rf"/api/v2/courses/{ID}/archive", "courses:write", self.archive_course),
                ("GET", rf"/api/v2/courses/{ID}/tags", "tags:read", self.get_course_tags),
                ("PUT", rf"/api/v2/courses/{ID}/tags", "courses:write", self.put_course_tags),
                ("GET", r"/api/v2/tags", "tags:read", self.tags),
                ("POST", r"/api/v2/tags", "tags:write", self.create_tag),
            ]]
        self.fault: FaultRule | None = None

    def route(self, method: str, path: str) -> tuple[str, Callable[..., Any], tuple[str, ...]]:
        allowed = False
        for m, pattern, scope, handler in self.routes:
            match = pattern.match(path)
            if match:
                if m == method:
                    return scope, handler, match.groups()
                allowed = True
        if allowed:
            raise Problem(405, "methodNotAllowed", f"{method} is not allowed on {path}")
        raise Problem(404, "routeNotFound", f"No route {method} {path}")

    def _list(self, route: str, path: str, q: dict[str, list[str]], items: Callable[[], Iterable[dict[str, Any]]]):
        body, headers = self.sb.page(route, path, q, lambda f: [i for i in items() if matches(i, f)])
        return 200, body, headers

    def groups(self, path, q, body):
        return self._list("groups", path, q, lambda: self.c().groups.values())

    def group(self, path, q, body, gid):
        if gid not in self.c().groups:
            raise Problem(404, "groupNotFound", f"No group {gid}")
        return 200, self.c().groups[gid], {}

    def shelf(self, path, q, body, gid, which):
        shelf = getattr(self.c(), which).get(gid, [])
        page, headers = self.sb.page("catalog", path, q, lambda f: list(shelf))
        return 200, page, headers

    def users(self, path, q, body):
        return self._list("users", path, q, lambda: self.c().users.values())

    def user(self, path, q, body, uid):
        if uid not in self.c().users:
            raise Problem(404, "userNotFound", f"No user {uid}")
        return 200, self.c().users[uid], {}

    def integrations(self, path, q, body):
        return self._list("integrations", path, q, lambda: self.c().integrations.values())

    def create_integration(self, path, q, body):
        return 201, self.c().create_integration(body), {}

    def patch_integration(self, path, q, body, iid):
        integration = self.c().integration(iid)
        editable = {"externalPlatform", "authorId", "defaultCompletion", "defaultProgress", "noGroupPropagation",
                    "externalPlatformLogoUrl", "externalPlatformUnicolorLogoUrl"}
        if not isinstance(body, dict) or set(body) - editable:
            raise Problem(400, "invalidInput", f"only {', '.join(sorted(editable))} can change")
        integration.update(body)
        return 200, {k: v for k, v in integration.items() if k != "_id"}, {}

    def delete_integration(self, path, q, body, iid):
        self.c().integration(iid)
        company = self.c()
        for (owner, _ext), cid in company.by_external.items():
            if owner == iid:
                company.courses[cid]["status"] = "archived"
        del company.integrations[iid]
        return 204, None, {}

    def external_course(self, path, q, body, iid, external_id):
        """404 integrationNotFound for an integration that is gone; 400 courseNotBelongToIntegration
        for a course it does not hold (the only 404 is the integration's)."""
        company = self.c()
        company.integration(iid)
        external_id = unquote(external_id)        # a path parameter: ``a%2F1`` is the course ``a/1``
        cid = company.by_external.get((iid, external_id))
        if cid is None:
            raise Problem(400, contract.COURSE_NOT_IN_INTEGRATION, f"No course {external_id} in integration {iid}")
        return 200, {**company.external_fields[cid], "courseId": cid,
                     "authorId": company.courses[cid]["authorId"], "translations": []}, {}

    def bulk(self, kind: str):
        def submit(path, q, body, iid):
            p = self.fault.params if self.fault else {}
            action = self.fault.action if self.fault else None
            op = self.c().submit(
                kind, iid, body,
                hold_queued_s=float(p.get("hold_s", 2.0)) if action == "op_stuck" else 0.0,
                run_s=float(p.get("run_s", 2.0)) if action == "op_slow" else None,
                fail_with=str(p.get("message", "Internal error while running the operation"))
                if action == "op_error" else None,
                fail_items=[str(p["external_id"])] if action == "item_error" and p.get("external_id") else ())
            return 202, None, {"Location": f"{self.sb.url}/api/v2/bulk/operations/{op.id}"}
        return submit

    def operations(self, path, q, body):
        return self._list("operations", path, q, lambda: [o.to_json() for o in self.c().operations.values()])

    def _op(self, oid):
        op = self.c().operations.get(oid)
        if op is None:
            raise Problem(404, "bulkOperationNotFound", f"No bulk operation {oid}")
        return op

    def operation(self, path, q, body, oid):
        return 200, self._op(oid).to_json(), {}

    def results(self, path, q, body, oid):
        op = self._op(oid)
        if op.status != "completed":
            raise Problem(400, contract.OP_NOT_RUN, "The bulk operation has not run yet")
        return 200, op.results, {}

    def course_stats(self, path, q, body):
        return self._list("course_stats", path, q, lambda: self.c().attempts.values())

    def courses(self, path, q, body):
        return self._list("courses", path, q, lambda: self.c().courses.values())

    def _course(self, cid):
        if cid not in self.c().courses:
            raise Problem(404, "courseNotFound", f"No course {cid}")
        return self.c().courses[cid]

    def course(self, path, q, body, cid):
        return 200, self._course(cid), {}

    def archive_course(self, path, q, body, cid):
        course = self._course(cid)
        if not isinstance(body, dict) or not isinstance(body.get("archived"), bool):
            raise Problem(400, "invalidInput", "archived must be a boolean")
        course["status"] = "archived" if body["archived"] else "published"
        return 200, course, {}

    def get_course_tags(self, path, q, body, cid):
        self._course(cid)
        page, headers = self.sb.page("course_tags", path, q, lambda f: list(self.c().course_tags[cid]))
        return 200, page, headers

    def put_course_tags(self, path, q, body, cid):
        return 200, self.c().set_course_tags(cid, body), {}

    def tags(self, path, q, body):
        return self._list("tags", path, q, lambda: self.c().tags.values())

    def create_tag(self, path, q, body):
        return 201, self.c().create_tag(body), {}


def _make_handler(sandbox: Learning360Sandbox) -> type[SandboxRequestHandler]:
    class Handler(SandboxRequestHandler):
        server_version = "Learning360Sandbox/1"

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            path, query = split.path, parse_qs(split.query, keep_blank_values=True)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if path.startswith("/_sandbox/"):
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    return self._send(400, {"error": "body is not JSON"})
                try:
                    with sandbox.lock:
                        status, doc = sandbox.control(method, path, body)
                except Problem as problem:
                    status, doc = problem.status, problem.body
                return self._send(status, doc)
            rule = sandbox.faults.pick(method, path)
            status = self._serve(method, path, query, raw, rule)
            sandbox.requests.append({"method": method, "path": path, "query": split.query, "status": status,
                                     "fault": rule.action if rule else None, "at": round(time.time(), 3)})

        def _serve(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
                   rule: FaultRule | None) -> int:
            action, p = (rule.action, rule.params) if rule else (None, {})
            if self.transport_fault(action, p):
                return 0
            pre = _fault_answer(action, p)
            if pre is not None:
                if action == "expire_token":
                    sandbox.spoil_token(self.headers)
                return self._send(*pre)
            try:
                if method == "POST" and path == contract.TOKEN_PATH:
                    return self._send(200, sandbox.issue_token(raw, self.headers.get("Content-Type") or ""))
                api = sandbox.api
                scope, handler, args = api.route(method, path)
                sandbox.authorize(self.headers, scope)
                sandbox.throttle(method)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    raise Problem(400, "invalidInput", "the body is not JSON") from None
                with sandbox.lock:
                    api.fault = rule if action in ("op_error", "op_stuck", "op_slow", "item_error") else None
                    status, doc, headers = handler(path, query, body, *args)
            except Problem as problem:
                return self._send(problem.status, problem.body)
            return self._send(status, doc, headers, truncate=action == "malformed_json")

        def _send(self, status: int, doc: Any, headers: dict[str, str] | None = None, truncate: bool = False) -> int:
            if doc is None:
                data, ctype = b"", None
            elif isinstance(doc, (bytes, str)):
                data = doc.encode() if isinstance(doc, str) else doc
                ctype = "text/html" if data.startswith(b"<") else "text/plain"
            else:
                data, ctype = json.dumps(doc, separators=(",", ":")).encode(), "application/json; charset=utf-8"
            if truncate:
                data = data[: max(1, len(data) // 2)]
            self.reply(status, data, ctype, headers)
            return status

    return Handler


def _fault_answer(action: str | None, p: dict[str, Any]) -> tuple[int, Any, dict[str, str]] | None:
    """Faults that replace the answer: (status, body, headers), or None."""
    if action == "status_429":
        # [sandbox] the real API documents no Retry-After: only sent when the fault asks for one
        return 429, {"error": contract.RATE_LIMITED}, retry_after_header(p.get("retry_after"))
    if action == "bulk_busy":
        return 429, {"error": {"code": contract.BULK_BUSY, "message": "Too many bulk operations"}}, {}
    if action == "bulk_disabled":
        return 503, {"error": {"code": contract.BULK_DISABLED, "message": "The bulk API is disabled"}}, {}
    if action == "status_5xx":
        status = int(p.get("status", 500))
        if p.get("body") == "html":
            return status, f"<html><body><h1>{status}</h1></body></html>", {}
        return status, {"error": "internalServerError"}, {}
    if action == "expire_token":
        return 401, {"error": contract.INVALID_TOKEN}, {}
    return None
