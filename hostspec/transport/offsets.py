"""Which offsets of one partition are finished, and the offset that is safe to commit.

The parallel-consumer pattern, shared by the worker (requests of many connections running side
by side) and the publisher (one lane per connection): records of a partition are read in order
but finish in any order, and the group's committed offset must never pass a record that is not
finished, whatever happens next (a stop, a kill, a take-over). One :class:`OffsetTracker` per
partition, not thread-safe (callers hold their own lock where threads share it).

A record read is either *kept* (it is now unfinished until :meth:`OffsetTracker.finished`) or
*not kept*: its key (a connection) had no room. A key that left a record behind keeps none of
its later records of the partition either, so that its records are handled in the order read,
and the tracker remembers the lowest offset it left behind. Once the key has room again,
:meth:`OffsetTracker.rewind_to` tells where to read again from, and the records read again are
kept for that key only (the other keys have them already). :meth:`OffsetTracker.evict` gives a
kept record back (a memory budget reclaiming it): it counts as left behind.

The committable position is the lowest of: the unfinished offsets, the offsets left behind and
not read again yet, the re-read's own position while it is under way, and the next offset to
read. So a rewind never moves the committable position forward: the range still to be read
again holds it back until it has been read again and finished.
"""
from __future__ import annotations

from typing import Collection, Hashable


class OffsetTracker:
    def __init__(self, start: int):
        self._unfinished: set[int] = set()
        self._next = start                        # after the highest offset read
        self._left: dict[Hashable, int] = {}       # key -> lowest offset left behind, not read again yet
        self._rereading: tuple[int, dict[Hashable, int]] | None = None   # (until, key -> read again from)
        self._position = start                    # the next offset the consumer hands over

    # -- reading ---------------------------------------------------------------------------------
    def read(self, offset: int, key: Hashable | None = None, *, keep: bool = True) -> bool:
        """A record read at ``offset``; True when the caller should keep (and later finish) it.

        False for a record read twice, for one read again that its key has already, and when
        ``keep`` is False (its key has no room: the record is left behind, to be read again).
        A record without a key (``None``) is always kept when first read."""
        self._position = offset + 1
        if offset in self._unfinished:
            return False
        if offset < self._next:                          # read again after a rewind
            if self._rereading is None:
                return False
            until, keys = self._rereading
            if offset >= until:
                self._rereading = None
            elif key is None or key not in keys or offset < keys[key]:
                return False
        else:
            self._next = offset + 1
            if self._rereading is not None and offset >= self._rereading[0]:
                self._rereading = None
        if key is not None and (not keep or key in self._left):
            self._left.setdefault(key, offset)
            return False
        self._unfinished.add(offset)
        return True

    def finished(self, offset: int) -> None:
        self._unfinished.discard(offset)

    def evict(self, offset: int, key: Hashable) -> None:
        """A kept record given back unfinished (its key's newest ones first): it is read again
        after the next :meth:`rewind_to` of ``key``."""
        if offset in self._unfinished:
            self._unfinished.discard(offset)
            self._left[key] = min(offset, self._left.get(key, offset))

    def rewind_to(self, keys: Collection[Hashable]) -> int | None:
        """Read again for ``keys`` (they have room now): the offset to seek to, or None when
        none of them left anything behind here."""
        wanted = {k: o for k, o in self._left.items() if k in keys}
        if not wanted:
            return None
        for k in wanted:
            del self._left[k]
        start = min(wanted.values())
        if self._rereading is not None:
            # another key's re-read is under way: go on from where it stands, never past it; the
            # keys re-reading already have had everything before that point read again, so they
            # take records from there on only (or they would keep a finished record a second time)
            _until, before = self._rereading
            start = min(start, self._position)
            wanted = {**{k: max(o, self._position) for k, o in before.items()}, **wanted}
        self._rereading = (self._next, wanted)
        self._position = start
        return start

    # -- committing ------------------------------------------------------------------------------
    def commit_position(self, finishing: Collection[int] = ()) -> int:
        """The offset to commit: every record before it is finished (``finishing``: offsets
        about to be finished by the commit that carries this position)."""
        lowest = self._next
        for offset in self._unfinished:
            if offset < lowest and offset not in finishing:
                lowest = offset
        if self._left:
            lowest = min(lowest, *self._left.values())
        if self._rereading is not None:
            lowest = min(lowest, self._position)
        return lowest

    # -- looking -------------------------------------------------------------------------------
    @property
    def unfinished(self) -> int:
        return len(self._unfinished)

    @property
    def left_behind(self) -> dict[Hashable, int]:
        return dict(self._left)

    @property
    def next(self) -> int:
        return self._next

    def __repr__(self) -> str:
        return (f"OffsetTracker(next={self._next}, unfinished={len(self._unfinished)}, "
                f"left_behind={self._left}, rereading={self._rereading is not None})")


__all__ = ["OffsetTracker"]
