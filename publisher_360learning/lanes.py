"""Per-connection lanes and per-partition offsets: how the publisher keeps one company's trouble
from delaying any other (the parallel-consumer pattern), without losing a record. Pure logic.

* A :class:`Lane` holds the events of one connection waiting for delivery, in the order read,
  with the connection's own retry state: failures in a row, when to try next, and why it waits
  (``ok``, ``retrying``: 360Learning unavailable, ``config``: the company's setting, e.g. its
  bulk API disabled). One delivery at a time per lane; lanes run side by side.
* An :class:`Offsets` tracker per partition knows which offsets are read but not yet finished
  (delivered, dead-lettered, parked or skipped); the offset committed is the lowest unfinished
  one, so a crash re-reads exactly what was not finished — including a failing company's records
  far behind the others' — and the ledger makes the re-read cheap.
* A lane holds at most ``cap`` events in memory. Beyond that, its newer events are *not kept*:
  the tracker remembers the lowest such offset per partition (it stays unfinished, so nothing
  is committed past it), and once the lane has room again the partition is read again from
  there (:meth:`Offsets.rewind_to`), taking only that lane's events on the way.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

Partition = tuple[str, int]

BACKOFF_S = (1, 2, 5, 10, 30, 60)       # a lane's waits after 1, 2, … failures in a row
CONFIG_BACKOFF_S = 60                   # a company's configuration problem: ask again every minute


@dataclass
class Pending:
    tp: Partition
    offset: int
    item: Any                           # what the deliverer takes (an Inbound)
    seen: float = 0.0                   # when it was read (monotonic)
    tracker: "Offsets | None" = None    # the partition's tracker when it was read: a stale one after
                                        # the partition was given up (nothing of it is committed)


@dataclass
class Lane:
    connection: str
    cap: int = 50_000
    queue: deque = field(default_factory=deque)
    running: bool = False
    failures: int = 0                   # failed deliveries in a row (any cause)
    bugs: int = 0                       # of which unexpected errors in a row
    not_before: float = 0.0
    state: str = "ok"                  # ok | retrying | config
    reason: str = ""
    tags_due: float | None = None       # when to run the tags step again (some tags pending)
    unit: int = -1                      # the unit its events come from (every event of a company: one)
    settled: bool = False               # the company's earlier operations have ended since we own it
    overflowed: bool = False

    @property
    def full(self) -> bool:
        return len(self.queue) >= self.cap

    def due(self, now: float, *, batch_size: int, batch_seconds: float) -> bool:
        if self.running or now < self.not_before:
            return False
        if self.queue:
            return len(self.queue) >= batch_size or now - self.queue[0].seen >= batch_seconds or self.failures > 0
        return self.tags_due is not None and now >= self.tags_due

    def take(self, batch_size: int) -> list[Pending]:
        batch = [self.queue.popleft() for _ in range(min(batch_size, len(self.queue)))]
        self.running = True
        return batch

    def succeeded(self) -> None:
        self.running, self.failures, self.bugs, self.state, self.reason, self.not_before = \
            False, 0, 0, "ok", "", 0.0

    def failed(self, batch: list[Pending], reason: str, *, config: bool = False,
               now: float | None = None) -> float:
        """Put ``batch`` back at the front; returns how long the lane now waits."""
        now = time.monotonic() if now is None else now
        self.queue.extendleft(reversed(batch))
        self.running = False
        self.failures += 1
        wait = max(CONFIG_BACKOFF_S if config else 0, BACKOFF_S[min(self.failures, len(BACKOFF_S)) - 1])
        self.not_before = now + wait
        self.state, self.reason = ("config" if config else "retrying"), reason
        return wait


class Offsets:
    """One partition: offsets read and not finished, the next offset to read, and where to read
    again for lanes that had no room."""

    def __init__(self, start: int):
        self.unfinished: set[int] = set()
        self.next = start                  # the offset after the last one read
        self.dropped: dict[str, int] = {}  # connection -> lowest offset not kept (its lane was full)
        self.rereading: tuple[int, dict[str, int]] | None = None   # (read again until, lanes taken)
        self.position = start              # the offset after the last one read, rereading included

    def read(self, offset: int, connection: str | None, *, keep: bool) -> bool:
        """A record read at ``offset`` of ``connection``; True when the caller should keep it.

        ``keep`` False: its lane is full; the record stays unfinished-by-omission (remembered in
        ``dropped``) and will be read again."""
        self.position = offset + 1
        if offset in self.unfinished:                  # taken already and not finished: never twice
            return False
        if offset < self.next:                         # read again after a rewind
            if self.rereading is None or connection is None:
                return False
            until, lanes = self.rereading
            if offset >= until:
                self.rereading = None
            elif connection not in lanes or offset < lanes[connection]:
                return False
        else:
            self.next = offset + 1
            if self.rereading is not None and offset >= self.rereading[0]:
                self.rereading = None
        if connection is not None and (not keep or connection in self.dropped):
            # once a lane dropped a record here, it takes none after it before the rewind: its
            # records are delivered in the order read
            self.dropped.setdefault(connection, offset)
            return False
        self.unfinished.add(offset)
        return True

    def finished(self, offset: int) -> None:
        self.unfinished.discard(offset)

    def commit_position(self) -> int:
        """The offset to commit: everything before it is finished."""
        return min([*self.unfinished, *self.dropped.values(), self.next])

    def rewind_to(self, connections: set[str]) -> int | None:
        """Read again for ``connections`` (their lanes have room now): the offset to seek to,
        or None when none of them dropped anything here."""
        lanes = {c: o for c, o in self.dropped.items() if c in connections}
        if not lanes:
            return None
        for c in lanes:
            del self.dropped[c]
        start = min(lanes.values())
        if self.rereading is not None:
            # another lane's read-again is under way: go on from where it is, never past it
            _until, before = self.rereading
            start = min(start, self.position)
            lanes = {**before, **lanes}
        self.rereading = (self.next, lanes)
        self.position = start
        return start
