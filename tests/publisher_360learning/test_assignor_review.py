"""Adversarial review (issue 26, guarantee 5): the co-partitioned assignor driven as kafka-python
3.0.12 drives it. The client side is modelled on kafka/coordinator/consumer.py:

* a member's JoinGroup carries ``assignor.metadata()``, i.e. ``CoPartitionedAssignor.owned``, which
  only ``on_assignment`` updates;
* a member that loses its membership (max.poll.interval exceeded: LeaveGroup + reset_generation;
  or UNKNOWN_MEMBER_ID on a heartbeat) gets ``on_partitions_lost`` and its *subscription* is emptied
  (``assign_from_subscribed([])``), but the assignor instance keeps its ``owned``;
* after SyncGroup, ``revoked = subscription-owned - assigned``; only a non-empty ``revoked`` makes
  the member ``request_rejoin()`` (the KIP-429 follow-up round). Nothing else starts a rebalance
  while membership and metadata stay the same.
"""
from __future__ import annotations

from types import SimpleNamespace

from hostspec.transport.assignor import CoPartitionedAssignor

COUNTS = {"courses": 6, "stats": 6, "parked": 6}
CLUSTER = SimpleNamespace(partitions_for_topic=lambda t: set(range(COUNTS[t])))


class Client:
    def __init__(self, member_id: str, instance: str | None = None):
        self.member_id, self.instance = member_id, instance
        self.assignor = CoPartitionedAssignor()
        self.subscription: set[tuple[str, int]] = set()      # kafka-python's SubscriptionState

    def join(self):
        return SimpleNamespace(member_id=self.member_id, group_instance_id=self.instance,
                               metadata=self.assignor.metadata(sorted(COUNTS)))

    def sync(self, assignment) -> bool:
        """_on_join_complete_async (COOPERATIVE): True when it requests a follow-up rebalance."""
        new = {(t, p) for t, ps in assignment.assigned_partitions for p in ps}
        revoked = self.subscription - new
        self.subscription = new
        self.assignor.on_assignment(SimpleNamespace(partitions=lambda: [SimpleNamespace(topic=t, partition=q) for t, q in sorted(new)]), 1)
        return bool(revoked)

    def lose_membership(self, new_member_id: str):
        """reset_generation() then _on_join_prepare_async: on_partitions_lost (the publisher's
        ``_lost`` makes its assignor forget them), subscription emptied."""
        self.assignor.forget(self.subscription)
        self.subscription = set()
        self.member_id = new_member_id


def generation(clients):
    result = CoPartitionedAssignor.assign(CLUSTER, [c.join() for c in clients])
    return any([c.sync(result[c.member_id]) for c in clients])


def run_until_quiet(clients, max_rounds=6):
    for _ in range(max_rounds):
        if not generation(clients):
            return


def units(client):
    return {p % 6 for _t, p in client.subscription}


def test_a_member_that_lost_its_membership_and_rejoins_leaves_no_unit_owned_by_nobody():
    """Member "m-1" (first in member-id order, so it has the extra share) exceeds
    max.poll.interval: kafka-python sends LeaveGroup and resets its generation; on its next poll it
    rejoins with a new member id that sorts after "m-2" (both in the same generation, since m-2
    rejoins on its next heartbeat). Its JoinGroup still claims its old units (the assignor's
    ``owned`` was never cleared), so a unit whose new owner is m-2 is 'moving' and withheld from
    everyone, but nobody revokes anything (m-1's subscription is already empty), so no follow-up
    rebalance ever comes: the unit's companies are not served until some unrelated membership
    change."""
    a, b, c, d = Client("m-1"), Client("m-2"), Client("m-3"), Client("m-4")
    run_until_quiet([a, b, c, d])
    assert sorted(len(units(x)) for x in (a, b, c, d)) == [1, 1, 2, 2]
    before = units(a)
    assert len(before) == 2                     # m-1 is first in order: one of the two extra units
    a.lose_membership("m-9")                    # new dynamic member id, sorts last now
    run_until_quiet([a, b, c, d])
    owned = set().union(*(units(x) for x in (a, b, c, d)))
    assert owned == set(range(6)), f"units owned by nobody once the group is quiet: {sorted(set(range(6)) - owned)}"


def test_the_publisher_makes_its_assignor_forget_what_it_lost():
    from .test_service import Scripted, service

    svc = service(Scripted())
    lost = {("learning.courses", 3), ("learning.learner-stats", 3)}
    svc.membership.assignor.owned = sorted(lost | {("learning.courses", 4)})
    svc.membership.lost(lost)
    assert svc.membership.assignor.owned == [("learning.courses", 4)]
