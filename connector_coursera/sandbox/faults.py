"""Switchable faults of the sandbox: rules matched against each request, applied in order.

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

from hostspec.kit import FaultBook as _FaultBook
from hostspec.kit import FaultRule

ACTIONS = frozenset({
    "status_429", "status_500_quota", "status_5xx", "latency", "slow_body", "reset", "expire_token",
    "revoke_token", "malformed_json", "missing_field", "empty_page_with_next", "repeat_cursor",
    "forbidden", "bad_request", "truncated_listing", "empty_listing", "wrong_total",
})


class FaultBook(_FaultBook):
    """The Coursera sandbox's rules (actions above)."""

    def __init__(self, seed: int = 42):
        super().__init__(ACTIONS, seed)


__all__ = ["ACTIONS", "FaultBook", "FaultRule"]
