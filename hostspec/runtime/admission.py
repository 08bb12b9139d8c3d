"""Admission: a request read from its partition is refused, forwarded to its home, ended as it
ended before, or queued behind its connection's earlier requests.

* **Home partitions.** Every connection has one home partition (murmur2 of its name over the
  state topic's partitions). Its requests run only there; one arriving elsewhere (a producer
  that keys differently, partitions added to the requests topic) is forwarded to its home in a
  transaction with its offset. One connection therefore never runs on two workers at once.
* **Fair queues** (:mod:`hostspec.runtime.fairness`). A partition holds at most ``MAX_BACKLOG`` (500)
  requests read and not ended, then it is paused; every connection whose home it is shares that.
  So one connection holds at most ``max_pending_per_connection`` (50) requests, waiting or
  running, and one tenant at most ``max_pending_per_tenant`` (250) in the partition, below its
  bound: one tenant alone never pauses it. A request beyond a cap ends at once, refused with a
  ``failed`` status of kind ``too_many_pending`` (retry later) and a dead letter keeping its raw
  value (re-drivable), committed with the poll's other endings; the partition is read on, and
  another tenant's request behind a flood is read as soon as the flood is refused. A request over
  a cap whose id already ran (read again after a take-over) ends as it did instead. Whose turn
  comes next is :mod:`hostspec.runtime.dispatch`'s.
  Leaving the excess in Kafka, to be read again when the connection has room (what
  :mod:`hostspec.transport.offsets` lets the publisher do), was the other way, not taken for requests: the
  committed offset would stay at the first request left behind for as long as the whole flood
  takes to run (a thousand runs), so a take-over in that time reads and decides the flood's tail
  again; the consumer would seek back and read that tail again each time room appears; and the
  requester would hear nothing until its request runs. Refusing answers at once (like an HTTP
  429) and leaves the offsets alone. The price: after a take-over the new owner decides afresh
  the requests it reads again from the committed offset, so a request refused by the previous
  owner may run now (its final status then follows the refusal's), and one refused again repeats
  the same events (same ids).
* **Request-done markers.** Each request leaves one in its connection's state, so one that
  finished before a take-over is not run again (it ends as it did), and the same id published
  again is skipped as a duplicate (unless it failed: then it may run again).
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.config.connections import ConnectionStore
from hostspec.engine.plugins import HostPluginManager
from hostspec.engine.emit import REQUEST_DONE
from hostspec.requests import SyncRequest
from hostspec.errors import HostError, UnknownConnectionError
from hostspec.provider import Connection
from hostspec.runtime.dead_letters import MAX_ID_CHARS, skipped_request
from hostspec.runtime.endings import Endings, Outgoing
from hostspec.runtime.fairness import TOO_MANY_PENDING, Admission, Overflow, PendingCaps, held_requests
from hostspec.runtime.resources import Resources
from hostspec.runtime.settings import MAX_BACKLOG, WorkerSettings
from hostspec.config.sources import ConnectionSource
from hostspec.runtime.tasks import PartitionTask, Pending, home_partition
from hostspec.topics import Topics
from hostspec.transport.cloudevents import STRUCTURED
from hostspec.transport.transactions import OutRecord

log = logging.getLogger("hostspec.runtime.worker")   # the worker's lines, whichever part says them


@dataclass(frozen=True)
class Refusal:
    """Why a request message will not run (it goes to the dead-letter topic)."""

    reason: str
    errors: Any
    request: SyncRequest | None = None
    unknown_connection: bool = False
    tenant: str | None = None     # whose request it is, when the connection it names says so


def admit(value: bytes | None, connections: ConnectionStore,
          plugins: HostPluginManager) -> tuple[SyncRequest, Connection] | Refusal:
    """The request and its connection, or why not. Never raises on bad input.

    A refusal names only what the request itself names and the connection's own settings: it
    becomes the requester's status and dead letter (never a list of other connections)."""
    try:
        event = ev.parse_event(value or b"", expected_type=ev.SYNC_REQUESTED)
    except ValidationError as exc:
        return Refusal("malformed sync request", exc.messages)
    except RecursionError:
        return Refusal("malformed sync request", {"_schema": ["nested too deeply"]})
    request = SyncRequest.from_event(event)
    if len(request.request_id) > MAX_ID_CHARS:
        return Refusal(f"request id longer than {MAX_ID_CHARS} characters", {"id": ["too long"]})
    try:
        plugins.provider(request.provider)  # unknown provider: name the installed ones
        connection = connections.get(request.connection, plugins)
    except HostError as exc:
        return Refusal(str(exc), {"connection": [str(exc)]}, request, isinstance(exc, UnknownConnectionError),
                       tenant=_tenant_of(connections, request.connection))
    if connection.provider != request.provider:
        return Refusal(f"connection {connection.name!r} is for provider {connection.provider!r}, "
                       f"not {request.provider!r}", {"provider": ["does not match the connection"]}, request,
                       tenant=connection.tenant)
    return request, connection


def _tenant_of(connections: ConnectionStore, name: str) -> str | None:
    """The tenant a configured (maybe invalid) connection names; None when there is no such
    connection, or it names none."""
    try:
        tenant = connections.raw(name).get("tenant")
    except HostError:
        return None
    return tenant if isinstance(tenant, str) and tenant else None


class Admitter:
    """Sorts each partition's new requests, and checks a request again when its turn comes."""

    def __init__(self, settings: WorkerSettings, plugins: HostPluginManager, connections: ConnectionSource,
                 topics: Topics, resources: Resources, endings: Endings):
        self._settings, self._plugins, self._connections = settings, plugins, connections
        self._topics, self._resources, self._endings = topics, resources, endings
        self._caps = PendingCaps(settings.max_pending_per_connection, settings.max_pending_per_tenant,
                                 partition_bound=MAX_BACKLOG)
        self.duplicates = 0

    def admit(self, task: PartitionTask, outgoing: list[Outgoing]) -> None:
        """Sort the task's new requests: refused, forwarded to their home, or queued per connection."""
        try:
            store = self._connections.store()
        except HostError as exc:   # never read successfully: wait for the file, refuse nothing
            log.error("no usable connections file (%s); requests wait", exc)
            task.not_before = time.monotonic() + 5
            return
        self._resources.call_budgets().refresh(store)    # an edit of the connections re-splits the call budgets
        caps = Admission(self._caps, held_requests(task.waiting, task.running))
        caught_up = False
        while task.backlog:
            msg = task.backlog.popleft()
            admitted = admit(msg.value, store, self._plugins)
            if isinstance(admitted, Refusal) and admitted.unknown_connection and not caught_up:
                caught_up = True       # once per batch: a connection created a moment ago may be on its way
                if self._connections.catch_up():
                    store = self._connections.store()
                    admitted = admit(msg.value, store, self._plugins)
            if isinstance(admitted, Refusal):
                outgoing.append(self._endings.refusal(task, msg, admitted.reason, admitted.errors, admitted.request,
                                                      tenant=admitted.tenant))
                continue
            request, connection = admitted
            request = replace(request, origin=f"{msg.topic}:{msg.partition}:{msg.offset}")
            home = home_partition(connection.name, self._resources.state_partitions)
            if home != task.partition:
                log.info("request %s for %s at %d@%d forwarded to its home partition %d", request.request_id,
                         connection.name, msg.partition, msg.offset, home)
                outgoing.append(Outgoing(task, msg, [OutRecord(self._topics.requests, home, msg.key or
                                                               connection.name.encode(), msg.value, STRUCTURED)],
                                         "forwarded"))
                continue
            pending = Pending(msg, request, connection)
            overflow = caps.take(connection.tenant, connection.name)
            if overflow is not None:    # ended now, so the partition is read on (fairness.py)
                outgoing.append(self.already_ran(task, pending) or self._too_many(task, pending, overflow))
                continue
            task.waiting.setdefault(connection.name, deque()).append(pending)

    def _too_many(self, task: PartitionTask, pending: Pending, overflow: Overflow) -> Outgoing:
        """A request beyond a cap of pending requests (and not read again after a take-over: those
        end as they did before): refused, ``too_many_pending``, to be sent again later."""
        connection = pending.connection
        refusal = self._endings.refusal(task, pending.msg, overflow.reason, overflow.errors, pending.request,
                                        kind=TOO_MANY_PENDING, tenant=connection.tenant)
        return replace(refusal, outcome=TOO_MANY_PENDING)

    def still_configured(self, task: PartitionTask, pending: Pending, outgoing: list[Outgoing]) -> bool:
        """Take the connection's current version (a secret reference changed since the request
        arrived is used now); a connection deleted meanwhile ends the request refused, with its status."""
        try:
            current = self._connections.store().get(pending.connection.name, self._plugins)
        except HostError as exc:
            outgoing.append(self._endings.refusal(task, pending.msg, f"{exc} (changed after the request arrived)",
                                                  {"connection": [str(exc)]}, pending.request,
                                                  tenant=pending.connection.tenant))
            return False
        if current.provider != pending.connection.provider:
            outgoing.append(self._endings.refusal(task, pending.msg, f"connection {current.name!r} is now for "
                                                  f"provider {current.provider!r}", {"provider": ["changed"]},
                                                  pending.request, tenant=pending.connection.tenant))
            return False
        pending.connection = current
        return True

    def already_ran(self, task: PartitionTask, pending: Pending) -> Outgoing | None:
        """A request whose id already ran: read again after a take-over (silently ended) or a duplicate."""
        request, connection = pending.request, pending.connection
        assert task.store is not None
        marker = task.store.checkpoint(connection.state_scope, f"{REQUEST_DONE}{request.request_id}")
        if marker is None:
            return None
        if isinstance(marker, dict) and marker.get("origin") == request.origin:
            log.info("request %s at %d@%d already ended (%s) before this worker took the partition over",
                     request.request_id, pending.msg.partition, pending.msg.offset, marker.get("outcome", "?"))
            return Outgoing(task, pending.msg, [], "redelivered")
        if isinstance(marker, dict) and marker.get("outcome") == "failed":
            return None     # the same id published again after a failure: it may run again
        ended_at = marker.get("ended_at") if isinstance(marker, dict) else marker
        reason = f"request {request.request_id} already ran for {connection.name} ({ended_at}): skipped"
        log.info("%s", reason)
        self.duplicates += 1
        event = skipped_request(request.request_id, tenant=connection.tenant, connection=connection.name,
                                provider=connection.provider, scope=request.scope, reason=reason,
                                now=datetime.now(timezone.utc), worker=self._settings.worker_id)
        return Outgoing(task, pending.msg, [self._endings.record(event)], "duplicate")


__all__ = ["Admitter", "Refusal", "admit"]
