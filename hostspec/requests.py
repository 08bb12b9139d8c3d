"""A sync request: which connection to sync, which scopes, how; as carried by a
``learning.sync.requested.v1`` event (the requests topic) and run by the engine
(:mod:`hostspec.engine.run`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hostspec import events as ev

SCOPES_OF = {"all": ("catalog", "progress"), "catalog": ("catalog",), "progress": ("progress",)}


@dataclass(frozen=True)
class SyncRequest:
    request_id: str
    connection: str
    provider: str
    scope: str = "all"
    requested_by: str | None = None
    mode: str = "incremental"
    dry_run: bool = False
    allow_mass_removal: bool = False     # lift the removal guard for this run (replay --allow-mass-removal)
    since: datetime | None = None
    until: datetime | None = None
    learners: tuple[str, ...] | None = None
    courses: tuple[str, ...] | None = None
    origin: str | None = None   # where the worker read it (topic:partition:offset); not part of the event
    merged: tuple[tuple[str, str | None, str], ...] = ()   # (id, origin, scope) of the requests this run
    asked_scope: str | None = None                            # also answers; the scope this one asked for

    @property
    def answers(self) -> tuple[tuple[str, str | None, str], ...]:
        """(id, origin, scope asked for) of every request this run answers, this one first."""
        return ((self.request_id, self.origin, self.asked_scope or self.scope), *self.merged)

    @classmethod
    def from_event(cls, event: ev.Event) -> "SyncRequest":
        """From a parsed (validated) ``learning.sync.requested.v1`` event."""
        d = event.data
        return cls(request_id=event.id, connection=d["connection"], provider=d["provider"],
                   scope=d.get("scope", "all"), requested_by=d.get("requested_by"),
                   mode=d.get("mode", "incremental"), dry_run=bool(d.get("dry_run", False)),
                   allow_mass_removal=bool(d.get("allow_mass_removal", False)),
                   since=d.get("since"), until=d.get("until"),
                   learners=tuple(d["learners"]) if d.get("learners") else None,
                   courses=tuple(d["courses"]) if d.get("courses") else None)

    def to_event(self, time: datetime) -> ev.Event:
        """The ``learning.sync.requested.v1`` event asking for this sync.

        Keyed by connection name, so all requests of a connection share a partition and run in order.
        """
        data: dict[str, Any] = {"connection": self.connection, "provider": self.provider, "scope": self.scope,
                                "requested_by": self.requested_by, "mode": self.mode, "dry_run": self.dry_run,
                                **({"allow_mass_removal": True} if self.allow_mass_removal else {}),
                                "since": ev.isoformat(self.since) if self.since else None,
                                "until": ev.isoformat(self.until) if self.until else None,
                                "learners": list(self.learners) if self.learners else None,
                                "courses": list(self.courses) if self.courses else None}
        event = ev.make_event(ev.SYNC_REQUESTED, data, key=self.connection, source="/connector-host/requester",
                              subject=self.connection, time=time, id_content=self.request_id)
        event.body["id"] = self.request_id  # the request's id is the caller's, not content-derived
        return event

    @property
    def scopes(self) -> tuple[str, ...]:
        return SCOPES_OF[self.scope]

    @property
    def is_subset(self) -> bool:
        return bool(self.learners or self.courses)

    @property
    def options(self) -> dict[str, Any]:
        return {"mode": self.mode, "dry_run": self.dry_run, "since": self.since, "until": self.until,
                "learners": self.learners, "courses": self.courses}


__all__ = ["SCOPES_OF", "SyncRequest"]
