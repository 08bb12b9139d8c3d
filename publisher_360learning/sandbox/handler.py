"""The 360Learning sandbox's HTTP handler: control requests to the control plane, API requests
through the fault book (faults that replace the answer: :func:`fault_answer`), the token
endpoint, routing, access rules and rate limits, and every API request into the request log."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from hostspec.kit.sandboxes import FaultRule, SandboxRequestHandler, retry_after_header

from .. import contract
from .errors import Problem

if TYPE_CHECKING:
    from .server import Learning360Sandbox


def make_handler(sandbox: Learning360Sandbox) -> type[SandboxRequestHandler]:
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
            self.note_request(sandbox.requests, {"method": method, "path": path, "query": split.query, "status": None,
                                                "fault": rule.action if rule else None, "at": round(time.time(), 3)})
            self.note_unanswered(self._serve(method, path, query, raw, rule))

        def _serve(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
                   rule: FaultRule | None) -> int:
            action, p = (rule.action, rule.params) if rule else (None, {})
            if self.transport_fault(action, p):
                return 0
            pre = fault_answer(action, p)
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


def fault_answer(action: str | None, p: dict[str, Any]) -> tuple[int, Any, dict[str, str]] | None:
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
