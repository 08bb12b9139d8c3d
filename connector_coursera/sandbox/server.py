"""The Coursera sandbox: a real HTTP server on loopback imitating Coursera for Business.

It serves the token endpoint, the organisation, programs, contents and enrollment reports with
Coursera's paging, error bodies and units (see :mod:`connector_coursera.contract`), plus a
control API under ``/_sandbox`` for tests and demos (faults, clock, data changes, request log).

Start it from Python (``with CourseraSandbox(OrgSpec(contents=10)) as sb: sb.url``) or from the
shell (``coursera-sandbox --contents 10``).
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hostspec.kit import SandboxRequestHandler, SandboxServer, retry_after_header

from .. import contract
from .data import Org, OrgSpec, program_ids
from .faults import FaultBook, FaultRule  # noqa: F401  (FaultRule: type of picked rules)

JSON = "application/json;charset=utf-8"
_PREFIX = "/ent/api/businesses.v1/"


@dataclass
class _Token:
    issued_at: float
    ttl: float
    revoked: bool = False
    expired: bool = False


class ApiError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _naptime(message: str, code: str | None = None) -> dict[str, Any]:
    return {"errorCode": code, "message": message, "details": None}


_INVALID_TOKEN = {"fault": {"faultstring": "Invalid Access Token",
                            "detail": {"errorcode": "keymanagement.service.invalid_access_token"}}}
_EXPIRED_TOKEN = {"fault": {"faultstring": "Access Token expired",
                            "detail": {"errorcode": "keymanagement.service.access_token_expired"}}}


def _quota_fault(kind: str) -> dict[str, Any]:
    code = "policies.ratelimit.QuotaViolation" if kind == "quota" else "policies.ratelimit.SpikeArrestViolation"
    return {"fault": {"faultstring": "Spike arrest violation. Allowed rate : 10ps", "detail": {"errorcode": code}}}


class CourseraSandbox(SandboxServer):
    """A running sandbox; ``settings`` are connection settings that point at it."""

    thread_name = "coursera-sandbox"

    def __init__(self, spec: OrgSpec | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 client_id: str = "standin-key", client_secret: str = "standin-secret",
                 token_ttl_s: float = contract.TOKEN_DEFAULT_TTL_S, next_format: str = "string",
                 grade_format: str = "number", grade_scale: float = 1.0,
                 page_limit_max: int = contract.PAGE_SIZE_MAX, fault_seed: int = 42):
        """:param grade_scale: what served grades are out of: 1 (the spec's example) or 100 (the
            gradebook report's scale); rows keep 0–1 grades and are scaled when served."""
        if grade_scale not in contract.GRADE_SCALES:
            raise ValueError(f"grade_scale must be one of {contract.GRADE_SCALES}, not {grade_scale!r}")
        self.bind(host, port, _make_handler(self))
        self.spec = spec or OrgSpec()
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl_s, self.next_format, self.grade_format = token_ttl_s, next_format, grade_format
        self.page_limit_max, self.grade_scale = page_limit_max, float(grade_scale)
        self.faults = FaultBook(fault_seed)
        self._fault_seed = fault_seed
        self._lock = threading.RLock()
        self._reset_state()

    def _reset_state(self) -> None:
        with self._lock:
            self.org = Org.generate(self.spec)
            self.tokens: dict[str, _Token] = {}
            self.requests: deque[dict[str, Any]] = deque(maxlen=100_000)
            self.clock_offset = 0.0
            self._row_cache: dict[tuple[Any, ...], Any] = {}
        self.faults.clear()

    # -- life cycle ----------------------------------------------------------------------------
    DATA_ROUTE = "/ent/api/*"       # conformance faults: the API, not the token endpoint

    @property
    def expected(self) -> dict[str, int]:
        """Records a complete fetch of each scope yields (the conformance suite's paging check)."""
        return {"catalog": len(self.org.visible_contents(clips=self.spec.clips_enabled)),
                "progress": len(self.report_rows())}

    @property
    def settings(self) -> dict[str, Any]:
        return {"org_id": self.spec.org_id, "client_id": self.client_id,
                "client_secret": self.client_secret, "base_url": self.url}

    def describe(self) -> str:
        return (f"Coursera sandbox at {self.url}: org {self.spec.org_id} with {self.spec.contents} "
                f"contents, {self.spec.learners} learners, {self.spec.enrollments} enrollments "
                f"(seed {self.spec.seed})")

    def now(self) -> float:
        return time.time() + self.clock_offset

    # -- what a test can ask -------------------------------------------------------------------
    def catalog_size(self) -> int:
        """How many items ``contents`` serves (the number of course events a full sync yields)."""
        with self._lock:
            return len(self.org.visible_contents(clips=self.spec.clips_enabled))

    def report_rows(self, *, include_s12n: bool = True, include_deleted: bool = False) -> list[int]:
        with self._lock:
            return list(self._rows({"includeS12n": str(include_s12n).lower(),
                                    "includeDeletedMembers": str(include_deleted).lower()}))

    # -- auth ----------------------------------------------------------------------------------
    def issue_token(self, auth_header: str | None, form: dict[str, list[str]]) -> dict[str, Any]:
        import base64
        grant = (form.get("grant_type") or [None])[0]
        if grant != contract.TOKEN_GRANT:
            raise ApiError(400, {"ErrorCode": "invalid_request", "Error": f"Unsupported grant type : {grant}"})
        ok = False
        if auth_header and auth_header.startswith("Basic "):
            try:
                key, _, secret = base64.b64decode(auth_header[6:]).decode().partition(":")
                ok = key == self.client_id and secret == self.client_secret
            except (ValueError, UnicodeDecodeError):
                ok = False
        if not ok:
            raise ApiError(401, {"ErrorCode": "invalid_client", "Error": "ClientId is Invalid"})
        token = secrets.token_urlsafe(21)[:28]
        issued = self.now()
        with self._lock:
            self.tokens[token] = _Token(issued, self.token_ttl_s)
        return {"token_type": "Bearer", "access_token": token, "grant_type": contract.TOKEN_GRANT,
                "issued_at": int(issued), "expires_in": int(self.token_ttl_s)}

    def check_token(self, auth_header: str | None) -> str:
        token = auth_header[7:] if auth_header and auth_header.startswith("Bearer ") else None
        with self._lock:
            info = self.tokens.get(token) if token else None
            if info is None or info.revoked:
                raise ApiError(401, _INVALID_TOKEN)
            if info.expired or self.now() >= info.issued_at + info.ttl:
                raise ApiError(401, _EXPIRED_TOKEN)
        return token  # type: ignore[return-value]

    def spoil_token(self, token: str | None, how: str) -> None:
        with self._lock:
            if token in self.tokens:
                setattr(self.tokens[token], "revoked" if how == "revoke" else "expired", True)

    # -- API -----------------------------------------------------------------------------------
    def api(self, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        rest = path[len(_PREFIX):].split("/")
        org_id = rest[0]
        if org_id != self.spec.org_id:
            raise ApiError(404, {"message": "Not Found", "statusCode": 404}) if len(org_id) != 22 else \
                ApiError(403, {"errorCode": "Not Authorized", "message": "Access is denied", "details": None})
        q = {k: v[-1] for k, v in query.items()}
        with self._lock:
            if len(rest) == 1:
                return {"elements": [{"id": org_id, "name": self.spec.org_name,
                                      "slug": self.spec.org_name.lower().replace(" ", "-")}],
                        "paging": {"total": 1}, "linked": {}}
            resource = rest[1]
            if resource == "programs" and len(rest) == 2:
                return self._programs(q)
            if resource == "contents" and len(rest) == 2:
                return self._contents(q)
            if resource == "contents" and len(rest) == 3:
                return self._content(rest[2])
            if resource == "enrollmentReports" and len(rest) == 2:
                return self._reports(q)
        raise ApiError(404, {"message": "Not Found", "statusCode": 404})

    def _page(self, q: dict[str, str], total: int) -> tuple[int, int]:
        start_s, limit_s = q.get("start", "0"), q.get("limit", str(contract.PAGE_SIZE_DEFAULT))
        if not start_s.lstrip("-").isdigit():
            raise ApiError(400, _naptime(f"Paging start should be an integer, was Some({start_s})"))
        if not limit_s.lstrip("-").isdigit() or int(limit_s) <= 0:
            raise ApiError(400, _naptime(f"Paging limit should be a positive integer, was Some({limit_s})"))
        start = int(start_s)
        if start < 0:
            raise ApiError(400, _naptime("Paging start should be non-negative"))
        return start, min(int(limit_s), self.page_limit_max)

    def _paged(self, items: Any, q: dict[str, str], render: Any = None) -> dict[str, Any]:
        total = len(items)
        start, limit = self._page(q, total)
        chunk = items[start:start + limit]
        elements = [render(x) for x in chunk] if render else list(chunk)
        paging: dict[str, Any] = {"total": total}
        if start + limit < total:
            nxt = start + limit
            paging["next"] = nxt if self.next_format == "int" else str(nxt)
        return {"elements": elements, "paging": paging, "linked": {}}

    def _programs(self, q: dict[str, str]) -> dict[str, Any]:
        exclude = q.get("excludeContent", "false") == "true"
        ids = set(q["ids"].split(",")) if q.get("ids") else None
        out = []
        for p in self.org.programs:
            if ids is not None and p["id"] not in ids:
                continue
            content_ids = [] if exclude else [
                {"contentId": c["contentId"], "contentType": c["contentType"]}
                for c in self.org.visible_contents(clips=self.spec.clips_enabled)
                if (program_ids(c) or [None])[0] == p["id"]]
            out.append({k: v for k, v in p.items() if not k.startswith("_")} | {"contentIds": content_ids})
        return self._paged(out, q)

    def _contents(self, q: dict[str, str]) -> dict[str, Any]:
        types = q["contentTypes"].split(",") if q.get("contentTypes") else None
        wanted_programs = None
        if q.get("q") == "byProgramIds":
            if not q.get("programIds"):
                raise ApiError(400, {"msg": "Routing error: Improperly formatted value for parameter 'programIds'"})
            wanted_programs = q["programIds"].split(",")
        items = self.org.visible_contents(clips=self.spec.clips_enabled, types=types, program_ids=wanted_programs)
        since = q.get(contract.CONTENTS_MODIFIED_SINCE)
        if since is not None:
            if not since.isdigit() or int(since) <= 0:
                raise ApiError(400, _naptime("modifiedSinceTimestamp must be a positive epoch in seconds"))
            ts = int(since)
            changed = [{**c, "changes": [{"changeType": "MODIFIED",
                                          "programIds": program_ids(c)}]}
                       for c in items if c["lastUpdatedAt"] > ts]
            removed = [{**c, "changes": [{"changeType": "REMOVED",
                                          "programIds": program_ids(c)}]}
                       for c in self.org.contents
                       if c["contentId"] in self.org.removed and self.org.removed_at[c["contentId"]] > ts]
            items = changed + removed
        return self._paged(items, q)

    def _content(self, key: str) -> dict[str, Any]:
        kind, sep, cid = key.partition("~")
        if not sep or kind not in contract.CONTENT_TYPES:
            raise ApiError(400, {"message": f"Invalid id {key}", "statusCode": 400})
        item = self.org.content_by_id(cid)
        if item is None or cid in self.org.removed or item["contentType"] != kind:
            raise ApiError(404, _naptime("The requested content ID is not in any programs of this organization.",
                                         "CONTENT_ID_NOT_IN_ORG"))
        return {"elements": [item], "paging": {}, "linked": {}}

    def _rows(self, q: dict[str, str]) -> Any:
        """Row indices matching the report filters, cached per filter set and data version."""
        finder = q.get("q")
        if finder in ("byProgramId", "byUserProgramId") and not q.get("programId"):
            raise ApiError(400, _naptime("Missing required parameter programId"))
        if finder == "byUserProgramId" and not q.get("externalId"):
            raise ApiError(400, _naptime("Missing required parameter externalId"))
        bounds = {}
        for name in ("lastActivityAfter", "lastActivityBefore", "enrollAtAfter", "enrollAtBefore",
                     "completedAtAfter", "completedAtBefore"):
            if name in q:
                if not q[name].isdigit():
                    raise ApiError(400, _naptime(f"{name} must be an epoch in milliseconds"))
                bounds[name] = int(q[name])
        include_s12n = q.get("includeS12n", "false") == "true"
        include_deleted = q.get("includeDeletedMembers", "false") == "true"
        key = (finder, q.get("programId"), q.get("externalId"), include_s12n, include_deleted,
               tuple(sorted(bounds.items())), self.org.version, len(self.org.progress_overrides))
        cached = self._row_cache.get(key)
        if cached is not None:
            return cached

        def keep(row: dict[str, Any]) -> bool:
            if row["contentType"] == "Specialization" and not include_s12n:
                return False
            if row["membershipState"] == "DELETED_MEMBER" and not include_deleted:
                return False
            if finder and row["programId"] != q["programId"]:
                return False
            if finder == "byUserProgramId" and row["externalId"] != q["externalId"]:
                return False
            return _within(row, bounds)

        rows = None
        if not finder and not bounds:
            rows = self.org.select_plain(include_s12n=include_s12n, include_deleted=include_deleted)
        if rows is None:
            rows = self.org.select_rows(keep)
        self._row_cache = {key: rows}  # keep one filter set: the one being paged
        return rows

    def _reports(self, q: dict[str, str]) -> dict[str, Any]:
        rows = self._rows(q)
        page = self._paged(rows, q, self.org.row)
        for el in page["elements"]:
            grade = el.get("grade")
            if grade is None:
                continue
            if self.grade_scale != 1.0 and isinstance(grade, (int, float)):
                grade = round(grade * self.grade_scale, 2)
            el["grade"] = str(grade) if self.grade_format == "string" else grade
        return page

    # -- control API ---------------------------------------------------------------------------
    def control(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        """``/_sandbox/``: ``health``, ``faults`` (GET, POST a rule, DELETE), ``reset``, ``requests``
        (GET the log, DELETE), ``clock`` (``advance_s``), ``tokens/revoke``, ``stats``,
        ``contents/add``, ``contents/{id}/remove``, ``contents/{id}/modify`` (``changes``),
        ``learners/{externalId}/progress`` (``contentId``, ``delta`` or ``complete``, ``grade`` 0–1) and
        ``learners/{externalId}/enroll`` (``contentId``: a new enrollment, not started)."""
        parts = path.strip("/").split("/")[1:]
        with self._lock:
            if parts == ["health"]:
                return 200, {"ok": True, "url": self.url}
            if parts == ["faults"]:
                if method == "GET":
                    return 200, self.faults.rules()
                if method == "DELETE":
                    self.faults.clear()
                    return 200, {"cleared": True}
                try:
                    self.faults.add_json(body)
                except (ValueError, TypeError) as exc:
                    return 400, {"error": str(exc)}
                return 201, self.faults.rules()
            if parts == ["reset"]:
                self._reset_state()
                return 200, {"reset": True}
            if parts == ["requests"]:
                if method == "DELETE":
                    self.requests.clear()
                    return 200, {"cleared": True}
                return 200, list(self.requests)
            if parts == ["clock"]:
                self.clock_offset += float((body or {}).get("advance_s", 0))
                return 200, {"now": self.now()}
            if parts == ["tokens", "revoke"]:
                for info in self.tokens.values():
                    info.revoked = True
                return 200, {"revoked": len(self.tokens)}
            if parts == ["stats"]:
                return 200, {"catalog_items": self.catalog_size(), "enrollments": self.org.row_count()}
            if len(parts) == 2 and parts[0] == "contents" and parts[1] == "add":
                return 201, self.org.add_content(int(self.now()))
            if len(parts) == 3 and parts[0] == "contents" and parts[2] in ("remove", "modify"):
                ok = (self.org.remove_content(parts[1], int(self.now())) if parts[2] == "remove"
                      else self.org.modify_content(parts[1], (body or {}).get("changes", {}), int(self.now())))
                return (200, {"ok": True}) if ok else (404, {"error": "no such content"})
            if len(parts) == 3 and parts[0] == "learners" and parts[2] == "progress":
                return self._set_progress(parts[1], body or {})
            if len(parts) == 3 and parts[0] == "learners" and parts[2] == "enroll":
                row = self.org.enroll(parts[1], str((body or {}).get("contentId")), int(self.now() * 1000))
                return (201, row) if row else (409, {"error": "no such learner or content, or enrolled already"})
        return 404, {"error": f"no control endpoint {method} {path}"}

    def _set_progress(self, external_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        i = self.org.row_index(external_id, str(body.get("contentId")))
        if i is None:
            return 404, {"error": "no enrollment of that learner in that content"}
        row = self.org.row(i)
        now_ms = int(self.now() * 1000)
        if body.get("complete"):
            change = {"isCompleted": True, "completedAt": now_ms, "overallProgress": 100,
                      "lastActivityAt": now_ms, "grade": body.get("grade", 0.9)}
        else:
            progress = min(99, int(row.get("overallProgress") or 0) + int(body.get("delta", 10)))
            change = {"overallProgress": progress, "lastActivityAt": now_ms}
        change["updatedAt"] = now_ms
        self.org.progress_overrides[i] = {**self.org.progress_overrides.get(i, {}), **change}
        return 200, self.org.row(i)


def _within(row: dict[str, Any], b: dict[str, int]) -> bool:
    last, enrolled, completed = row.get("lastActivityAt"), row.get("enrolledAt"), row.get("completedAt")
    # lastActivity bounds are exclusive; enrollAt and completedAt bounds inclusive (per the spec).
    if "lastActivityAfter" in b and (last is None or last <= b["lastActivityAfter"]):
        return False
    if "lastActivityBefore" in b and (last is None or last >= b["lastActivityBefore"]):
        return False
    if "enrollAtAfter" in b and (enrolled is None or enrolled < b["enrollAtAfter"]):
        return False
    if "enrollAtBefore" in b and (enrolled is None or enrolled > b["enrollAtBefore"]):
        return False
    if "completedAtAfter" in b and (completed is None or completed < b["completedAtAfter"]):
        return False
    if "completedAtBefore" in b and (completed is None or completed > b["completedAtBefore"]):
        return False
    return True


def _make_handler(sandbox: CourseraSandbox) -> type[SandboxRequestHandler]:
    class Handler(SandboxRequestHandler):
        server_version = "CourseraSandbox/1"

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self, method: str) -> None:
            split = urlsplit(self.path)
            path, query = split.path, parse_qs(split.query, keep_blank_values=True)
            raw = self._body()
            if path.startswith("/_sandbox/"):
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    return self._send(400, {"error": "body is not JSON"})
                status, doc = sandbox.control(method, path, body)
                return self._send(status, doc)
            rule = sandbox.faults.pick(method, path)
            at = round(sandbox.now(), 3)
            self._retry_after = None
            status = self._serve(method, path, query, raw, rule)
            sandbox.requests.append({"method": method, "path": path, "query": split.query,
                                     "status": status, "fault": rule.action if rule else None,
                                     "at": at, "retry_after": self._retry_after})

        def _serve(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
                   rule: FaultRule | None) -> int:
            action = rule.action if rule else None
            p = rule.params if rule else {}
            if self.transport_fault(action, p):
                return 0
            pre = _pre_response(action, p)
            if pre is not None:
                status, doc, headers = pre
                if action in ("expire_token", "revoke_token"):
                    auth = self.headers.get("Authorization") or ""
                    sandbox.spoil_token(auth[7:], "revoke" if action == "revoke_token" else "expire")
                return self._send(status, doc, headers)
            try:
                if method == "POST" and path == contract.TOKEN_PATH:
                    form = parse_qs(raw.decode("utf-8", "replace"))
                    return self._send(200, sandbox.issue_token(self.headers.get("Authorization"), form))
                if method != "GET" or not path.startswith(_PREFIX):
                    raise ApiError(404, {"message": "Not Found", "statusCode": 404})
                sandbox.check_token(self.headers.get("Authorization"))
                doc = sandbox.api(path, query)
            except ApiError as err:
                return self._send(err.status, err.body, err.headers)
            return self._send(200, _post_process(action, p, doc, query), slow=p if action == "slow_body" else None,
                              truncate=action == "malformed_json")

        def _send(self, status: int, doc: Any, headers: dict[str, str] | None = None,
                  slow: dict[str, Any] | None = None, truncate: bool = False) -> int:
            if isinstance(doc, (bytes, str)):
                data = doc.encode() if isinstance(doc, str) else doc
                ctype = "text/html" if data.startswith(b"<") else JSON
            else:
                data, ctype = json.dumps(doc, separators=(",", ":")).encode(), JSON
            if truncate:
                data = data[: max(1, len(data) // 2)]
            self._retry_after = (headers or {}).get("Retry-After")
            self.start_reply(status, len(data), ctype, headers)
            if slow:
                step = max(1, int(slow.get("chunk_bytes", 256)))
                for i in range(0, len(data), step):
                    self.wfile.write(data[i:i + step])
                    self.wfile.flush()
                    time.sleep(float(slow.get("delay_s", 0.05)))
            else:
                self.wfile.write(data)
            return status

    return Handler


def _pre_response(action: str | None, p: dict[str, Any]) -> tuple[int, Any, dict[str, str]] | None:
    """Faults that replace the answer entirely: (status, body, headers), or None."""
    if action == "status_429":
        headers = retry_after_header(p.get("retry_after"))
        body = p.get("body", "spike")
        return 429, (b"" if body == "empty" else _quota_fault(body)), headers
    if action == "status_500_quota":
        return 500, _quota_fault("quota"), {}
    if action == "status_5xx":
        status = int(p.get("status", 503))
        body = p.get("body", "json")
        if body == "html":
            return status, f"<html><body><h1>{status} Gateway Error</h1></body></html>", {}
        if body == "empty":
            return status, b"", {}
        return status, {"fault": {"faultstring": "The service is temporarily unavailable",
                                  "detail": {"errorcode": "messaging.adaptors.http.flow.ServiceUnavailable"}}}, {}
    if action == "expire_token":
        return 401, _EXPIRED_TOKEN, {}
    if action == "revoke_token":
        return 401, _INVALID_TOKEN, {}
    if action == "forbidden":
        return 403, {"errorCode": "Not Authorized", "message": "Access is denied", "details": None}, {}
    if action == "bad_request":
        return 400, _naptime("JSON didn't validate"), {}
    return None


def _post_process(action: str | None, p: dict[str, Any], doc: Any, query: dict[str, list[str]]) -> Any:
    """Faults that alter a normal answer."""
    if not isinstance(doc, dict) or "elements" not in doc:
        return doc
    if action == "missing_field":
        name = p.get("field", "enrolledAt")
        doc["elements"] = [{k: v for k, v in el.items() if k != name} for el in doc["elements"]]
    elif action == "empty_page_with_next":
        start = int((query.get("start") or ["0"])[-1])
        doc["elements"] = []
        doc.setdefault("paging", {})["next"] = str(start + int((query.get("limit") or ["100"])[-1]))
    elif action == "repeat_cursor":
        doc.setdefault("paging", {})["next"] = (query.get("start") or ["0"])[-1]
    elif action == "truncated_listing":
        doc.setdefault("paging", {}).pop("next", None)
    elif action == "empty_listing":
        doc["elements"] = []
        doc.setdefault("paging", {}).pop("next", None)
    elif action == "wrong_total" and isinstance(doc.get("paging", {}).get("total"), int):
        doc["paging"]["total"] += int(p.get("delta", 5))
    return doc
