"""Dead letters sent again after a fix: which to pick, and what re-driving each one publishes.

Pure functions; ``connector-host deadletters`` and the admin API read the dead-letter topic and
publish what :func:`plan` returns.

* A **refused request** (stage ``request``) is published again as a new request: the same
  connection, scope and filters, a new id (the refused id already has its request-done marker,
  so the worker would skip it) and ``requested_by`` naming the dead letter. A request that still
  cannot be read is published again as it was: the worker refuses it again, into a new dead
  letter, so nothing is lost either way.
* **Records** refused while syncing (stages ``mapping``, ``validation``, ``delivery``) cannot be
  fetched one by one from a provider; re-driving them asks for a **full** sync of their connection
  (one request per connection, whatever the number of records), which emits every record the
  state does not hold yet, the refused ones among them once the provider or the mapping is fixed.

Each re-drive also leaves a ``sync.status`` in phase ``queued`` naming the dead letters it
re-drives (``redrive_of``), so the history says who sent what again, and when (the request it
queues names the actor: :func:`actor_of`; a refused request re-published as it was leaves one
without a request id). The admin API's index (:mod:`hostspec.control.index`) marks those dead
letters re-driven, and a second re-drive of one publishes nothing unless forced.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Iterable, Mapping

from hostspec import events as ev
from hostspec.engine.report import Counts
from hostspec.requests import SyncRequest

SOURCE = "/connector-host/redrive"


@dataclass(frozen=True)
class DeadLetter:
    """A ``record.rejected`` event and where it lies on the dead-letter topic."""

    id: str
    time: str
    data: Mapping[str, Any]
    partition: int
    offset: int

    @property
    def connection(self) -> str | None:
        return self.data.get("connection")

    def summary(self) -> dict[str, Any]:
        d = self.data
        return {"id": self.id, "time": self.time, "stage": d["stage"], "reason": d["reason"],
                "connection": d.get("connection"), "provider": d.get("provider"), "record_id": d.get("record_id"),
                "request_id": d.get("request_id"), "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class Filter:
    connection: str | None = None
    stage: str | None = None
    reason: str | None = None          # a part of the reason, case-insensitive
    since: datetime | None = None
    until: datetime | None = None
    ids: frozenset[str] = frozenset()
    tenant: str | None = None          # of the connection: another tenant's letters under its name are not its

    def __call__(self, dl: DeadLetter) -> bool:
        d = dl.data
        if self.ids and dl.id not in self.ids:
            return False
        if self.connection is not None and d.get("connection") != self.connection:
            return False
        if self.tenant is not None and d.get("tenant") not in (self.tenant, None):
            return False
        if self.stage is not None and d.get("stage") != self.stage:
            return False
        if self.reason is not None and self.reason.lower() not in str(d.get("reason", "")).lower():
            return False
        moment = _moment(dl.time)
        if moment is None:
            return self.since is None and self.until is None
        if self.since is not None and moment < self.since:
            return False
        return self.until is None or moment < self.until


def _moment(text: str) -> datetime | None:
    """An event's time (RFC 3339: ``Z`` or ``z``, or an offset); None when it does not read."""
    try:
        moment = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return moment if moment.tzinfo else None


@dataclass(frozen=True)
class Redrive:
    """What re-driving some dead letters publishes: requests (events, or a raw value when the
    refused request cannot be read) and the statuses that record it."""

    requests: list[ev.Event]
    raw_requests: list[tuple[str, bytes]]      # (key, value) published as they were
    statuses: list[ev.Event]
    redriven: list[str]                        # dead-letter ids handled
    not_redrivable: dict[str, str]             # dead-letter id -> why not
    # dead-letter id -> its earlier re-drive ({"by", "at", "request_id"}): published nothing again
    already_redriven: dict[str, Any] = field(default_factory=dict)


def plan(letters: Iterable[DeadLetter], *, actor: str, now: datetime,
         providers: Mapping[str, str] | None = None) -> Redrive:
    """The records re-driving ``letters`` publishes. ``providers``: connection -> its provider
    now (a record dead letter names its connection; its provider may have been unknown)."""
    requests: list[ev.Event] = []
    raw: list[tuple[str, bytes]] = []
    statuses: list[ev.Event] = []
    done: list[str] = []
    refused: dict[str, str] = {}
    by_connection: dict[str, list[DeadLetter]] = {}
    for dl in letters:
        d = dl.data
        if d["stage"] == "request":
            request = _request_again(dl, actor)
            if request is not None:
                event = request.to_event(now)
                requests.append(event)
                statuses.append(_queued(request, [dl.id], now, tenant=d.get("tenant")))
                done.append(dl.id)
            elif d.get("raw_value") and d.get("raw_encoding") == "utf-8":
                raw.append((d.get("connection") or dl.id, d["raw_value"].encode("utf-8")))
                statuses.append(_queued_raw(dl, now))
                done.append(dl.id)
            else:
                refused[dl.id] = "the refused request was not kept whole (too large or not text)"
        elif dl.connection:
            by_connection.setdefault(dl.connection, []).append(dl)
        else:
            refused[dl.id] = "names no connection"
    for connection, group in sorted(by_connection.items()):
        provider = (providers or {}).get(connection) or group[0].data.get("provider")
        if not provider:
            refused.update({dl.id: "its connection's provider is unknown" for dl in group})
            continue
        request = SyncRequest(str(uuid.uuid4()), connection, provider, "all", f"redrive:{actor}:{len(group)} records",
                              mode="full")
        requests.append(request.to_event(now))
        statuses.append(_queued(request, [dl.id for dl in group], now, tenant=group[0].data.get("tenant")))
        done.extend(dl.id for dl in group)
    return Redrive(requests, raw, statuses, done, refused)


def _request_again(dl: DeadLetter, actor: str) -> SyncRequest | None:
    """The refused request with a new id, when its kept value still reads as one."""
    d = dl.data
    if d.get("raw_encoding") != "utf-8" or not d.get("raw_value"):
        return None
    try:
        event = ev.parse_event(json.loads(d["raw_value"]), expected_type=ev.SYNC_REQUESTED)
    except Exception:  # noqa: BLE001 - anything unreadable is re-published raw, and refused again
        return None
    original = SyncRequest.from_event(event)
    return replace(original, request_id=str(uuid.uuid4()),
                   requested_by=f"redrive:{actor} of {original.request_id}"[:200])


def actor_of(requested_by: str) -> str | None:
    """Who re-drove, from the ``requested_by`` of a re-drive's request (None: not a re-drive's)."""
    if not requested_by.startswith("redrive:"):
        return None
    rest = requested_by[len("redrive:"):]
    if " of " in rest:                          # a refused request sent again: "redrive:ACTOR of ID"
        return rest.rsplit(" of ", 1)[0]
    actor, _, count = rest.rpartition(":")      # records: "redrive:ACTOR:N records"
    return actor if count.endswith(" records") else rest


def _queued_raw(dl: DeadLetter, now: datetime) -> ev.Event:
    """The status of a refused request re-published as it was (its id unknown: none)."""
    d = dl.data
    data = {"request_id": None, "run_id": None, "tenant": d.get("tenant"), "connection": d.get("connection"),
            "provider": d.get("provider"), "scope": None, "phase": "queued", "dry_run": False,
            "counts": asdict(Counts()), "error": None, "started_at": None, "ended_at": None, "worker": None,
            "redrive_of": [dl.id]}
    return ev.make_event(ev.SYNC_STATUS, data, key=ev.partition_key(None, d.get("connection"), d.get("provider"), "sync"),
                         source=SOURCE, subject=d.get("connection") or dl.id, time=now,
                         id_content=f"{dl.id}/redriven/{now.isoformat()}")


def _queued(request: SyncRequest, letters: list[str], now: datetime, *, tenant: str | None = None) -> ev.Event:
    data = {"request_id": request.request_id, "run_id": None, "tenant": tenant, "connection": request.connection,
            "provider": request.provider, "scope": request.scope, "phase": "queued", "dry_run": request.dry_run,
            "counts": asdict(Counts()), "error": None, "started_at": None, "ended_at": None, "worker": None,
            "redrive_of": letters[:1000]}
    return ev.make_event(ev.SYNC_STATUS, data, key=ev.partition_key(None, request.connection, request.provider, "sync"),
                         source=SOURCE, subject=request.connection, time=now,
                         id_content=f"{request.request_id}/queued")


def dead_letter(event: ev.Event, partition: int, offset: int) -> DeadLetter:
    return DeadLetter(event.id, event.body["time"], event.data, partition, offset)


__all__ = ["DeadLetter", "Filter", "Redrive", "actor_of", "dead_letter", "plan"]
