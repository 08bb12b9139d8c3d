"""The Coursera sandbox: a real HTTP server on loopback imitating Coursera for Business.

It serves the token endpoint, the organisation, programs, contents and enrollment reports with
Coursera's paging, error bodies and units (see :mod:`connector_coursera.contract`), plus a
control API under ``/_sandbox`` for tests and demos (faults, clock, data changes, request log).

Start it from Python (``with CourseraSandbox(OrgSpec(contents=10)) as sb: sb.url``) or from the
shell (``coursera-sandbox --contents 10``).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from hostspec.kit import SandboxServer

from .. import contract
from .auth import Token, TokenAuth
from .catalog import CatalogRoutes
from .control import ControlRoutes
from .data import Org, OrgSpec
from .faults import FaultBook
from .handler import make_handler
from .reports import ReportRoutes


class CourseraSandbox(TokenAuth, CatalogRoutes, ReportRoutes, ControlRoutes, SandboxServer):
    """A running sandbox; ``settings`` are connection settings that point at it.

    Its parts: tokens (:mod:`.auth`), the API (:mod:`.catalog`, :mod:`.reports`), the control API
    (:mod:`.control`), the HTTP handler (:mod:`.handler`), faults (:mod:`.faults`)."""

    thread_name = "coursera-sandbox"

    def __init__(self, spec: OrgSpec | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 client_id: str = "standin-key", client_secret: str = "standin-secret",
                 token_ttl_s: float = contract.TOKEN_DEFAULT_TTL_S, next_format: str = "string",
                 grade_format: str = "number", grade_scale: float = 1.0,
                 page_limit_max: int = contract.PAGE_SIZE_MAX, fault_seed: int = 42):
        """:param grade_scale: what served grades are out of: 1 (the spec's example) or 100 (the
            gradebook report's scale); rows keep 0–1 grades and are scaled when served."""
        if grade_scale not in contract.GRADE_SCALES:
            raise ValueError(f"grade_scale must be one of {contract.GRADE_SCALES}, not {grade_scale!r}")
        self.bind(host, port, make_handler(self))
        self.spec = spec or OrgSpec()
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl_s, self.next_format, self.grade_format = token_ttl_s, next_format, grade_format
        self.page_limit_max, self.grade_scale = page_limit_max, float(grade_scale)
        self.faults = FaultBook(fault_seed)
        self._fault_seed = fault_seed
        self._lock = threading.RLock()
        self._reset_state()

    def _reset_state(self) -> None:
        with self._lock:
            self.org = Org.generate(self.spec)
            self.tokens: dict[str, Token] = {}
            self.requests: deque[dict[str, Any]] = deque(maxlen=100_000)
            self.clock_offset = 0.0
            self._row_cache: dict[tuple[Any, ...], Any] = {}
        self.faults.clear()

    # -- life cycle ----------------------------------------------------------------------------
    DATA_ROUTE = "/ent/api/*"       # conformance faults: the API, not the token endpoint

    @property
    def expected(self) -> dict[str, int]:
        """Records a complete fetch of each scope yields (the conformance suite's paging check)."""
        return {"catalog": len(self.org.visible_contents(clips=self.spec.clips_enabled)),
                "progress": len(self.report_rows())}

    @property
    def settings(self) -> dict[str, Any]:
        return {"org_id": self.spec.org_id, "client_id": self.client_id,
                "client_secret": self.client_secret, "base_url": self.url}

    def describe(self) -> str:
        return (f"Coursera sandbox at {self.url}: org {self.spec.org_id} with {self.spec.contents} "
                f"contents, {self.spec.learners} learners, {self.spec.enrollments} enrollments "
                f"(seed {self.spec.seed})")

    def now(self) -> float:
        return time.time() + self.clock_offset

    # -- what a test can ask -------------------------------------------------------------------
    def catalog_size(self) -> int:
        """How many items ``contents`` serves (the number of course events a full sync yields)."""
        with self._lock:
            return len(self.org.visible_contents(clips=self.spec.clips_enabled))

    def report_rows(self, *, include_s12n: bool = True, include_deleted: bool = False) -> list[int]:
        with self._lock:
            return list(self._rows({"includeS12n": str(include_s12n).lower(),
                                    "includeDeletedMembers": str(include_deleted).lower()}))
