"""Switchable faults of the sandbox: rules matched against each request, applied in order, and the
answers they replace or alter (:func:`pre_response`, :func:`post_process`).

A rule (JSON, posted to ``/_sandbox/faults``)::

    {"route": "/ent/api/*/enrollmentReports", "method": "GET",
     "action": "status_429", "times": 2, "retry_after": "1"}

* ``route``: a glob on the path (default ``*``); ``method``: default any.
* ``times``: how many requests it hits (default 1; ``null`` = unlimited) and/or ``probability``
  (0..1, drawn from a seeded generator so runs repeat); ``after_n_calls``: let that many matching
  requests through first.

Actions and their parameters:

==================  =======================================================================
status_429          429; ``retry_after``: seconds ("2"), "http-date:<seconds>", or absent;
                    ``body``: "spike" (default), "quota" or "empty"
status_500_quota    500 with an Apigee quota fault (how Apigee Edge throttles by default)
status_5xx          ``status`` 500/502/503/504; ``body``: "json" (default), "html" or "empty"
latency             wait ``delay_s`` before answering normally
slow_body           send the normal body in small chunks, ``delay_s`` apart
reset               close the connection without answering
expire_token        answer 401 "Access Token expired" and expire the caller's token
revoke_token        answer 401 "Invalid Access Token" and revoke the caller's token
malformed_json      200 with the normal body cut in half
missing_field       drop ``field`` from every element of the normal page
empty_page_with_next  200 with no elements but a ``next``
repeat_cursor       the normal page, but ``paging.next`` repeats the current start
truncated_listing   the normal page, but without ``paging.next``: the listing ends early
empty_listing       200 with no elements and no ``next`` (an entitlement glitch)
wrong_total         the normal page, ``paging.total`` off by ``delta`` (default +5)
forbidden           403 with Coursera's "Not Authorized" body
bad_request         400 with a Naptime error body
==================  =======================================================================
"""
from __future__ import annotations

from typing import Any

from hostspec.kit import FaultBook as _FaultBook
from hostspec.kit import FaultRule, retry_after_header

from .errors import EXPIRED_TOKEN, INVALID_TOKEN, naptime, quota_fault

ACTIONS = frozenset({
    "status_429", "status_500_quota", "status_5xx", "latency", "slow_body", "reset", "expire_token",
    "revoke_token", "malformed_json", "missing_field", "empty_page_with_next", "repeat_cursor",
    "forbidden", "bad_request", "truncated_listing", "empty_listing", "wrong_total",
})


class FaultBook(_FaultBook):
    """The Coursera sandbox's rules (actions above)."""

    def __init__(self, seed: int = 42):
        super().__init__(ACTIONS, seed)


def pre_response(action: str | None, p: dict[str, Any]) -> tuple[int, Any, dict[str, str]] | None:
    """Faults that replace the answer entirely: (status, body, headers), or None."""
    if action == "status_429":
        headers = retry_after_header(p.get("retry_after"))
        body = p.get("body", "spike")
        return 429, (b"" if body == "empty" else quota_fault(body)), headers
    if action == "status_500_quota":
        return 500, quota_fault("quota"), {}
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
        return 401, EXPIRED_TOKEN, {}
    if action == "revoke_token":
        return 401, INVALID_TOKEN, {}
    if action == "forbidden":
        return 403, {"errorCode": "Not Authorized", "message": "Access is denied", "details": None}, {}
    if action == "bad_request":
        return 400, naptime("JSON didn't validate"), {}
    return None


def post_process(action: str | None, p: dict[str, Any], doc: Any, query: dict[str, list[str]]) -> Any:
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


__all__ = ["ACTIONS", "FaultBook", "FaultRule", "post_process", "pre_response"]
