"""The ledger's journal: every lasting fact goes to the tenant's unit, and a fresh ledger rebuilt
from those records answers as the original did."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from kafka.coordinator.assignors.abstract import ConsumerProtocolSubscription

from hostspec.errors import ConfigError
from hostspec.transport.assignor import CoPartitionedAssignor, check_copartitioned, unit_owners
from hostspec.transport.routing import tenant_partition
from publisher_360learning.ledger import DELIVERED, FAILED, PARKED, SENT, Ledger, Record


def stat(attempt="1", recency="2026-01-02", fp="f1", tenant="acme"):
    return Record("stat", "acme-coursera", "crs-1", "ada@acme.test", "e1", fp, attempt=attempt, recency=recency,
                  tenant=tenant)


def test_a_ledger_rebuilt_from_its_journal_answers_the_same():
    written = []
    original = Ledger(journal=lambda tenant, key, value: written.append((tenant, key, value)))
    original.mark([(stat(), SENT, None, None, None, {"x": 1})])
    original.mark([(stat(), DELIVERED, "op1", "att1", None, None), (stat("2", fp="f2"), FAILED, None, None, "no", None)])
    original.mark([(stat("3"), PARKED, None, None, "learner_unknown", None)])
    original.remember_integration("acme-coursera", "g1", "Coursera (Acme)", "int1", tenant="acme")
    original.tags_to_merge("course1", "acme-coursera", ["SQL"], tenant="acme")
    original.tags_merged("course1", ["tagA"])
    original.tags_to_merge("course2", "acme-coursera", ["Python"], tenant="acme")
    assert {t for t, _k, _v in written} == {"acme"}
    assert not any(v and v.get("status") in (SENT, PARKED) for _t, _k, v in written)   # steps are not facts
    rebuilt = Ledger()
    assert rebuilt.apply_journal((k, v) for _t, k, v in written) == len(written)
    assert rebuilt.delivered_recency(stat()) == "2026-01-02" and rebuilt.already_delivered(stat())
    assert rebuilt.status_of(stat("2", fp="f2"))[0] == FAILED and rebuilt.status_of(stat("3")) is None
    assert rebuilt.integration("acme-coursera", "g1", "Coursera (Acme)") == "int1"
    assert rebuilt.provider_tags("course1") == {"tagA"}
    assert rebuilt.pending_tags("acme-coursera") == {"course2": ["Python"]}


def test_a_later_park_or_refusal_keeps_the_recency_360learning_holds_also_after_a_rebuild():
    written = []
    ledger = Ledger(journal=lambda tenant, key, value: written.append((key, value)))
    ledger.mark([(stat(recency="2026-02-01"), DELIVERED, None, None, None, None)])
    ledger.mark([(stat(recency="2026-03-01", fp="f3"), PARKED, None, None, None, None)])
    assert ledger.delivered_recency(stat()) == "2026-02-01"
    ledger.mark([(stat(recency="2026-03-01", fp="f3"), FAILED, None, None, "refused", None)])
    rebuilt = Ledger()
    rebuilt.apply_journal(written[-1:])               # compaction keeps the latest record only
    assert ledger.delivered_recency(stat()) == rebuilt.delivered_recency(stat()) == "2026-02-01"


def test_forgetting_an_integration_journals_tombstones():
    written = []
    ledger = Ledger(journal=lambda tenant, key, value: written.append((key, value)))
    ledger.mark([(stat(), DELIVERED, None, None, None, None)])
    ledger.remember_integration("acme-coursera", "g1", "L", "int1", tenant="acme")
    ledger.forget_integration("acme-coursera", "g1", "L", tenant="acme")
    rebuilt = Ledger()
    rebuilt.apply_journal(written)
    assert rebuilt.integration("acme-coursera", "g1", "L") is None and rebuilt.delivered_recency(stat()) is None


def member(member_id, topics, instance=None):
    return SimpleNamespace(member_id=member_id, group_instance_id=instance,
                           metadata=ConsumerProtocolSubscription(0, topics, b""))


def test_the_assignor_gives_every_partition_of_a_unit_to_one_member():
    counts = {"courses": 6, "stats": 12, "parked": 6}
    cluster = SimpleNamespace(partitions_for_topic=lambda t: set(range(counts[t])))
    members = [member(f"m{i}", list(counts), instance=f"pub-{i}") for i in range(3)]
    assignment = CoPartitionedAssignor.assign(cluster, members)
    owner_of: dict[tuple[str, int], str] = {}
    for m, a in assignment.items():
        for topic, partitions in a.assigned_partitions:
            for p in partitions:
                owner_of[(topic, p)] = m
    assert len(owner_of) == 24
    for tenant in (f"t{i}" for i in range(50)):    # a tenant's partitions, in every topic, have one owner
        assert len({owner_of[(t, tenant_partition(tenant, n))] for t, n in counts.items()}) == 1
    assert sorted(len(unit_owners(6, ["a", "b", "c", "d"])) for _ in range(1)) == [6]


def test_topics_that_cannot_be_co_located_are_refused():
    assert check_copartitioned({"a": 6, "b": 12}) == 6
    with pytest.raises(ConfigError, match="multiples"):
        check_copartitioned({"a": 6, "b": 8})
