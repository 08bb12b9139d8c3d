"""A group assignor that keeps co-partitioned topics together: partition *p* of every subscribed
topic goes to the member that owns *unit* ``p % U``, where ``U`` is the smallest partition count
among them.

With tenant routing (:mod:`.routing`) a tenant's events sit at one index modulo ``U`` in every
topic, so one member receives all of them: a company is served by exactly one instance.

**Cooperative and sticky** (KIP-429, as kafka-python 3 runs it). Members say which partitions
they own when they join; a unit stays with its owner as long as that keeps the units balanced
(contiguous shares, static members — ``group.instance.id`` — first in the order of their ids,
then dynamic ones by member id), and only the units that must move do. A moving unit is taken
from its owner in one rebalance (the owner revokes it: its deliveries are fenced and waited for)
and given to its new owner in the next, never owned by two members at once. So a member joining
or leaving moves only the units that change owner, and only those are restored (their ledger
rebuilt); everyone else keeps delivering.

Topics whose partition count is not a multiple of ``U`` break the co-location; the publisher
refuses to start with them (:func:`check_copartitioned`).
"""
from __future__ import annotations

import logging
from collections import defaultdict

from kafka.coordinator.assignors.abstract import (
    AbstractPartitionAssignor,
    ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
    RebalanceProtocol,
)

from hostspec.errors import ConfigError

log = logging.getLogger(__name__)


class CoPartitionedAssignor(AbstractPartitionAssignor):
    name = "copartitioned"
    version = 1              # subscriptions carry the partitions a member owns (KIP-429)

    def __init__(self) -> None:
        self.owned: list[tuple[str, int]] = []

    def supported_protocols(self):
        return [RebalanceProtocol.COOPERATIVE]

    def metadata(self, topics):
        owned: dict[str, list[int]] = defaultdict(list)
        for topic, partition in self.owned:
            owned[topic].append(partition)
        return ConsumerProtocolSubscription(
            version=self.version, topics=sorted(topics), user_data=b"",
            owned_partitions=[ConsumerProtocolSubscription.TopicPartition(topic=t, partitions=sorted(ps))
                              for t, ps in sorted(owned.items())])

    def on_assignment(self, assignment, generation):
        self.owned = [(tp.topic, tp.partition) for tp in assignment.partitions()]

    def forget(self, partitions) -> None:
        """``partitions`` were lost (the member left the group: evicted, or its session expired):
        they are not claimed at the next join, or the units they hold would go to nobody."""
        self.owned = [tp for tp in self.owned if tp not in set(partitions)]

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
            holders: dict[int, set[str]] = defaultdict(set)      # unit -> members owning some of it now
            for m in members:
                for tp in getattr(m.metadata, "owned_partitions", None) or ():
                    if tp.topic in counts:
                        for p in tp.partitions:
                            holders[p % units].add(m.member_id)
            owned = {member: {u for u, who in holders.items() if member in who} for member in order}
            owner = unit_owners(units, order, owned)
            moving = {u for u in range(units) if holders[u] - {owner[u]}}
            for topic, n in counts.items():
                for p in range(n):
                    if p % units not in moving:          # a moving unit is given in the next round
                        assignment[owner[p % units]].setdefault(topic, []).append(p)
            if moving:
                log.info("units %s change owner: taken from their owners now, given in the next rebalance",
                         sorted(moving))
        return {m: ConsumerProtocolAssignment(cls.version, sorted(by_topic.items()), b"")
                for m, by_topic in assignment.items()}


def unit_owners(units: int, members: list[str], owned: dict[str, set[int]] | None = None) -> list[str]:
    """The member owning each unit: shares as even as they go (the first members in ``members``
    take one extra); each member keeps the units it ``owned`` within its share, the others are
    dealt in order to the members below theirs."""
    per, extra = divmod(units, len(members))
    share = {member: per + (1 if i < extra else 0) for i, member in enumerate(members)}
    owner: list[str | None] = [None] * units
    load = dict.fromkeys(members, 0)
    for member in members:
        for u in sorted((owned or {}).get(member, ())):
            if u < units and owner[u] is None and load[member] < share[member]:
                owner[u], load[member] = member, load[member] + 1
    for u in range(units):
        if owner[u] is None:
            member = next(m for m in members if load[m] < share[m])
            owner[u], load[member] = member, load[member] + 1
    return owner   # type: ignore[return-value]


def check_copartitioned(counts: dict[str, int]) -> int:
    """The number of units of these topics; :class:`ConfigError` when they cannot be co-located."""
    units = min(counts.values())
    bad = {t: n for t, n in counts.items() if n % units}
    if bad:
        raise ConfigError("topics must have partition counts that are multiples of the smallest "
                          f"({units}): {', '.join(f'{t} has {n}' for t, n in sorted(bad.items()))}")
    return units
