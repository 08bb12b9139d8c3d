"""The admin API's audit trail: ``learning.audit.v1`` events on the audit topic.

Recorded, whatever the answer: every call that writes (any method but GET, HEAD and OPTIONS:
creating, replacing, pausing, deleting a connection, requesting a sync, re-driving, validating),
every call whose token was refused (401) and every call a role does not allow (403). Each event
says who (the principal's name, role and tenant; none for a refused token), what (method, path,
route, connection), when (the event's ``time``), from where (the peer's address) and the result
(status, ``done`` / ``refused`` / ``failed``, and the answer's message). A token, a secret or a
request body is never part of it.

The event is written once the answer is known, acknowledged by the broker before the answer
leaves. Should the broker refuse it, the call's answer stands (the change is stored) and the
event is logged instead (``connector_api_audit_failures_total`` counts those). Platform admins
read the trail with ``GET /audit``.
"""
from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

import falcon
from marshmallow import ValidationError
from prometheus_client import Counter

from hostspec import events as ev
from hostspec.secrets import redact
from hostspec.transport.config import KafkaConfig
from hostspec.transport.follower import Follower
from hostspec.transport.producers import KafkaSink, make_producer

log = logging.getLogger(__name__)
SOURCE = "/connector-host/api"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
FAILURES = Counter("connector_api_audit_failures_total", "Audit events the broker did not acknowledge (logged)")
MAX_LISTED = 1000


def audited(method: str, status: int) -> bool:
    return method not in SAFE or status in (401, 403)


def outcome(status: int) -> str:
    return "done" if status < 400 else "refused" if status < 500 else "failed"


def audit_event(*, principal: Any, method: str, path: str, route: str | None, connection: str | None, status: int,
                reason: str | None, remote_addr: str | None, now: datetime) -> ev.Event:
    """``principal``: a :class:`~hostspec.control.tokens.Principal`, or None (no valid token)."""
    data = {"principal": principal.name if principal else None, "role": principal.role if principal else None,
            "tenant": principal.tenant if principal else None, "method": method[:16], "path": path[:2048],
            "route": route, "connection": connection[:256] if connection else None, "status": status,
            "outcome": outcome(status), "reason": redact(reason)[:300] if reason else None,
            "remote_addr": remote_addr[:256] if remote_addr else None}
    return ev.make_event(ev.AUDIT, data, key=ev.partition_key(data["tenant"], data["connection"], None, "audit"),
                         source=SOURCE, subject=data["connection"], time=now, id_content=str(uuid.uuid4()))


def entry(event: ev.Event) -> dict[str, Any]:
    """What ``GET /audit`` answers for one event."""
    return {"id": event.id, "time": event.body["time"], **event.data}


@dataclass(frozen=True)
class Query:
    since: datetime | None = None
    until: datetime | None = None
    principal: str | None = None
    tenant: str | None = None
    connection: str | None = None
    outcome: str | None = None

    def __call__(self, item: dict[str, Any]) -> bool:
        for key in ("principal", "tenant", "connection", "outcome"):
            wanted = getattr(self, key)
            if wanted is not None and item.get(key) != wanted:
                return False
        if self.since is None and self.until is None:
            return True
        moment = datetime.fromisoformat(item["time"].replace("Z", "+00:00"))
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)


def _latest(events: Iterable[ev.Event], query: Query, limit: int) -> list[dict[str, Any]]:
    return [item for item in map(entry, events) if query(item)][-min(limit, MAX_LISTED):]


class MemoryAudit:
    """The trail in memory (tests, and an API built without a broker): the latest ``keep`` events."""

    def __init__(self, keep: int = 10_000):
        self.events: deque[ev.Event] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def record(self, event: ev.Event) -> None:
        with self._lock:
            self.events.append(event)

    def entries(self, query: Query, *, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return _latest(list(self.events), query, limit)

    def close(self) -> None:
        pass


class KafkaAudit:
    """The trail on the audit topic: written with acks=all, read back from the topic's start.

    An event is acknowledged within :attr:`TIMEOUT_S` or not at all (the middleware logs it
    then): with the broker away, the answer of the call it records waits no longer than that."""

    TIMEOUT_S = 5.0

    def __init__(self, config: KafkaConfig, topic: str):
        self.topic, self._config = topic, config
        self._sink: KafkaSink | None = None
        self._lock = threading.Lock()

    def record(self, event: ev.Event) -> None:
        with self._lock:
            try:
                if self._sink is None:
                    self._sink = KafkaSink(make_producer(self._config, linger_ms=0,
                                                         max_block_ms=int(self.TIMEOUT_S * 1000)),
                                           lambda _type: self.topic)
                self._sink.emit(event)
                self._sink.flush(self.TIMEOUT_S)
            except Exception:
                sink, self._sink = self._sink, None       # the next event starts a fresh producer
                if sink is not None:
                    try:
                        sink.close(timeout_s=1)
                    except Exception:  # noqa: BLE001 - a producer that failed may fail to close too
                        pass
                raise

    def entries(self, query: Query, *, limit: int = 100, timeout_s: float = 30) -> list[dict[str, Any]]:
        follower = Follower(self._config, self.topic, from_start=True)
        try:
            events = []
            for msg in follower.to_end(timeout_s=timeout_s):
                try:
                    events.append(ev.parse_event(msg.value or b"", expected_type=ev.AUDIT))
                except (ValidationError, RecursionError, ValueError):     # not an audit event: skipped
                    continue
        finally:
            follower.close()
        return _latest(events, query, limit)

    def close(self) -> None:
        with self._lock:
            if self._sink is not None:
                self._sink.close()
                self._sink = None


class AuditMiddleware:
    """Falcon middleware: the audit event of every call :func:`audited` selects."""

    def __init__(self, trail: MemoryAudit | KafkaAudit,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.trail, self.clock = trail, clock

    def process_response(self, req: falcon.Request, resp: falcon.Response, _resource: Any,
                         _req_succeeded: bool) -> None:
        status = falcon.http_status_to_code(resp.status)
        if not audited(req.method, status):
            return
        media = resp.media if isinstance(resp.media, dict) else {}
        params = getattr(req.context, "route_params", None) or {}
        event = audit_event(principal=getattr(req.context, "principal", None), method=req.method, path=req.path,
                            route=req.uri_template, connection=params.get("name"), status=status,
                            reason=media.get("message") if status >= 400 else None, remote_addr=req.remote_addr,
                            now=self.clock())
        try:
            self.trail.record(event)
        except Exception as exc:  # noqa: BLE001 - the answer stands; the event goes to the log instead
            FAILURES.inc()
            log.error("audit event not stored (%s: %s): %s", type(exc).__name__, exc, event.to_json())


__all__ = ["AuditMiddleware", "KafkaAudit", "MemoryAudit", "Query", "audit_event", "audited", "entry"]
