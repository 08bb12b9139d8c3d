"""Errors of the Coursera client, each a subclass of the host's provider error classes.

::

    CourseraError (hostspec.ProviderError)
    ├── CourseraConfigError (ProviderConfigError)       fix settings; never retried
    │   ├── InvalidCredentials      token endpoint refused client id/secret
    │   ├── AccessDenied            403: app not entitled to the org, or token rejected twice
    │   ├── NotFound                404: unknown org or content
    │   └── BadRequest              other 4xx
    ├── CourseraTransientError (ProviderTransientError) retried with backoff, then raised
    │   ├── RateLimited             429, or 500 carrying an Apigee quota fault; has retry_after
    │   ├── ServerError             5xx
    │   ├── NetworkError            timeout, refused or reset connection
    │   └── MalformedResponse       a body that is not the JSON it should be
    └── CourseraSystemError (ProviderSystemError)       Coursera answered something we cannot page
        ├── UnexpectedShape         elements/paging of the wrong type
        └── PaginationLoop          a next cursor that does not advance

Messages name the HTTP method, path and status and quote Coursera's own error text; they never
carry tokens, secrets or query strings.
"""
from __future__ import annotations

import json
from typing import Any

from hostspec import ProviderConfigError, ProviderError, ProviderSystemError, ProviderTransientError
from hostspec.kit import body_excerpt

from . import contract


class CourseraError(ProviderError):
    status: int | None = None


class CourseraConfigError(CourseraError, ProviderConfigError):
    pass


class InvalidCredentials(CourseraConfigError):
    pass


class AccessDenied(CourseraConfigError):
    pass


class NotFound(CourseraConfigError):
    pass


class BadRequest(CourseraConfigError):
    pass


class CourseraTransientError(CourseraError, ProviderTransientError):
    pass


class RateLimited(CourseraTransientError):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(CourseraTransientError):
    pass


class NetworkError(CourseraTransientError):
    pass


class MalformedResponse(CourseraTransientError):
    pass


class CourseraSystemError(CourseraError, ProviderSystemError):
    pass


class UnexpectedShape(CourseraSystemError):
    pass


class PaginationLoop(CourseraSystemError):
    pass


def describe_body(text: str) -> tuple[str, str | None]:
    """Coursera's message and Apigee error code from any of its error body shapes, as bounded,
    redacted excerpts (:func:`hostspec.kit.http.body_excerpt`)."""
    message, code = _message_and_code(text)
    return body_excerpt(message), (body_excerpt(code, 80) if code else None)


def _message_and_code(text: str) -> tuple[str, str | None]:
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        return (text or "empty body"), None
    if not isinstance(body, dict):
        return "unrecognised error body", None
    fault = body.get("fault")
    if isinstance(fault, dict):  # Apigee
        detail = fault.get("detail") if isinstance(fault.get("detail"), dict) else {}
        return str(fault.get("faultstring") or "gateway fault"), detail.get("errorcode")
    if isinstance(body.get("error"), dict):  # Spring / gRPC style
        err = body["error"]
        return str(err.get("message") or err.get("type") or "error"), err.get("type")
    for key in ("message", "msg", "Error", "error"):
        if isinstance(body.get(key), str):
            code = body.get("errorCode") or body.get("ErrorCode")
            return body[key], code if isinstance(code, str) else None
    return "unrecognised error body", None


def error_for_status(status: int, method: str, path: str, body_text: str,
                     retry_after: float | None = None) -> CourseraError:
    """The one place an HTTP error answer becomes a typed error."""
    message, code = describe_body(body_text)
    where = f"{method} {path} -> {status}: {message}" + (f" ({code})" if code else "")
    err: CourseraError
    if status == 429 or (status == 500 and code in contract.APIGEE_QUOTA_ERRORCODES):
        err = RateLimited(f"Coursera throttled {where}", retry_after)
    elif status >= 500 or status == 408:
        err = ServerError(f"Coursera server error on {where}")
    elif status == 401:
        err = AccessDenied(f"Coursera rejected the access token on {where}")
    elif status == 403:
        err = AccessDenied(f"Coursera denied access on {where}; check that the app was created by an "
                           "org admin and is entitled to this org_id")
    elif status == 404:
        err = NotFound(f"Coursera found nothing at {where}; check org_id")
    else:
        err = BadRequest(f"Coursera refused the request {where}")
    err.status = status
    return err
