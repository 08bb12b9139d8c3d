"""Which partitions this instance owns right now, as the lane threads see it: the fence a lane
passes before every write to 360Learning.

A revocation may give up waiting for a slow delivery (``revoke_wait_s``), and the partition's
new owner then delivers newer events of the same company. Nothing may let the left-behind
delivery write after that. So:

* :meth:`Ownership.grant` gives a partition a new *epoch* when it is served (its ledger restored);
  :meth:`Ownership.revoke` takes it away at once, from the group's callback, before any wait.
* A delivery holds a :class:`Fence` over the partitions of its events, taken at dispatch. Every
  360Learning write (a bulk submission, a tag write, an integration created) runs inside
  :meth:`Fence.writing`: it checks that every partition still has the epoch it had at dispatch
  and that the consumer is still a member of its group, and raises :class:`LaneRevoked`
  otherwise; while the write is in flight, the partitions count it.
* The revocation then waits until no write on its partitions is in flight (bounded by the HTTP
  timeout of one call). From that moment no operation of the old owner can *start*; the new
  owner waits for the ones already submitted (:meth:`.delivery.Deliverer.settle`, 360Learning's
  list of unfinished operations), so an old import never lands after a newer one.
"""
from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, Collection, Iterator

Partition = tuple[str, int]


class LaneRevoked(Exception):
    """A delivery stopped before a write: its partitions are no longer this instance's."""


class Ownership:
    def __init__(self, membership: Callable[[], Any] | None = None):
        """:param membership: the consumer's group metadata (``generation_id``, ``member_id``),
        read from any thread; a generation below 0 means this instance left the group."""
        self._cond = threading.Condition()
        self._epochs: dict[Partition, int] = {}
        self._members: dict[Partition, str | None] = {}
        self._writing: Counter[Partition] = Counter()
        self._issued = 0
        self._membership = membership

    def _member(self) -> tuple[int, str | None]:
        if self._membership is None:
            return 0, None
        metadata = self._membership()
        return metadata.generation_id, metadata.member_id

    def grant(self, partitions: Collection[Partition]) -> None:
        _generation, member = self._member()
        with self._cond:
            for tp in partitions:
                self._issued += 1
                self._epochs[tp] = self._issued
                self._members[tp] = member

    def revoke(self, partitions: Collection[Partition]) -> None:
        with self._cond:
            for tp in partitions:
                self._epochs.pop(tp, None)
                self._members.pop(tp, None)

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
