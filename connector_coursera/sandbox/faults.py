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
forbidden           403 with Coursera's "Not Authorized" body
bad_request         400 with a Naptime error body
==================  =======================================================================
"""
from __future__ import annotations

import fnmatch
import random
import threading
from dataclasses import dataclass, field
from typing import Any

ACTIONS = frozenset({
    "status_429", "status_500_quota", "status_5xx", "latency", "slow_body", "reset", "expire_token",
    "revoke_token", "malformed_json", "missing_field", "empty_page_with_next", "repeat_cursor",
    "forbidden", "bad_request",
})


@dataclass
class FaultRule:
    action: str
    route: str = "*"
    method: str | None = None
    times: int | None = 1
    probability: float | None = None
    after_n_calls: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "FaultRule":
        if not isinstance(doc, dict) or doc.get("action") not in ACTIONS:
            raise ValueError(f"a fault needs an action among {sorted(ACTIONS)}")
        known = {"action", "route", "method", "times", "probability", "after_n_calls"}
        times = doc.get("times", 1 if "probability" not in doc else None)
        probability = doc.get("probability")
        if probability is not None and not 0 <= float(probability) <= 1:
            raise ValueError("probability must be within 0..1")
        return cls(action=doc["action"], route=doc.get("route", "*"),
                   method=(doc.get("method") or None) and doc["method"].upper(),
                   times=None if times is None else int(times),
                   probability=None if probability is None else float(probability),
                   after_n_calls=int(doc.get("after_n_calls", 0)),
                   params={k: v for k, v in doc.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "route": self.route, "method": self.method, "times": self.times,
                "probability": self.probability, "after_n_calls": self.after_n_calls,
                "fired": self.fired, **self.params}


class FaultBook:
    """The active rules; ``pick`` returns the rule to apply to one request, if any."""

    def __init__(self, seed: int = 42):
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def pick(self, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.method and rule.method != method:
                    continue
                if not fnmatch.fnmatchcase(path, rule.route):
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                rule.seen += 1
                if rule.seen <= rule.after_n_calls:
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                return rule
        return None
