"""The publisher group's assignor is cooperative and sticky: a join or a leave moves only the
units that must change owner, a moving unit is owned by nobody for one round (taken first,
given next), and a company's partitions always stay together."""
from __future__ import annotations

from types import SimpleNamespace

from kafka.coordinator.assignors.abstract import ConsumerProtocolSubscription, RebalanceProtocol

from hostspec.transport.assignor import CoPartitionedAssignor

COUNTS = {"courses": 6, "stats": 12, "parked": 6}
CLUSTER = SimpleNamespace(partitions_for_topic=lambda t: set(range(COUNTS[t])))


def member(member_id: str, owned: dict[str, set[int]], instance: str | None = None):
    TP = ConsumerProtocolSubscription.TopicPartition
    owned_partitions = [TP(topic=t, partitions=sorted(ps)) for t, ps in owned.items() if ps]
    metadata = ConsumerProtocolSubscription(version=1, topics=sorted(COUNTS), user_data=b"",
                                            owned_partitions=owned_partitions)
    return SimpleNamespace(member_id=member_id, group_instance_id=instance, metadata=metadata)


def rebalance(owned: dict[str, dict[str, set[int]]]) -> dict[str, dict[str, set[int]]]:
    """One round: every member's new assignment."""
    result = CoPartitionedAssignor.assign(CLUSTER, [member(m, o) for m, o in owned.items()])
    return {m: {t: set(ps) for t, ps in a.assigned_partitions} for m, a in result.items()}


def units_of(assignment: dict[str, set[int]]) -> set[int]:
    return {p % 6 for ps in assignment.values() for p in ps}


def settle(owned: dict[str, dict[str, set[int]]]) -> tuple[dict[str, dict[str, set[int]]], int, int]:
    """Rebalance until nobody loses anything (KIP-429's follow-up rounds): the final assignment,
    the rounds it took and the units that changed owner."""
    before = {m: units_of(o) for m, o in owned.items()}
    for rounds in range(1, 5):
        new = rebalance(owned)
        for m, a in new.items():
            # a unit is never given to a member while another one still owns it
            others = {u for n, o in owned.items() if n != m for u in units_of(o)}
            assert not (units_of(a) - units_of(owned[m])) & others
        lost = any(units_of(owned[m]) - units_of(new[m]) for m in owned)
        owned = new
        if not lost:
            break
    moved = sum(len(units_of(owned[m]) - before.get(m, set())) for m in owned if before.get(m))
    return owned, rounds, moved


def test_the_protocol_is_cooperative():
    assert CoPartitionedAssignor().supported_protocols() == [RebalanceProtocol.COOPERATIVE]


def test_a_fresh_group_gets_every_partition_in_one_round_with_companies_together():
    final, rounds, _ = settle({m: {} for m in ("a", "b", "c")})
    assert rounds == 1
    assert sorted(len(units_of(a)) for a in final.values()) == [2, 2, 2]
    for assignment in final.values():
        for unit in units_of(assignment):       # every topic's partitions of a unit, at one member
            assert all({p for p in range(n) if p % 6 == unit} <= assignment.get(t, set()) for t, n in COUNTS.items())


def test_a_member_joining_takes_only_the_units_it_needs_in_two_rounds():
    two, _, _ = settle({"a": {}, "b": {}})
    held = {m: units_of(a) for m, a in two.items()}
    first = rebalance({**two, "c": {}})
    assert units_of(first["c"]) == set()                      # round 1: taken from their owners only
    assert all(units_of(first[m]) <= held[m] for m in ("a", "b"))
    final, rounds, _ = settle({**two, "c": {}})
    assert rounds == 2 and sorted(len(units_of(a)) for a in final.values()) == [2, 2, 2]
    kept = sum(len(units_of(final[m]) & held[m]) for m in ("a", "b"))
    assert kept == 4                                          # only 2 of 6 units moved


def test_a_member_leaving_moves_only_its_own_units_in_one_round():
    three, _, _ = settle({m: {} for m in ("a", "b", "c")})
    held = {m: units_of(a) for m, a in three.items()}
    final, rounds, _ = settle({m: three[m] for m in ("a", "b")})
    assert rounds == 1
    assert all(held[m] <= units_of(final[m]) for m in ("a", "b"))
    assert units_of(final["a"]) | units_of(final["b"]) == set(range(6))


def test_a_unit_claimed_by_two_members_goes_to_nobody_until_one_lets_go():
    three, _, _ = settle({m: {} for m in ("a", "b", "c")})
    unit = min(units_of(three["a"]))
    stale = {t: {p for p in range(n) if p % 6 == unit} for t, n in COUNTS.items()}
    claims = {**three, "b": {t: three["b"].get(t, set()) | stale[t] for t in COUNTS}}
    first = rebalance(claims)
    assert all(unit not in units_of(a) for a in first.values())
