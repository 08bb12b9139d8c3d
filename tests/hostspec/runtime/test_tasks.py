"""Partition tasks: home partitions, the lowest unfinished offset, ownership and the revoke barrier."""
from __future__ import annotations

import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from hostspec.errors import RunAbandoned
from hostspec.runtime.tasks import PartitionTask, home_partition
from hostspec.transport.murmur2 import partition_for

MEMBER = SimpleNamespace(generation_id=7, member_id="m-1")
EVICTED = SimpleNamespace(generation_id=-1, member_id="")


def task(membership=lambda: MEMBER) -> PartitionTask:
    return PartitionTask(("req", 2), state_partition=2, membership=membership)


def test_home_is_where_kafkas_default_partitioner_puts_a_request_keyed_by_connection():
    names = [f"conn-{i}" for i in range(600)]
    assert all(home_partition(n, 6) == partition_for(n.encode(), 6) for n in names)
    spread = Counter(home_partition(n, 6) for n in names)
    assert set(spread) == set(range(6)) and min(spread.values()) > 60      # every partition gets its share


def test_the_committed_offset_is_the_lowest_request_not_finished():
    t = task()
    t.start_offset = 10
    t.start()
    for offset in (10, 11, 12, 13):
        t.fetched(offset)
    assert t.offset_to_commit([]) == 10
    assert t.offset_to_commit([11]) == 10          # 11 ends but 10 still runs: 10 will be read again
    t.finished(11)
    t.finished(13)
    assert t.offset_to_commit([10]) == 12          # 10 ends: 12 is the first still to do
    t.finished(10)
    t.finished(12)
    assert t.offset_to_commit([]) == 14            # all done: past the last one read


def test_what_was_read_before_the_restore_is_forgotten():
    t = task()
    t.fetched(3)
    t.backlog.append("stale")
    t.start_offset = 1
    t.start()
    assert not t.backlog and t.unfinished == 0 and t.offset_to_commit([]) == 1 and t.phase == "ready"


def test_no_commit_once_revoked_or_evicted():
    metadata = [MEMBER]
    t = task(lambda: metadata[0])
    assert t.membership() is MEMBER and t.still_ours()
    metadata[0] = EVICTED                 # kafka-python's view after the poll loop stalled too long
    with pytest.raises(RunAbandoned, match="no longer a member"):
        t.membership()
    metadata[0] = MEMBER
    t.revoke()
    with pytest.raises(RunAbandoned, match="revoked"):
        t.membership()
    assert not t.still_ours()


def test_revoke_waits_for_the_commit_in_flight_and_cancels_runs():
    from hostspec.runtime.tasks import Pending, Running
    from concurrent.futures import Future

    t = task()
    running = Running(Pending(None, None, None), Future())
    t.started("acme", running)
    in_commit, release = threading.Event(), threading.Event()

    def commit() -> None:
        with t.commit_lock:
            in_commit.set()
            release.wait(5)

    committer = threading.Thread(target=commit)
    committer.start()
    in_commit.wait(5)
    revoked = threading.Event()
    revoker = threading.Thread(target=lambda: (t.revoke(), revoked.set()))
    revoker.start()
    time.sleep(0.2)
    assert running.cancel.is_set() and not revoked.is_set()     # runs told at once, but the barrier holds
    release.set()
    revoker.join(5)
    committer.join(5)
    assert revoked.is_set()
    late = Running(Pending(None, None, None), Future())
    t.started("other", late)
    assert late.cancel.is_set()                                  # a run started after the revoke stops at once


def test_a_worker_that_rejoined_under_a_new_member_id_owns_nothing_it_had():
    """kafka-python does not always call "lost" when an evicted member rejoins; the task knows the
    membership it was assigned to and refuses commits from another one."""
    metadata = [MEMBER]
    t = PartitionTask(("req", 2), state_partition=2, membership=lambda: metadata[0], member_id="m-1")
    assert t.membership() is MEMBER and not t.stale(MEMBER)
    rejoined = SimpleNamespace(generation_id=9, member_id="m-2")       # a valid, newer generation
    metadata[0] = rejoined
    assert t.stale(rejoined)
    with pytest.raises(RunAbandoned, match="rejoined its group"):
        t.membership()
