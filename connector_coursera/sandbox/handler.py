"""The Coursera sandbox's HTTP handler: control requests to the control API, API requests through
the fault book (faults that replace or alter an answer), the token endpoint and the API, and
every API request into the request log."""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from hostspec.kit import SandboxRequestHandler

from .. import contract
from .catalog import PREFIX
from .errors import ApiError
from .faults import FaultRule, post_process, pre_response

if TYPE_CHECKING:
    from .server import CourseraSandbox

JSON = "application/json;charset=utf-8"


def make_handler(sandbox: CourseraSandbox) -> type[SandboxRequestHandler]:
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
            self.note_request(sandbox.requests, {"method": method, "path": path, "query": split.query,
                                                "status": None, "fault": rule.action if rule else None,
                                                "at": round(sandbox.now(), 3), "retry_after": None})
            self.note_unanswered(self._serve(method, path, query, raw, rule))

        def _serve(self, method: str, path: str, query: dict[str, list[str]], raw: bytes,
                   rule: FaultRule | None) -> int:
            action = rule.action if rule else None
            p = rule.params if rule else {}
            if self.transport_fault(action, p):
                return 0
            pre = pre_response(action, p)
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
                if method != "GET" or not path.startswith(PREFIX):
                    raise ApiError(404, {"message": "Not Found", "statusCode": 404})
                sandbox.check_token(self.headers.get("Authorization"))
                doc = sandbox.api(path, query)
            except ApiError as err:
                return self._send(err.status, err.body, err.headers)
            return self._send(200, post_process(action, p, doc, query), slow=p if action == "slow_body" else None,
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
