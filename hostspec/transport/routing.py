"""Which partition an event goes to: a tenant's course and learner-stat events all go to one.

Course, removal, learner-stat and parked-stat events are partitioned by their ``tenant`` (the
360Learning company), not by their own key: ``murmur2(tenant) % partitions``, the hash Kafka's
default partitioner uses. Every event of one key still lands on one partition (a key names its
tenant), so per-key order and compaction are unchanged; what is gained is that one company's
events, in every one of these topics, sit at the same partition index modulo the smallest count
of partitions. A publisher group assigning partitions by that index
(:class:`publisher_360learning.assignor.CoPartitionedAssignor`) then gives each company to
exactly one instance: its rate limits and bulk slots hold across the group, and its live and
parked stats and ledger records meet on the instance that delivers them.

Other events (statuses, dead letters, requests) keep Kafka's partitioning by key.
"""
from __future__ import annotations

from typing import Any, Callable

from hostspec import events as ev
from hostspec.transport.murmur2 import partition_for

TENANT_ROUTED = frozenset({ev.COURSE_UPSERTED, ev.COURSE_REMOVED, ev.LEARNER_STAT_UPSERTED, ev.STAT_PARKED})


def tenant_of(event: ev.Event) -> str | None:
    if event.type not in TENANT_ROUTED:
        return None
    tenant = event.data.get("tenant")
    return tenant if isinstance(tenant, str) and tenant else None


def tenant_partition(tenant: str, partitions: int) -> int:
    return partition_for(tenant.encode("utf-8"), partitions)


class Router:
    """The partition of each event (None: by key), with the topics' partition counts cached."""

    def __init__(self, partitions_of: Callable[[str], Any]):
        """:param partitions_of: a topic's partitions (e.g. ``KafkaProducer.partitions_for``)."""
        self._partitions_of = partitions_of
        self._counts: dict[str, int] = {}

    def __call__(self, topic: str, event: ev.Event) -> int | None:
        tenant = tenant_of(event)
        if tenant is None:
            return None
        count = self._counts.get(topic)
        if count is None:
            count = self._counts[topic] = len(self._partitions_of(topic) or ()) or 1
        return tenant_partition(tenant, count)
