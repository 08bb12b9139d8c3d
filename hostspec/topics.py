"""Kafka topics and which event types travel on each (defaults; every name is configurable).

Course upserts and removals share a topic so that, with the course's partition key, a consumer
sees them in the order they happened.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

from hostspec import events as ev


@dataclass(frozen=True)
class Topics:
    requests: str = "learning.sync.requests"
    courses: str = "learning.courses"
    learner_stats: str = "learning.learner-stats"
    status: str = "learning.sync.status"
    dead_letter: str = "learning.deadletter"
    state: str = "learning.connector-state"
    parked: str = "learning.learner-stats.parked"
    scheduler: str = "learning.scheduler"
    rate: str = "learning.connector-rate"
    connections: str = "learning.connections"
    audit: str = "learning.audit"

    def for_type(self, type_: str) -> str:
        return {
            ev.SYNC_REQUESTED: self.requests,
            ev.COURSE_UPSERTED: self.courses,
            ev.COURSE_REMOVED: self.courses,
            ev.LEARNER_STAT_UPSERTED: self.learner_stats,
            ev.SYNC_STATUS: self.status,
            ev.RECORD_REJECTED: self.dead_letter,
            ev.STAT_PARKED: self.parked,
            ev.CONNECTION: self.connections,
            ev.AUDIT: self.audit,
        }[type_]

    def with_prefix(self, prefix: str) -> "Topics":
        return replace(self, **{f.name: prefix + getattr(self, f.name) for f in fields(self)})

    def all(self) -> list[str]:
        return [getattr(self, f.name) for f in fields(self)]


def ledger_topic(topics: Topics, group_id: str) -> str:
    """The 360Learning publisher's ledger topic (its journal, compacted): ``<group>.ledger``, with the
    topics' prefix in front unless the group id already starts with it."""
    base = Topics().requests
    prefix = topics.requests[:-len(base)] if topics.requests.endswith(base) else ""
    return f"{'' if group_id.startswith(prefix) else prefix}{group_id}.ledger"


TOPIC_TYPES = {
    "requests": [ev.SYNC_REQUESTED],
    "courses": [ev.COURSE_UPSERTED, ev.COURSE_REMOVED],
    "learner_stats": [ev.LEARNER_STAT_UPSERTED],
    "status": [ev.SYNC_STATUS],
    "dead_letter": [ev.RECORD_REJECTED],
    "parked": [ev.STAT_PARKED],
    "connections": [ev.CONNECTION],
    "audit": [ev.AUDIT],
}
