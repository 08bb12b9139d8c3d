"""A group assignor that keeps co-partitioned topics together: partition *p* of every subscribed
topic goes to the member that owns *unit* ``p % U``, where ``U`` is the smallest partition count
among them.

With tenant routing (:mod:`.routing`) a tenant's events sit at one index modulo ``U`` in every
topic, so one member receives all of them: a company is served by exactly one instance. Units
are spread in contiguous ranges over the members, static members (``group.instance.id``) first
in the order of their ids, then dynamic ones by member id: a restarted static member gets the
same units back. Eager protocol: a rebalance revokes everything first; the publisher's
revocation waits for the deliveries in flight on those partitions (see its service).

Topics whose partition count is not a multiple of ``U`` break the co-location; the publisher
refuses to start with them (:func:`check_copartitioned`).
"""
from __future__ import annotations

import logging

from kafka.coordinator.assignors.abstract import (
    AbstractPartitionAssignor,
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
)

from ..errors import ConfigError

log = logging.getLogger(__name__)


class CoPartitionedAssignor(AbstractPartitionAssignor):
    name = "copartitioned"
    version = 0

    @classmethod
    def assign(cls, cluster, members):
        topics = sorted({t for m in members for t in m.metadata.topics})
        counts = {t: len(cluster.partitions_for_topic(t) or ()) for t in topics}
        counts = {t: n for t, n in counts.items() if n}
        assignment: dict[str, dict[str, list[int]]] = {m.member_id: {} for m in members}
        if counts and members:
            units = min(counts.values())
            order = ([m.member_id for m in sorted((m for m in members if m.group_instance_id),
                                                  key=lambda m: m.group_instance_id)]
                     + sorted(m.member_id for m in members if not m.group_instance_id))
            owner = unit_owners(units, order)
            for topic, n in counts.items():
                for p in range(n):
                    assignment[owner[p % units]].setdefault(topic, []).append(p)
        return {m: ConsumerProtocolAssignment(cls.version, sorted(by_topic.items()), b"")
                for m, by_topic in assignment.items()}

    @classmethod
    def metadata(cls, topics):
        return ConsumerProtocolSubscription(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment, generation):
        pass


def unit_owners(units: int, members: list[str]) -> list[str]:
    """The member owning each unit: contiguous ranges, the first members taking one extra."""
    per, extra = divmod(units, len(members))
    owners: list[str] = []
    for i, member in enumerate(members):
        owners.extend([member] * (per + (1 if i < extra else 0)))
    return owners


def check_copartitioned(counts: dict[str, int]) -> int:
    """The number of units of these topics; :class:`ConfigError` when they cannot be co-located."""
    units = min(counts.values())
    bad = {t: n for t, n in counts.items() if n % units}
    if bad:
        raise ConfigError("topics must have partition counts that are multiples of the smallest "
                          f"({units}): {', '.join(f'{t} has {n}' for t, n in sorted(bad.items()))}")
    return units
