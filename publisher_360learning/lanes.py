"""Per-connection lanes and per-partition offsets: how the publisher keeps one company's trouble
from delaying any other (the parallel-consumer pattern), without losing a record. Pure logic.

* A :class:`Lane` holds the events of one connection waiting for delivery, in the order read,
  with the connection's own retry state: failures in a row, when to try next, and why it waits
  (``ok``, ``retrying``: 360Learning unavailable, ``config``: the company's setting, e.g. its
  bulk API disabled). One delivery at a time per lane; lanes run side by side.
* A :class:`hostspec.transport.offsets.OffsetTracker` per partition knows which offsets are read but not
  yet finished (delivered, dead-lettered, parked or skipped); the offset committed is the lowest
  unfinished one, so a crash re-reads exactly what was not finished — including a failing
  company's records far behind the others' — and the ledger makes the re-read cheap.
* A lane holds at most ``cap`` events in memory, and the instance's memory budget may take its
  newest events back (:mod:`.budget`). Events not kept are left in Kafka: the tracker remembers
  the lowest such offset per partition and lane (nothing is committed past it), and once the
  lane has room again the partition is read again from there, taking only that lane's events.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from hostspec.transport.offsets import OffsetTracker

Partition = tuple[str, int]

BACKOFF_S = (1, 2, 5, 10, 30, 60)       # a lane's waits after 1, 2, … failures in a row
CONFIG_BACKOFF_S = 60                   # a company's configuration problem: ask again every minute


@dataclass
class Pending:
    tp: Partition
    offset: int
    item: Any                           # what the deliverer takes (an Inbound)
    seen: float = 0.0                   # when it was read (monotonic)
    tracker: "OffsetTracker | None" = None   # the partition's tracker when it was read: a stale one
                                        # after the partition was given up (nothing of it is committed)
    size: int = 0                       # bytes it holds in memory (an estimate: see .budget)


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
    overflowed: bool = False            # left events in Kafka (full, or evicted): read them again later
    queued_bytes: int = 0               # held by the events in ``queue``
    running_bytes: int = 0              # held by the batch being delivered

    @property
    def full(self) -> bool:
        return len(self.queue) >= self.cap

    @property
    def held_bytes(self) -> int:
        return self.queued_bytes + self.running_bytes

    def add(self, pending: Pending) -> None:
        self.queue.append(pending)
        self.queued_bytes += pending.size

    def evict_newest(self, wanted: int, *, keep: int = 1) -> list[Pending]:
        """Give back the newest queued events, at least ``wanted`` bytes' worth, keeping the
        ``keep`` oldest (a lane must keep something to retry with, or it never recovers)."""
        evicted: list[Pending] = []
        freed = 0
        while freed < wanted and len(self.queue) > keep:
            pending = self.queue.pop()
            freed += pending.size
            evicted.append(pending)
        self.queued_bytes -= freed
        if evicted:
            self.overflowed = True
        return evicted

    def discard(self, keep: "Callable[[Pending], bool]") -> None:
        """Keep only the queued events for which ``keep`` is true."""
        self.queue = deque(p for p in self.queue if keep(p))
        self.queued_bytes = sum(p.size for p in self.queue)

    def due(self, now: float, *, batch_size: int, batch_seconds: float) -> bool:
        if self.running or now < self.not_before:
            return False
        if self.queue:
            return len(self.queue) >= batch_size or now - self.queue[0].seen >= batch_seconds or self.failures > 0
        return self.tags_due is not None and now >= self.tags_due

    def take(self, batch_size: int, max_bytes: int | None = None) -> list[Pending]:
        """The oldest events, at most ``batch_size`` of them and ``max_bytes`` (one at least)."""
        batch: list[Pending] = []
        size = 0
        while self.queue and len(batch) < batch_size and \
                (not batch or max_bytes is None or size + self.queue[0].size <= max_bytes):
            pending = self.queue.popleft()
            size += pending.size
            batch.append(pending)
        self.queued_bytes -= size
        self.running, self.running_bytes = True, size
        return batch

    def requeue(self, batch: list[Pending]) -> None:
        """The running batch ended without an outcome: ``batch`` (what of it is still to deliver)
        goes back to the front, in order."""
        self.queue.extendleft(reversed(batch))
        self.queued_bytes += sum(p.size for p in batch)
        self.running, self.running_bytes = False, 0

    def succeeded(self) -> None:
        self.running, self.failures, self.bugs, self.state, self.reason, self.not_before = \
            False, 0, 0, "ok", "", 0.0
        self.running_bytes = 0

    def failed(self, batch: list[Pending], reason: str, *, config: bool = False,
               now: float | None = None) -> float:
        """Put ``batch`` back at the front; returns how long the lane now waits."""
        now = time.monotonic() if now is None else now
        self.requeue(batch)
        self.failures += 1
        wait = max(CONFIG_BACKOFF_S if config else 0, BACKOFF_S[min(self.failures, len(BACKOFF_S)) - 1])
        self.not_before = now + wait
        self.state, self.reason = ("config" if config else "retrying"), reason
        return wait
