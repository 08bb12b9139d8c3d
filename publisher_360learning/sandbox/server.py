"""The 360Learning sandbox: API v2 over real HTTP on loopback, for tests and demos.

Faults (``POST /_sandbox/faults`` with ``{"action": …, "route": glob, "method": …, "times": n,
"probability": p, "after_n_calls": n}``): ``status_429`` (flat ``tooManyRequests``; optional
``retry_after`` seconds or ``"http-date:<s>"``, which the real API does not send), ``bulk_busy``
(429 bulkOperationsConcurrencyLimitReached), ``bulk_disabled`` (503 bulkAPIDisabled),
``status_5xx`` (``status``, ``body`` json|html), ``expire_token`` (401 invalid_token and the
caller's token expires), ``latency`` (``delay_s``), ``reset`` (connection closed),
``malformed_json`` (body cut in half), and on a bulk submission: ``op_error`` (the operation
ends in ``error`` with ``message``), ``op_stuck`` (stays ``queued`` ``hold_s``), ``op_slow``
(runs ``run_s``), ``item_error`` (the item with ``external_id`` fails).

It serves what the publisher uses (token, groups, users, integrations, bulk courses, archives
and statistics with the asynchronous operation life cycle, courses, tags, course statistics)
with the API's pagination (``Link: <…?next=…>; rel="next"``), error envelopes, scopes and rate
limits, and a control plane under ``/_sandbox`` (faults, users, attempts started in
360Learning, admin tags, ``links`` to switch the next links between absolute and relative forms,
snapshots, request log). An operation's results come in shuffled order
(``results_seed``; None keeps input order), each with the ``input`` it answers: 360Learning
documents no order.

``with Learning360Sandbox(users=["ada@acme.test"]) as sb: sb.url`` — or ``learning360-sandbox``.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Iterable

from hostspec.kit.sandboxes import FaultBook, SandboxServer

from .. import contract
from .api import Api
from .auth import ALL_SCOPES, Access
from .control import ControlPlane
from .handler import make_handler
from .paging import Paging, checked_link_style
from .store import COMPANY_ID, Company

CLIENT_ID, CLIENT_SECRET = "sandbox-client", "sandbox-secret"
FAULT_ACTIONS = frozenset({
    "status_429", "bulk_busy", "bulk_disabled", "status_5xx", "expire_token", "latency", "reset",
    "malformed_json", "op_error", "op_stuck", "op_slow", "item_error"})


class Learning360Sandbox(Access, Paging, ControlPlane, SandboxServer):
    """A running sandbox. ``settings`` are the publisher settings that point at it."""

    thread_name = "learning360-sandbox"

    def __init__(self, *, users: Iterable[str] = (), host: str = "127.0.0.1", port: int = 0,
                 credentials: dict[str, tuple[str, Iterable[str]]] | None = None,
                 token_ttl_s: float = contract.TOKEN_DEFAULT_TTL_S, expires_in_as_string: bool = False,
                 page_size: int | None = None, enforce_rate_limits: bool = True,
                 reserved_names: Iterable[str] = (), stage_s: float = 0.05, cursor_ttl_s: float = 600,
                 fault_seed: int = 42, results_seed: int | None = 360, link_style: str = "absolute"):
        self.bind(host, port, make_handler(self))
        self._seed_users, self._reserved, self._stage_s = list(users), list(reserved_names), stage_s
        self._results_seed = results_seed        # bulk results shuffled (None: in input order)
        self.credentials = {cid: (secret, frozenset(scopes)) for cid, (secret, scopes) in
                            (credentials or {CLIENT_ID: (CLIENT_SECRET, ALL_SCOPES)}).items()}
        self.token_ttl_s, self.expires_in_as_string = token_ttl_s, expires_in_as_string
        self.page_size, self.enforce_rate_limits, self.cursor_ttl_s = page_size, enforce_rate_limits, cursor_ttl_s
        self.link_style = checked_link_style(link_style)
        self.faults = FaultBook(FAULT_ACTIONS, fault_seed)
        self.lock = threading.RLock()
        self.reset()
        self.api = Api(self)
        self._stop = threading.Event()

    def reset(self) -> None:
        with self.lock:
            self.company = Company(users=self._seed_users, reserved_names=self._reserved, stage_s=self._stage_s,
                                   results_seed=self._results_seed)
            self.tokens: dict[str, dict[str, Any]] = {}
            self.requests: deque[dict[str, Any]] = deque(maxlen=100_000)
            self._window: dict[str, deque[float]] = {"read": deque(), "write": deque()}
        self.faults.clear()

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def settings(self) -> dict[str, Any]:
        """Publisher target settings for this sandbox (first credential, the synchronized group's author)."""
        client_id, (secret, _scopes) = next(iter(self.credentials.items()))
        return {"base_url": self.url, "client_id": client_id, "client_secret": secret,
                "author_id": "65a0000000000000000000a1"}

    def start(self) -> "Learning360Sandbox":
        super().start()
        self._spawn(self._tick, "learning360-sandbox-ops")   # moves bulk operations along their life cycle
        return self

    def _tick(self) -> None:
        while not self._stop.wait(0.01):
            with self.lock:
                self.company.advance()

    def close(self) -> None:
        self._stop.set()
        super().close()

    def describe(self) -> str:
        return (f"360Learning sandbox at {self.url}: company {COMPANY_ID}, "
                f"{len(self.company.users)} users, client_id {next(iter(self.credentials))}")
