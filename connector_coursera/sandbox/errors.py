"""The Coursera sandbox's error answers: :class:`ApiError` and the bodies Coursera and its
Apigee gateway send (Naptime errors, token faults, quota faults)."""
from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def naptime(message: str, code: str | None = None) -> dict[str, Any]:
    return {"errorCode": code, "message": message, "details": None}


INVALID_TOKEN = {"fault": {"faultstring": "Invalid Access Token",
                            "detail": {"errorcode": "keymanagement.service.invalid_access_token"}}}
EXPIRED_TOKEN = {"fault": {"faultstring": "Access Token expired",
                            "detail": {"errorcode": "keymanagement.service.access_token_expired"}}}


def quota_fault(kind: str) -> dict[str, Any]:
    code = "policies.ratelimit.QuotaViolation" if kind == "quota" else "policies.ratelimit.SpikeArrestViolation"
    return {"fault": {"faultstring": "Spike arrest violation. Allowed rate : 10ps", "detail": {"errorcode": code}}}
