"""Which partitions this instance owns right now, as the lane threads see it: the fence a lane
passes before every write to 360Learning.

A revocation may give up waiting for a slow delivery (``revoke_wait_s``), and the partition's
new owner then delivers newer events of the same company. Nothing may let the left-behind
delivery write after that. So:

* :meth:`Ownership.assigned` (the group's callback) counts each assignment of a partition;
  :meth:`Ownership.grant` gives it a new *epoch* when it is served (its ledger restored), only if
  it is still assigned by the same assignment the restore began under; :meth:`Ownership.revoke`
  takes it away at once, from the group's callback, before any wait.
* A delivery holds a :class:`Fence` over the partitions of its events, taken at dispatch. Every
  360Learning write (a bulk submission, a tag write, an integration created) runs inside
  :meth:`Fence.writing`: it checks that every partition still has the epoch it had at dispatch,
  that the consumer is still a member of its group, and that the group coordinator answered a
  heartbeat lately (a *lease*: a member cut off from Kafka for half its session timeout stops
  writing before the broker gives its units away), and raises :class:`LaneRevoked` otherwise;
  while the write is in flight, the partitions count it.
* The revocation then waits until no write on its partitions is in flight (bounded by the HTTP
  timeout of one call). From that moment no operation of the old owner can *start*; the new
  owner waits for the ones already submitted (:meth:`.delivery.Deliverer.settle`, 360Learning's
  list of unfinished operations), so an old import never lands after a newer one.
"""
from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, Collection, Iterator, Mapping

Partition = tuple[str, int]


class LaneRevoked(Exception):
    """A delivery stopped before a write: its partitions are no longer this instance's."""


class Ownership:
    def __init__(self, membership: Callable[[], Any] | None = None, *,
                 silence: Callable[[], float] | None = None, lease_s: float = float("inf")):
        """:param membership: the consumer's group metadata (``generation_id``, ``member_id``),
        read from any thread; a generation below 0 means this instance left the group.
        :param silence: seconds since the group coordinator last answered a heartbeat; past
            ``lease_s`` no write starts."""
        self._cond = threading.Condition()
        self._epochs: dict[Partition, int] = {}
        self._members: dict[Partition, str | None] = {}
        self._writing: Counter[Partition] = Counter()
        self._assignments: dict[Partition, int] = {}    # how many times each was assigned
        self._assigned: set[Partition] = set()           # assigned now (by the group's callbacks)
        self._issued = 0
        self._membership = membership
        self._silence, self._lease_s = silence, lease_s

    def _member(self) -> tuple[int, str | None]:
        if self._membership is None:
            return 0, None
        metadata = self._membership()
        return metadata.generation_id, metadata.member_id

    def assigned(self, partitions: Collection[Partition]) -> None:
        """The group gave us ``partitions`` (its callback, on kafka-python's IO thread)."""
        with self._cond:
            for tp in partitions:
                self._assignments[tp] = self._assignments.get(tp, 0) + 1
                self._assigned.add(tp)

    def assignment(self, tp: Partition) -> int:
        """Which assignment of ``tp`` is the current one (to hand to :meth:`grant` later)."""
        with self._cond:
            return self._assignments.get(tp, 0)

    def grant(self, assignments: Mapping[Partition, int]) -> set[Partition]:
        """Serve the partitions restored under these assignments: those still assigned by the same
        assignment get a new epoch (returned); one revoked meanwhile, or assigned again since (a
        newer restore serves it), is not served."""
        _generation, member = self._member()
        granted = set()
        with self._cond:
            for tp, assignment in assignments.items():
                if tp in self._assigned and self._assignments.get(tp) == assignment:
                    self._issued += 1
                    self._epochs[tp] = self._issued
                    self._members[tp] = member
                    granted.add(tp)
        return granted

    def revoke(self, partitions: Collection[Partition]) -> None:
        with self._cond:
            for tp in partitions:
                self._epochs.pop(tp, None)
                self._members.pop(tp, None)
                self._assigned.discard(tp)

    def fence(self, partitions: Collection[Partition]) -> "Fence":
        with self._cond:
            return Fence(self, {tp: self._epochs.get(tp) for tp in partitions})

    def writes_in_flight(self, partitions: Collection[Partition]) -> int:
        with self._cond:
            return sum(self._writing[tp] for tp in partitions)

    def wait_for_writes(self, partitions: Collection[Partition], timeout_s: float) -> bool:
        """Wait until no write on ``partitions`` is in flight; False when still some after ``timeout_s``."""
        with self._cond:
            return self._cond.wait_for(lambda: not any(self._writing[tp] for tp in partitions), timeout_s)

    def _enter(self, epochs: dict[Partition, int | None], what: str) -> None:
        generation, member = self._member()
        silent = self._silence() if self._silence is not None else 0.0
        if silent > self._lease_s:
            raise LaneRevoked(f"{what} not sent: no answer from the group coordinator for {silent:.0f}s; this "
                              "instance may have lost its partitions")
        with self._cond:
            lost = sorted(tp for tp, epoch in epochs.items() if epoch is None or self._epochs.get(tp) != epoch)
            if not lost and generation < 0:
                lost = sorted(epochs)
            if not lost and member is not None:
                lost = sorted(tp for tp in epochs if self._members.get(tp) not in (None, member))
            if lost:
                raise LaneRevoked(f"{what} not sent: partitions {', '.join(f'{t}[{p}]' for t, p in lost)} "
                                  "are no longer this instance's")
            self._writing.update(epochs.keys())

    def _leave(self, epochs: dict[Partition, int | None]) -> None:
        with self._cond:
            self._writing.subtract(epochs.keys())
            self._cond.notify_all()


class Fence:
    """The ownership one delivery started with."""

    def __init__(self, ownership: Ownership, epochs: dict[Partition, int | None]):
        self._ownership, self._epochs = ownership, epochs

    @contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Around one write to 360Learning: :class:`LaneRevoked` instead, once not ours."""
        self._ownership._enter(self._epochs, what)
        try:
            yield
        finally:
            self._ownership._leave(self._epochs)

    def __repr__(self) -> str:
        return f"Fence({sorted(self._epochs)})"


__all__ = ["Fence", "LaneRevoked", "Ownership"]
