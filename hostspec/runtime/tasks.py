"""A request partition owned by one worker: its queue, its runs, its offsets and its state.

The worker holds one :class:`PartitionTask` per assigned partition of the requests topic (the
task model of Kafka Streams). A task

* restores, then holds, the state of its connections: partition *p* of the requests topic and
  partition *p* of the state topic are co-partitioned, every connection has a *home* partition
  (:func:`home_partition`) and only the owner of that partition runs it. A request that arrives
  on another partition is forwarded to its home: one connection never runs on two workers;
* runs the requests of different connections at the same time (one at a time per connection,
  in order), so a slow tenant delays only its own requests;
* commits the lowest offset not yet finished (the parallel-consumer pattern): a request that
  finished after a later one is never skipped, and one that finished before a take-over is
  recognised by its request-done marker and not run again;
* is the :class:`hostspec.transport.transactions.Owner` of every transaction of its runs: it
  refuses commits once revoked, and revocation waits for the commit in flight.

Partitions of the requests topic beyond the state topic's partition count have no state and no
runs: their task only forwards requests to their home partitions.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Collection

from hostspec.errors import RunAbandoned
from hostspec.transport.offsets import OffsetTracker
from hostspec.transport.murmur2 import partition_for

if TYPE_CHECKING:
    from concurrent.futures import Future

    from hostspec.engine.report import RunReport
    from hostspec.requests import SyncRequest
    from hostspec.provider import Connection
    from hostspec.engine.state import StateDB
    from hostspec.transport.consumers import InboundMessage
    from hostspec.transport.kafka import Partition

RESTORING, READY, REVOKED = "restoring", "ready", "revoked"
MEMBERSHIP_CHECK_S = 0.5


def home_partition(connection: str, state_partitions: int) -> int:
    """The partition (of both the requests and the state topic) that owns ``connection``.

    The same murmur2 hash as Kafka's default partitioner, so a request keyed by its connection
    name lands on its home directly whenever the requests topic has as many partitions as the
    state topic.
    """
    return partition_for(connection.encode("utf-8"), state_partitions)


@dataclass
class Pending:
    """An admitted request waiting for its connection's turn."""

    msg: "InboundMessage"
    request: "SyncRequest"
    connection: "Connection"
    attempts: int = 0
    not_before: float = 0.0
    reading_back: bool = False   # its connection's state is being read back from the changelog
    followers: list["Pending"] = field(default_factory=list)   # requests merged into this one's run

    @property
    def messages(self) -> list["InboundMessage"]:
        """The messages this run answers: its own, then those of the requests merged into it."""
        return [self.msg, *(f.msg for f in self.followers)]

    def absorb(self, later: "Pending", merged: "SyncRequest") -> None:
        """Take ``later`` into this request's run, which now runs ``merged`` (see hostspec.runtime.coalescing)."""
        self.request = merged
        self.followers += [later, *later.followers]
        later.followers = []

    def separate(self) -> list["Pending"]:
        """The requests merged into this one, each on its own again (this one keeps its ``merged``
        request: call when it ended without running)."""
        followers, self.followers = self.followers, []
        return followers


@dataclass
class Running:
    pending: Pending
    future: "Future[RunReport]"
    cancel: threading.Event = field(default_factory=threading.Event)


class PartitionTask:
    def __init__(self, tp: "Partition", *, state_partition: int | None, membership: Callable[[], Any],
                 member_id: str | None = None):
        """:param member_id: the group member id the partition was assigned to; a member id that
        changed since means the worker left the group in between (evicted, then rejoined), and
        everything it owned before is lost, whatever kafka-python's callbacks said."""
        self.tp = tp
        self.state_partition = state_partition
        self._membership = membership
        self.member_id = member_id
        self.phase = RESTORING
        self.store: StateDB | None = None
        self.start_offset: int | None = None   # the group's committed offset, once stable (set by the restore)
        self.restored_to: int | None = None    # where the restore stopped reading the state partition
        self._written: dict[str, int] = {}     # scope -> offset after its last state records known committed
        self.commit_lock = threading.Lock()
        self.revoked = threading.Event()
        self._offsets = threading.Lock()
        self._tracker: OffsetTracker | None = None      # from the start offset, once restored
        self._checked_at = 0.0
        self._member_ok = True
        self._runs = threading.Lock()
        self.running: dict[str, Running] = {}       # by connection name; changed under _runs
        # the main thread's own bookkeeping
        self.backlog: deque[InboundMessage] = deque()
        self.waiting: dict[str, deque[Pending]] = {}
        self.paused = False
        self.not_before = 0.0
        self.failures = 0        # endings not committed in a row (their backoff)

    @property
    def partition(self) -> int:
        return self.tp[1]

    @property
    def serves_runs(self) -> bool:
        return self.state_partition is not None

    # -- offsets (any thread) ----------------------------------------------------------------------
    def start(self) -> None:
        """Restored: requests are read from the committed offset (anything read before is dropped)."""
        with self._offsets:   # nothing committed yet: from the first offset read
            self._tracker = None if self.start_offset is None else OffsetTracker(self.start_offset)
        self.backlog.clear()
        self.phase = READY

    def fetched(self, offset: int) -> bool:
        """A request read; False when it was read before (not to be handled twice)."""
        with self._offsets:
            if self._tracker is None:
                self._tracker = OffsetTracker(offset)
            return self._tracker.read(offset)

    def offset_to_commit(self, finishing: Collection[int]) -> int:
        with self._offsets:
            assert self._tracker is not None, "a transaction before any request was fetched"
            return self._tracker.commit_position(finishing)

    def finished(self, offset: int) -> None:
        with self._offsets:
            if self._tracker is not None:
                self._tracker.finished(offset)

    @property
    def unfinished(self) -> int:
        with self._offsets:
            return self._tracker.unfinished if self._tracker is not None else 0

    # -- where a connection's state stands in the changelog -------------------------------------------
    def state_written(self, scope: str, end: int) -> None:
        with self._offsets:
            self._written[scope] = max(end, self._written.get(scope, 0))

    def read_back_from(self, scope: str) -> int | None:
        """Where to re-read ``scope``'s state after a commit whose outcome is unknown: after its
        last records known committed (the local database reflects everything before)."""
        with self._offsets:
            return self._written.get(scope, self.restored_to)

    # -- runs --------------------------------------------------------------------------------------
    def started(self, name: str, running: Running) -> None:
        with self._runs:
            self.running[name] = running
            if self.revoked.is_set():
                running.cancel.set()

    def ended(self, name: str) -> Running:
        with self._runs:
            return self.running.pop(name)

    # -- ownership (any thread) --------------------------------------------------------------------
    def membership(self) -> Any:
        """The group metadata to fence a transaction with; :class:`RunAbandoned` once not ours."""
        if self.revoked.is_set():
            raise RunAbandoned(f"partition {self.partition} was revoked")
        metadata = self._membership()
        if metadata.generation_id < 0 or not metadata.member_id:
            # evicted (e.g. the poll loop stalled past max.poll.interval.ms): the broker would
            # accept offsets without a generation unchecked, so never send them
            raise RunAbandoned(f"this worker is no longer a member of its group (partition {self.partition})")
        if self.member_id is not None and metadata.member_id != self.member_id:
            raise RunAbandoned(f"this worker rejoined its group since partition {self.partition} was assigned")
        return metadata

    def stale(self, metadata: Any) -> bool:
        """Assigned to a previous membership of this worker (it left the group and came back)."""
        return bool(self.member_id and metadata.generation_id >= 0 and metadata.member_id
                    and metadata.member_id != self.member_id)

    def still_ours(self) -> bool:
        """Cheap check for runs to poll: revoked, or evicted from the group (checked twice a second)."""
        if self.revoked.is_set():
            return False
        now = time.monotonic()
        if now - self._checked_at >= MEMBERSHIP_CHECK_S:
            self._checked_at = now
            try:
                self.membership()
                self._member_ok = True
            except RunAbandoned:
                self._member_ok = False
        return self._member_ok

    def begin_revoke(self) -> None:
        """No commit of this partition may start from now on; its runs are told to stop."""
        self.revoked.set()
        self.phase = REVOKED
        with self._runs:
            for running in self.running.values():
                running.cancel.set()

    def no_commit_in_flight(self) -> bool:
        """After :meth:`begin_revoke`: true once the commit in flight, if any, has ended."""
        if self.commit_lock.acquire(blocking=False):
            self.commit_lock.release()
            return True
        return False

    def revoke(self) -> None:
        """Stop every run and every commit of this partition; returns once none is in flight."""
        self.begin_revoke()
        with self.commit_lock:   # a commit in flight ends (commits or aborts) before we return
            pass

    def __repr__(self) -> str:
        return f"PartitionTask({self.tp[0]}[{self.partition}], {self.phase}, {self.unfinished} unfinished)"


__all__ = ["Pending", "PartitionTask", "Running", "home_partition", "READY", "RESTORING", "REVOKED"]
