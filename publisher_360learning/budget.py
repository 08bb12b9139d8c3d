"""One memory budget per publisher instance, across all its lanes. Pure logic.

The lane cap bounds one connection; it does not bound an instance serving many (40 companies
failing at once, in a 360Learning region outage, once held 50,000 events each). The budget does:
the bytes held by every lane's queued and running events are summed, and when the sum passes
the budget the *biggest* lanes give their newest queued events back (:meth:`.lanes.Lane.evict_newest`)
until the sum is below the low mark. Those events stay in Kafka, left behind in the partition's
offset tracker (nothing is committed past them), and are read again once their lane can
deliver (it is not waiting after a failure) and the instance is below the re-read mark. Small
lanes — the healthy companies, whose events leave as fast as they come — are never the biggest,
so they keep flowing; a failing lane keeps its oldest events to retry with.

What an event holds is estimated from its value's length: parsed, an event's dictionaries take
about five times its JSON (measured with tracemalloc over the fleet test's course and stat events:
4.6 KB for a 929-byte stat, 5.4 KB for a 934-byte course); six times plus a constant keeps the
estimate on the safe side.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .lanes import Lane, Pending

BYTES_PER_VALUE_BYTE = 6
BYTES_PER_EVENT = 256
DEFAULT_BUDGET = 512 * 1024 * 1024


def event_size(value: bytes | None) -> int:
    """Estimated bytes held in memory by one read event whose value is ``value``."""
    return BYTES_PER_EVENT + BYTES_PER_VALUE_BYTE * len(value or b"")


@dataclass(frozen=True)
class MemoryBudget:
    limit: int = DEFAULT_BUDGET
    low: float = 0.8                 # evict down to this share of the limit
    reread_below: float = 0.6        # read left-behind events again only below this share

    def held(self, lanes: Iterable[Lane]) -> int:
        return sum(lane.held_bytes for lane in lanes)

    def over(self, held: int) -> bool:
        return held > self.limit

    def may_read_again(self, held: int) -> bool:
        return held < self.reread_below * self.limit

    def fetch_bytes(self) -> tuple[int, int]:
        """What the Kafka consumer may buffer ahead (per fetch, per partition): an eighth of the
        budget, within kafka-python's defaults (50 MB, 1 MB) and at least 1 MB and 256 KB."""
        return (min(50 * 2**20, max(2**20, self.limit // 8)), min(2**20, max(256 * 2**10, self.limit // 64)))

    def batch_bytes(self, concurrency: int) -> int:
        """At most this much in one delivery: every lane running at once stays within half the budget."""
        return max(1, self.limit // (2 * max(1, concurrency)))

    def evict(self, lanes: list[Lane]) -> list[tuple[Lane, list[Pending]]]:
        """When over the limit, take events back from the biggest lanes until the held bytes are
        at the low mark (or nothing more can be taken); returns what each lane gave back."""
        held = self.held(lanes)
        if not self.over(held):
            return []
        target = int(self.low * self.limit)
        taken: dict[int, tuple[Lane, list[Pending]]] = {}
        while held > target:
            ranked = sorted((lane for lane in lanes if len(lane.queue) > 1), key=lambda lane: lane.queued_bytes,
                            reverse=True)
            if not ranked:
                break
            biggest = ranked[0]
            runner_up = ranked[1].queued_bytes if len(ranked) > 1 else 0
            # down to the next biggest lane, or to the target, whichever comes first
            wanted = max(1, min(held - target, biggest.queued_bytes - runner_up))
            evicted = biggest.evict_newest(wanted)
            if not evicted:
                break
            held -= sum(p.size for p in evicted)
            taken.setdefault(id(biggest), (biggest, []))[1].extend(evicted)
        return list(taken.values())


__all__ = ["DEFAULT_BUDGET", "MemoryBudget", "event_size"]
