"""Adversarial review (issue 26, guarantee 2): a revoked lane cannot write, and a new owner waits
for operations still unfinished in 360Learning before its first write."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from publisher_360learning.ownership import LaneRevoked, Ownership
from tests.publisher_360learning.test_service import TOPIC, Scripted, message, service


def _restorable(svc):
    svc.shared.restorer = ThreadPoolExecutor(1)
    svc.shared.journal.restore = lambda kafka, ledger, units: 0


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def test_a_stale_delivery_ending_after_the_unit_came_back_does_not_count_as_the_new_settle():
    """Instance A delivers unit 3's acme batch (dispatched with settle=True); the import is slow
    (longer than revoke_wait_s), so the revocation leaves it behind. The unit goes to B (which
    submits a newer import) and comes back to A: ``_restore`` sets ``lane.settled = False``. Then
    A's old delivery ends well (its import had been submitted before the revocation; waiting for
    it is reads only) and ``_lane_succeeded`` sets ``lane.settled = True`` again, service.py:616.
    A's first delivery of the new ownership is dispatched with settle=False: it does not wait for
    B's import still running in 360Learning, so B's older import can land after A's newer one."""
    release = threading.Event()
    calls = []

    class SlowImport(Scripted):
        def deliver_connection(self, connection, items, settle=False, fence=None):
            calls.append(settle)
            if len(calls) == 1:
                release.wait(5)       # the import was submitted; now only polling its operation
            return super().deliver_connection(connection, items, settle)

    svc = service(SlowImport(), revoke_wait_s=0.05)
    _restorable(svc)
    svc.reader.take([message(0, "acme")])
    svc.dispatcher.dispatch()
    assert calls == [True]
    tps = {(TOPIC, 3)}
    barrier = svc.membership.revoked(tps)
    assert _wait(barrier)                       # gave up waiting after revoke_wait_s (the lane is fenced)
    svc.membership.catch_up()                           # _forget
    # ... unit 3 is B's for a while, B submits an import, then the unit comes back to A
    svc.membership.assigned(tps)
    svc.membership.catch_up()                           # _restore: lane.settled = False
    assert svc.shared.lanes["acme"].settled is False
    release.set()                               # A's old delivery ends well
    assert _wait(lambda: all(f.done() for f in svc.dispatcher.running))
    svc.dispatcher.finish_done()
    assert _wait(lambda: (svc.reader.take([]), (TOPIC, 3) in svc.shared.ready)[1])
    svc.shared.consumer.committed_offsets[(TOPIC, 3)] = 0
    svc.reader.take([message(0, "acme"), message(1, "acme")])
    svc.dispatcher.dispatch()
    assert _wait(lambda: len(calls) == 2)
    assert calls[1] is True, "first delivery after the take-over did not wait for unfinished operations"


def test_a_restore_ending_after_the_revocation_callback_does_not_grant_the_revoked_partitions():
    """kafka-python runs the revocation callback on its IO thread while the poll loop is inside
    ``_take`` (parsing up to 2,000 records). ``_take`` ends with ``_restored``, which grants an
    epoch to the partitions it just restored (service.py:383) although ``_revoked`` already took
    theirs away (the 'revoked' event is still queued for ``_membership``), marks them ready and
    schedules the unit's pending tags; the ``_dispatch`` of the same loop pass then writes tags
    to 360Learning for partitions whose revocation has already returned. The epoch even stays
    after ``_forget``: a later fence over them passes too."""
    writes = []

    class Tags(Scripted):
        def deliver_connection(self, connection, items, settle=False, fence=None):
            with fence.writing("PUT /courses/c1/tags"):
                writes.append((connection, sorted(fence._epochs)))
            return super().deliver_connection(connection, items, settle)

    deliverer = Tags()
    svc = service(deliverer)
    _restorable(svc)

    def restore(kafka, ledger, units):        # the journal gives back the unit's pending tags
        ledger.tags_to_merge("c1", "t11-coursera", ["python"], tenant="t11")     # t11: unit 3
        return 1
    svc.shared.journal.restore = restore
    tps = {(TOPIC, 3), (TOPIC, 9)}
    svc.shared.ready.clear()
    svc.shared.ownership.revoke(tps)
    svc.membership.assigned(tps)
    svc.membership.catch_up()                           # _restore submitted
    assert _wait(lambda: svc.membership.restores[0][0].done())
    barrier = svc.membership.revoked(tps)                 # IO thread: fence first ...
    assert barrier()                            # ... nothing running: the partitions are handed back
    # the poll loop, inside the pass that began before the revocation:
    svc.reader.take([])                               # ends with _restored: grant, ready, tags due
    svc.dispatcher.finish_done()
    svc.dispatcher.dispatch()
    assert _wait(lambda: all(f.done() for f in svc.dispatcher.running))
    svc.dispatcher.finish_done()
    assert writes == [], f"a write to 360Learning after the revocation returned: {writes}"


def test_a_member_cut_off_from_kafka_stops_passing_its_fence():
    """The fence asks the group metadata; kafka-python marks the coordinator dead when the
    session expires without heartbeats (coordinator/base.py:980-985) but keeps the generation and
    member id until it hears from the broker again. The broker meanwhile evicted the member and
    gave its units to another one: the cut-off member's lanes still write to 360Learning, after
    the new owner's settle."""
    heartbeat = SimpleNamespace(last_receive=time.monotonic() - 60, session_timeout_ms=10_000)
    meta = SimpleNamespace(generation_id=7, member_id="m1", state="stable")
    ownership = Ownership(lambda: meta, silence=lambda: time.monotonic() - heartbeat.last_receive,
                          lease_s=heartbeat.session_timeout_ms / 2000)     # the lease, as the service sets it
    tps = {("learning.courses", 3)}
    ownership.assigned(tps)
    ownership.grant({tp: ownership.assignment(tp) for tp in tps})
    fence = ownership.fence(tps)
    assert time.monotonic() - heartbeat.last_receive > heartbeat.session_timeout_ms / 1000
    with pytest.raises(LaneRevoked):
        with fence.writing("POST /bulk"):
            pass


def test_a_batch_stopped_by_its_fence_keeps_the_events_of_partitions_still_owned():
    """A lane's batch holds events of several partitions of its unit. When only some of them are
    revoked (kafka-python revokes per partition: a topic's partition count changed at runtime, the
    subscription changed), the fence raises LaneRevoked for the whole batch and ``_finish_done``
    drops it all (``lane.released()``, service.py:568-570), including the events of partitions
    still owned: their tracker keeps them unfinished forever and the partition's commit is stuck
    until the next restart or revocation."""
    from publisher_360learning.ownership import LaneRevoked as Revoked

    class Fenced(Scripted):
        def deliver_connection(self, connection, items, settle=False, fence=None):
            with fence.writing("POST /bulk"):
                return super().deliver_connection(connection, items, settle)

    svc = service(Fenced())
    svc.reader.take([message(0, "acme", partition=3), message(0, "acme", partition=9)])
    release = threading.Event()
    original = svc.dispatcher.deliver

    def held(*args):
        release.wait(5)
        return original(*args)
    svc.dispatcher.deliver = held
    svc.dispatcher.dispatch()
    barrier = svc.membership.revoked({(TOPIC, 9)})       # partition 9 only
    svc.membership.catch_up()
    release.set()
    assert _wait(lambda: all(f.done() for f in svc.dispatcher.running))
    assert isinstance(next(iter(svc.dispatcher.running)).result()[1], Revoked)
    svc.dispatcher.finish_done()
    for _ in range(20):
        svc.dispatcher.dispatch()
        time.sleep(0.01)
        svc.dispatcher.finish_done()
        svc.committer.commit()
    assert svc.shared.consumer.commits and svc.shared.consumer.commits[-1].get((TOPIC, 3)) == 1, \
        f"partition 3's event was dropped: commits {svc.shared.consumer.commits}, tracker {svc.shared.offsets[(TOPIC, 3)]}"
