"""A delivery left behind by a revocation writes nothing more to 360Learning: the review's case,
over the 360Learning sandbox with the real delivery code. The old owner is slow before its import
(a users lookup hangs), the revocation gives up waiting, the new owner delivers the newer stat;
the old owner's older import must never land after it."""
from __future__ import annotations

import threading
import time

import pytest

from publisher_360learning.delivery import Deliverer, Inbound
from publisher_360learning.ledger import Ledger
from publisher_360learning.ownership import LaneRevoked, Ownership

from .conftest import fault
from .test_delivery import fast_client
from .test_stats_delivery import CONNECTION, MAIL, stat, world  # noqa: F401  (the fixture)

TP = ("learning.learner-stats", 3)


def owned(tp=TP) -> Ownership:
    """An ownership of ``tp``, assigned and served."""
    ownership = Ownership()
    serve(ownership, tp)
    return ownership


def serve(ownership: Ownership, tp=TP) -> None:
    ownership.assigned({tp})
    assert ownership.grant({tp: ownership.assignment(tp)}) == {tp}


def progress_of(lms) -> list[float]:
    with lms.lock:
        return [a["progress"] for a in lms.company.attempts.values()]


def imports(lms) -> int:
    with lms.lock:
        return sum(1 for op in lms.company.operations.values() if op.type == "importExternalStatistics")


def deliver_in_thread(deliverer, items, fence):
    outcome: dict = {}

    def run():
        try:
            outcome["out"] = deliverer.deliver_connection(CONNECTION, items, fence=fence)
        except Exception as exc:      # noqa: BLE001 - the test looks at it
            outcome["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_left_behind_delivery_cannot_import_after_the_new_owner(world):  # noqa: F811
    lms, old_owner, _ledger = world
    ownership = owned()
    fault(lms, action="latency", route="/api/v2/users*", delay_s=1.5, times=1)
    thread, outcome = deliver_in_thread(old_owner, [Inbound(stat(progress_percent=30.0))], ownership.fence({TP}))
    time.sleep(0.3)                         # the old owner is inside its slow users lookup
    ownership.revoke({TP})                  # the revocation's wait gave up: the partition moves on
    new_owner = Deliverer(dict(old_owner.targets), Ledger(), client_factory=fast_client, verify_integration_s=0)
    newer = stat(progress_percent=80.0, last_activity_at="2026-05-20T10:00:00+00:00",
                 as_of="2026-05-21T00:00:00+00:00")
    assert new_owner.deliver_connection(CONNECTION, [Inbound(newer)], settle=True).counts["stat_delivered"] == 1
    thread.join(10)
    assert isinstance(outcome.get("error"), LaneRevoked), outcome
    assert progress_of(lms) == [80.0]       # the newest, and nothing of the old owner after it
    assert imports(lms) == 1
    new_owner.close()


def test_a_fence_of_partitions_still_owned_lets_every_write_through(world):  # noqa: F811
    lms, deliverer, _ledger = world
    ownership = owned()
    out = deliverer.deliver_connection(CONNECTION, [Inbound(stat(progress_percent=30.0))], fence=ownership.fence({TP}))
    assert out.counts["stat_delivered"] == 1 and progress_of(lms) == [30.0]
    assert ownership.writes_in_flight({TP}) == 0


def test_a_partition_granted_again_is_a_new_epoch():
    ownership = owned()
    before = ownership.fence({TP})
    ownership.revoke({TP})
    serve(ownership)                        # ours again (revoked, then assigned back)
    with pytest.raises(LaneRevoked):
        with before.writing("POST /x"):
            pass
    with ownership.fence({TP}).writing("POST /x"):
        assert ownership.writes_in_flight({TP}) == 1


def test_a_member_evicted_from_its_group_writes_nothing():
    from types import SimpleNamespace

    metadata = [SimpleNamespace(generation_id=3, member_id="m1")]
    ownership = Ownership(lambda: metadata[0])
    serve(ownership)
    fence = ownership.fence({TP})
    metadata[0] = SimpleNamespace(generation_id=-1, member_id="")   # kafka-python's view after an eviction
    with pytest.raises(LaneRevoked):
        with fence.writing("POST /x"):
            pass


def test_the_revocation_waits_for_a_write_in_flight():
    ownership = owned()
    fence = ownership.fence({TP})
    entered, release = threading.Event(), threading.Event()

    def write():
        with fence.writing("POST /x"):
            entered.set()
            release.wait(5)
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    entered.wait(5)
    ownership.revoke({TP})
    assert not ownership.wait_for_writes({TP}, 0.2)    # the submission in flight ends first
    release.set()
    assert ownership.wait_for_writes({TP}, 5)
    thread.join(5)


def test_a_restore_ending_after_the_revocation_does_not_serve_the_partition():
    """The review's case: the revocation's callback ran (IO thread) while the poll loop was
    still taking records; the restore that ends then must not grant the partition again."""
    ownership = Ownership()
    ownership.assigned({TP})
    began_under = ownership.assignment(TP)
    ownership.revoke({TP})
    assert ownership.grant({TP: began_under}) == set()
    with pytest.raises(LaneRevoked):
        with ownership.fence({TP}).writing("PUT /tags"):
            pass
    ownership.assigned({TP})                # assigned again: only a restore begun now serves it
    assert ownership.grant({TP: began_under}) == set()
    assert ownership.grant({TP: ownership.assignment(TP)}) == {TP}


def test_a_member_cut_off_from_its_coordinator_stops_writing_after_its_lease():
    """Kafka-python keeps the generation when heartbeats stop being answered; the broker gives
    the units away after the session timeout. The fence refuses writes after half of it."""
    silent = [0.0]
    ownership = Ownership(silence=lambda: silent[0], lease_s=5.0)
    serve(ownership)
    fence = ownership.fence({TP})
    with fence.writing("POST /bulk"):
        pass
    silent[0] = 5.5
    with pytest.raises(LaneRevoked, match="no answer from the group coordinator"):
        with fence.writing("POST /bulk"):
            pass
