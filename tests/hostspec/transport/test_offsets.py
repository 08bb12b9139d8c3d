"""The offset tracker against a simple model: whatever the reads, the keys without room, the
evictions, the rewinds, the stops and the take-overs, the committed offset never passes a record
that was not finished, every record is finished in the end, and each key's records are finished
in the order read."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostspec.transport.offsets import OffsetTracker

KEYS = ("a", "b", "c")
OPS = ("read", "read", "read", "finish", "finish", "evict", "room", "room", "commit", "stop")


class Partition:
    """A partition of ``keys`` read by one consumer with per-key lanes of ``cap`` records, and
    the model: the set of offsets finished at least once."""

    def __init__(self, keys: list[str], cap: int):
        self.log = keys
        self.cap = cap
        self.done: set[int] = set()
        self.first_done: list[int] = []
        self.committed = 0
        self.restart()

    def restart(self) -> None:
        """A new owner (or the same one after a stop): it reads from the committed offset and
        knows nothing else."""
        self.tracker = OffsetTracker(self.committed)
        self.position = self.committed
        self.lanes: dict[str, list[int]] = {k: [] for k in KEYS}
        self.last_finished: dict[str, int] = {}     # per key, in this tracker's life

    def read(self) -> None:
        if self.position >= len(self.log):
            return
        offset, key = self.position, self.log[self.position]
        self.position += 1
        if self.tracker.read(offset, key, keep=len(self.lanes[key]) < self.cap):
            self.lanes[key].append(offset)

    def finish(self, key: str) -> None:
        if self.lanes[key]:
            offset = self.lanes[key].pop(0)
            # one owner finishes each key's records in the order read, each once: never an older
            # one after a newer (an older course version would land last)
            assert offset > self.last_finished.get(key, -1), f"{key}: {offset} after {self.last_finished[key]}"
            self.last_finished[key] = offset
            if offset not in self.done:
                self.first_done.append(offset)
            self.done.add(offset)
            self.tracker.finished(offset)

    def evict(self, key: str) -> None:
        if self.lanes[key]:
            self.tracker.evict(self.lanes[key].pop(), key)

    def room(self, key: str) -> None:
        if len(self.lanes[key]) < self.cap:
            start = self.tracker.rewind_to({key})
            if start is not None:
                self.position = start

    def commit(self) -> None:
        position = self.tracker.commit_position()
        missing = [o for o in range(position) if o not in self.done]
        assert not missing, f"committing {position} past unfinished offsets {missing}"
        assert position >= self.committed, "the committed offset went back"
        self.committed = position

    def drain(self) -> None:
        for _ in range(20 * len(self.log) + 50):
            for key in KEYS:
                self.finish(key)
                self.room(key)
            self.read()
            self.commit()
            if len(self.done) == len(self.log) and self.committed == len(self.log):
                return


def run(keys: list[str], cap: int, ops: list[tuple[str, int]]) -> Partition:
    p = Partition(keys, cap)
    for op, k in ops:
        key = KEYS[k]
        if op == "read":
            p.read()
        elif op == "finish":
            p.finish(key)
        elif op == "evict":
            p.evict(key)
        elif op == "room":
            p.room(key)
        elif op == "commit":
            p.commit()
        else:
            p.commit()          # a stop commits what is finished, then another instance goes on
            p.restart()
    p.drain()
    return p


@settings(max_examples=1500, deadline=None)
@given(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=24), cap=st.integers(1, 3),
       ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 2)), max_size=300))
def test_never_commits_past_an_unfinished_record_and_loses_nothing(keys, cap, ops):
    p = run(keys, cap, ops)
    assert p.done == set(range(len(keys))), f"never finished: {sorted(set(range(len(keys))) - p.done)}"
    assert p.committed == len(keys)
    for key in KEYS:
        firsts = [o for o in p.first_done if keys[o] == key]
        assert firsts == sorted(firsts), f"{key}'s records finished out of order: {firsts}"


def test_the_commit_after_a_rewind_does_not_skip_the_range_to_read_again():
    """The review's case: lane cap 1; c0 kept, c1 and c2 left behind; c0 delivered; the rewind
    and the commit in the same pass: the commit must stay at c1."""
    t = OffsetTracker(0)
    assert t.read(0, "c") and not t.read(1, "c", keep=False) and not t.read(2, "c", keep=True)
    t.finished(0)
    assert t.rewind_to({"c"}) == 1
    assert t.commit_position() == 1
    assert t.read(1, "c")
    assert t.commit_position() == 1
    t.finished(1)
    assert t.commit_position() == 2                # 2 is still to be read again
    assert t.read(2, "c")
    t.finished(2)
    assert t.commit_position() == 3


def test_a_rewind_on_a_partition_not_read_for_a_while_holds_the_commit():
    """A parked partition paused until the next round: nothing is read again for an hour, and
    nothing is committed past what it must read again meanwhile."""
    t = OffsetTracker(100)
    t.read(100, "a")
    t.read(101, "b", keep=False)
    t.read(102, "a")
    t.finished(100)
    t.finished(102)
    assert t.rewind_to({"b"}) == 101
    for _ in range(3):
        assert t.commit_position() == 101


def test_finishing_offsets_count_for_the_commit_that_carries_them():
    t = OffsetTracker(5)
    t.read(5)
    t.read(6)
    assert t.commit_position() == 5
    assert t.commit_position(finishing={5}) == 6
    assert t.commit_position(finishing={5, 6}) == 7


def test_an_evicted_record_is_read_again_with_its_key_s_later_ones():
    t = OffsetTracker(0)
    for offset, key in enumerate("abab"):
        assert t.read(offset, key)
    t.evict(3, "b")
    t.evict(1, "b")
    assert t.left_behind == {"b": 1}
    assert not t.read(4, "b")                        # b takes nothing more before its rewind
    assert t.read(5, "a")
    assert t.rewind_to({"b"}) == 1
    again = [o for o, k in enumerate("ababba") if o >= 1 and t.read(o, k)]
    assert again == [1, 3, 4]


@pytest.mark.parametrize("reads", [[0, 0], [3, 1]])
def test_a_record_is_never_kept_twice(reads):
    t = OffsetTracker(0)
    kept = [t.read(o, "a") for o in reads]
    assert kept == [True, False]


def test_a_second_rewind_during_a_re_read_never_keeps_a_finished_record_again():
    """The adversarial review's case: j's re-read has passed 10 (kept, finished) when k rewinds
    below it; j must not take 10 again after 11."""
    t = OffsetTracker(0)
    t.read(5, "k", keep=False)
    t.read(10, "j", keep=False)
    t.read(11, "j", keep=False)
    t.read(12, "x")
    assert t.rewind_to({"j"}) == 10
    assert t.read(10, "j")
    t.finished(10)
    assert t.rewind_to({"k"}) == 5                   # k's re-read goes back below j's position
    kept = [o for o, key in [(5, "k"), (10, "j"), (11, "j"), (12, "x")] if t.read(o, key)]
    assert kept == [5, 11]
