"""Fair request queues: what one connection and one tenant may hold of a partition, whose turn is next.

A partition of the requests topic is shared by every connection whose home it is (about a
sixth of all tenants with six partitions). The worker holds the requests it read and did not
end yet in memory, at most ``MAX_BACKLOG`` per partition, then pauses the partition: without
caps, one connection's pile of requests that cannot merge (replays of separate date ranges, dry
runs beside real ones) filled that bound and every other tenant of the partition waited behind
its one running sync.

* :class:`Admission` caps the requests one **connection** and one **tenant** hold in a
  partition (waiting or running, merged ones included). A request beyond a cap is not held: it
  ends at once, refused with a ``failed`` status whose ``error.kind`` is ``too_many_pending``
  and a dead letter keeping its raw value (the client retries later, or an operator re-drives
  the dead letter). Refusals are committed with the partition's next endings, so the partition
  keeps being read and the other tenants' requests behind the flood are read and run. The
  tenant cap is below the partition's bound, so one tenant alone can never pause it.
* :func:`next_turn` picks which waiting connection runs when a thread is free: the first
  (in queue order) of the tenant with the fewest runs going, so a tenant flooding several
  connections does not take every thread.

Pure: the worker counts what it holds and asks.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence

from hostspec.errors import ConfigError

if TYPE_CHECKING:
    from hostspec.runtime.tasks import Pending, Running

TOO_MANY_PENDING = "too_many_pending"     # error.kind of the status of a request refused by a cap
DEFAULT_PER_CONNECTION = 50
DEFAULT_PER_TENANT = 250


@dataclass(frozen=True)
class PendingCaps:
    """Requests read and not yet ended that one connection, and one tenant, may hold in a partition."""

    per_connection: int = DEFAULT_PER_CONNECTION
    per_tenant: int = DEFAULT_PER_TENANT
    partition_bound: int = 500     # the partition is paused beyond this many (worker.MAX_BACKLOG)

    def __post_init__(self) -> None:
        for name in ("per_connection", "per_tenant"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"max pending requests {name.replace('_', ' ')} must be a whole number "
                                  f"of at least 1, not {value!r}")
        if self.per_tenant >= self.partition_bound:
            raise ConfigError(f"max pending requests per tenant ({self.per_tenant}) must be below "
                              f"{self.partition_bound}, the requests a partition holds before it is paused: "
                              "one tenant could pause every other tenant of its partition")


@dataclass(frozen=True)
class Overflow:
    """Why a request is not held: the cap it would exceed, in words for its status and dead letter."""

    reason: str
    errors: dict[str, list[str]]


class Admission:
    """One pass over a partition's new requests: what is held when it starts, one more per request taken."""

    def __init__(self, caps: PendingCaps, held: Iterable[tuple[str, str]]):
        """:param held: (tenant, connection) of every request the partition holds, one pair each."""
        self.caps = caps
        self._connections: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()
        for tenant, connection in held:
            self._connections[connection] += 1
            self._tenants[tenant] += 1

    def take(self, tenant: str, connection: str) -> Overflow | None:
        """Hold one more request of ``connection`` (of ``tenant``), or say which cap forbids it."""
        caps = self.caps
        if self._connections[connection] >= caps.per_connection:
            return _overflow(f"connection {connection!r}", self._connections[connection], caps.per_connection,
                             "connection")
        if self._tenants[tenant] >= caps.per_tenant:
            return _overflow(f"tenant {tenant!r} on this partition", self._tenants[tenant], caps.per_tenant,
                             "tenant")
        self._connections[connection] += 1
        self._tenants[tenant] += 1
        return None


def _overflow(whose: str, held: int, cap: int, field: str) -> Overflow:
    reason = (f"too many pending requests: {whose} has {held} requests waiting or running "
              f"(at most {cap}); retry later")
    return Overflow(reason, {field: [f"{TOO_MANY_PENDING}: at most {cap} pending requests"]})


def held_requests(waiting: Mapping[str, Iterable["Pending"]],
                  running: Mapping[str, "Running"]) -> Iterator[tuple[str, str]]:
    """(tenant, connection) once per request a partition holds: queued, running, merged into either."""
    pendings = [p for queue in waiting.values() for p in queue] + [r.pending for r in running.values()]
    for pending in pendings:
        pair = (pending.connection.tenant, pending.connection.name)
        for _ in range(1 + len(pending.followers)):
            yield pair


def next_turn(candidates: Sequence[tuple[str, str]], busy: Mapping[str, int]) -> str:
    """The connection to run next among ``candidates``, (connection, tenant) pairs in queue order:
    the first one whose tenant has the fewest runs going (``busy``, by tenant)."""
    if not candidates:
        raise ValueError("no candidate connection")
    return min(candidates, key=lambda c: busy.get(c[1], 0))[0]     # min keeps the first of equals


__all__ = ["Admission", "DEFAULT_PER_CONNECTION", "DEFAULT_PER_TENANT", "Overflow", "PendingCaps",
           "TOO_MANY_PENDING", "held_requests", "next_turn"]
