"""Lanes and offsets: a full lane's records are read again later, in order, and nothing is
committed past a record not finished."""
from __future__ import annotations

from hostspec.transport.offsets import OffsetTracker as Offsets
from publisher_360learning.lanes import CONFIG_BACKOFF_S, Lane, Pending


def test_commit_position_is_the_lowest_unfinished_offset():
    o = Offsets(10)
    for off, conn in [(10, "a"), (11, "b"), (12, "a")]:
        assert o.read(off, conn, keep=True)
    o.finished(11)
    o.finished(12)
    assert o.commit_position() == 10
    o.finished(10)
    assert o.commit_position() == 13


def test_a_full_lane_drops_then_reads_again_only_its_own_records_in_order():
    o = Offsets(0)
    kept = []
    full = {"a": False, "b": False}
    stream = [(0, "a"), (1, "b"), (2, "a"), (3, "b"), (4, "a"), (5, "b")]
    for off, conn in stream:
        if off == 2:
            full["a"] = True            # lane a is full from offset 2 on
        if off == 4:
            full["a"] = False           # room again, but a record dropped before must come first
        if o.read(off, conn, keep=not full[conn]):
            kept.append((off, conn))
            o.finished(off)
    assert kept == [(0, "a"), (1, "b"), (3, "b"), (5, "b")]
    assert o.commit_position() == 2             # nothing committed past a's dropped record
    start = o.rewind_to({"a"})
    assert start == 2
    again = [(off, conn) for off, conn in stream[start:] if o.read(off, conn, keep=True)]
    assert again == [(2, "a"), (4, "a")]        # only a's, in order, none of b's twice
    for off, _ in again:
        o.finished(off)
    assert o.commit_position() == 6
    assert o.read(6, "b", keep=True)             # past the rewind: normal reading


def test_rewind_for_a_lane_that_dropped_nothing_is_none():
    o = Offsets(0)
    o.read(0, "a", keep=True)
    assert o.rewind_to({"a"}) is None


def test_a_failing_lane_backs_off_on_its_own_and_keeps_its_order():
    lane = Lane("acme", cap=10)
    lane.queue.extend(Pending(("t", 0), i, i) for i in range(5))
    batch = lane.take(3)
    assert [p.offset for p in batch] == [0, 1, 2] and lane.running
    wait = lane.failed(batch, "503", now=100.0)
    assert [p.offset for p in lane.queue] == [0, 1, 2, 3, 4] and wait == 1 and lane.state == "retrying"
    assert not lane.due(100.5, batch_size=3, batch_seconds=0)
    assert lane.due(101.0, batch_size=3, batch_seconds=0)
    assert lane.failed(lane.take(3), "disabled", config=True, now=200.0) == CONFIG_BACKOFF_S
    assert lane.state == "config"
    lane.take(3)
    lane.succeeded()
    assert (lane.state, lane.failures) == ("ok", 0)


def test_two_lanes_getting_room_one_after_the_other_lose_nothing():
    """Lane a's read-again is under way when lane b gets room: the second seek must not jump over
    a's records (found by the adversarial review)."""
    o = Offsets(0)
    stream = [(i, "a" if i in (2, 3, 4) else "b" if i in (6, 7) else "c") for i in range(10)]
    full = {"a": False, "b": False, "c": False}
    for off, conn in stream:
        full["a"] = off >= 2
        full["b"] = off >= 6
        if o.read(off, conn, keep=not full[conn]):
            o.finished(off)
    start_a = o.rewind_to({"a"})
    assert start_a == 2
    got = []
    for off, conn in stream[start_a:4]:           # a's read-again has reached offset 3
        if o.read(off, conn, keep=True):
            got.append(off)
    start_b = o.rewind_to({"b"})
    assert start_b == 4                           # not 6: a's record at 4 is still to read
    for off, conn in stream[start_b:]:
        if o.read(off, conn, keep=True):
            got.append(off)
    assert got == [2, 3, 4, 6, 7]
    for off in got:
        o.finished(off)
    assert o.commit_position() == 10


def test_a_record_is_never_taken_twice_while_unfinished():
    o = Offsets(0)
    assert o.read(0, "a", keep=True)
    assert not o.read(0, "a", keep=True)
