"""The 360Learning sandbox's access rules: tokens (client credentials), the API version header,
scopes per credential, and the real rate limits (reads and writes per second per company).

Mixed into :class:`publisher_360learning.sandbox.server.Learning360Sandbox`."""
from __future__ import annotations

import json
import secrets
import time
from typing import Any

from .. import contract
from .errors import Problem

ALL_SCOPES = frozenset({
    "integrations:read", "integrations:write", "integrations:bulk", "bulkOperations:read",
    "courses:read", "courses:write", "courseStats:read", "users:read", "groups:read", "tags:read",
    "tags:write"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Access:
    """Tokens, version, scopes and rate limits (``credentials``, ``tokens``, ``enforce_rate_limits``)."""

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
