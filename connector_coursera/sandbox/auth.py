"""The Coursera sandbox's token endpoint: client-credentials tokens, their check on each API
request, and tokens spoiled (expired, revoked) by faults and the control API.

Mixed into :class:`connector_coursera.sandbox.server.CourseraSandbox`."""
from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import Any

from .. import contract
from .errors import EXPIRED_TOKEN, INVALID_TOKEN, ApiError


@dataclass
class Token:
    """An issued token: when, for how long, and whether a fault or the control API spoiled it."""

    issued_at: float
    ttl: float
    revoked: bool = False
    expired: bool = False


class TokenAuth:
    """Issuing and checking tokens (``client_id``, ``client_secret``, ``token_ttl_s``, ``tokens``)."""

    def issue_token(self, auth_header: str | None, form: dict[str, list[str]]) -> dict[str, Any]:
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
            self.tokens[token] = Token(issued, self.token_ttl_s)
        return {"token_type": "Bearer", "access_token": token, "grant_type": contract.TOKEN_GRANT,
                "issued_at": int(issued), "expires_in": int(self.token_ttl_s)}

    def check_token(self, auth_header: str | None) -> str:
        token = auth_header[7:] if auth_header and auth_header.startswith("Bearer ") else None
        with self._lock:
            info = self.tokens.get(token) if token else None
            if info is None or info.revoked:
                raise ApiError(401, INVALID_TOKEN)
            if info.expired or self.now() >= info.issued_at + info.ttl:
                raise ApiError(401, EXPIRED_TOKEN)
        return token  # type: ignore[return-value]

    def spoil_token(self, token: str | None, how: str) -> None:
        with self._lock:
            if token in self.tokens:
                setattr(self.tokens[token], "revoked" if how == "revoke" else "expired", True)
