"""What can go wrong talking to 360Learning, sorted by what the caller should do.

* :class:`TransientError` — try again later (429, 503, other 5xx, network, unreadable 2xx body);
* :class:`PermanentError` — this request will never succeed as sent (other 4xx); carries the
  HTTP status and the API's error code;
* :class:`TargetConfigError` — the target's settings are wrong (credentials, group, author,
  platform label): nothing for this connection can be delivered until an operator fixes them.

Messages name the method, path, status and error code; never a token or a secret.
"""
from __future__ import annotations

from typing import Any


class Learning360Error(Exception):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


class TransientError(Learning360Error):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retry_after: float | None = None):
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class PermanentError(Learning360Error):
    pass


class TargetConfigError(PermanentError):
    pass


def error_code(body: Any) -> tuple[str | None, str | None]:
    """(code, message) from either envelope: flat ``{"error": code}`` or nested ``{"error": {code, message}}``."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, str):
            return err, None
        if isinstance(err, dict):
            return (str(err["code"]) if err.get("code") else None), (str(err["message"]) if err.get("message") else None)
    return None, None
