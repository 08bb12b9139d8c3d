"""The publisher's group membership (a part of :class:`.service.PublisherService`): partitions
assigned (their ledger restored from the journal before they are served), revoked or lost (fenced
first: no write of a delivery on them starts any more; then waited for, bounded by
``revoke_wait_s``), and the lanes of the units served."""
from __future__ import annotations

import logging
import queue
import time
from typing import Any, Callable

from kafka.errors import KafkaError

from hostspec.transport.kafka import Partition

from .lanes import Lane

log = logging.getLogger(__package__ + ".service")     # the service's log, as before its split
WRITE_WAIT_S = 90.0     # a revocation waits this long at most for a 360Learning write in flight (one HTTP call)


class Membership:
    """Assignment, revocation and ledger restores; uses the service's state."""

    def _assigned(self, partitions: set[Partition]) -> None:     # kafka-python's IO thread
        self._ownership.assigned(partitions)
        self._events.put(("assigned", partitions))

    def _lost(self, partitions: set[Partition]):                  # kafka-python's IO thread
        """Taken away while this instance was out of its group: not claimed at the next join."""
        self._assignor.forget(partitions)
        return self._revoked(partitions)

    def _revoked(self, partitions: set[Partition]):               # kafka-python's IO thread
        """Fence first (no write of a delivery on these partitions may start from now on), then
        wait for the writes in flight, and for the deliveries themselves up to ``revoke_wait_s``."""
        self._ownership.revoke(partitions)
        self._events.put(("revoked", partitions))
        started = time.monotonic()
        deadline = started + self.settings.revoke_wait_s
        writes_deadline = started + max(self.settings.revoke_wait_s, WRITE_WAIT_S)

        def barrier() -> bool:
            now = time.monotonic()
            if self._ownership.writes_in_flight(partitions):
                if now < writes_deadline:
                    return False
                log.error("revocation: a write to 360Learning on %s still in flight after %.0fs; giving the "
                          "partitions up anyway (the new owner waits for the operations it finds unfinished)",
                          sorted(partitions), now - started)
                return True
            with self._busy_lock:
                busy = [tp for tp in partitions if self._busy.get(tp)]
            if busy and now >= deadline:
                log.warning("revocation: deliveries on %s still running after %.0fs; leaving them behind (fenced: "
                            "they write nothing more to 360Learning)", sorted(busy), self.settings.revoke_wait_s)
                return True
            return not busy
        return barrier

    def _membership(self) -> None:
        while True:
            try:
                what, partitions = self._events.get_nowait()
            except queue.Empty:
                return
            if what == "revoked":
                self._forget(partitions)
            else:   # the assignment may have changed again since the callback: take what is still ours
                current = self._consumer.assignment()
                if partitions & current:
                    self._restore(partitions & current)

    def _on_partition(self, action: Callable[..., Any], tp: Partition, *args: Any) -> None:
        """Pause, resume or seek ``tp``, unless the group took it away meanwhile (the revocation
        is in the queue; kafka-python raises for a partition no longer assigned)."""
        try:
            action(tp, *args)
        except (KeyError, KafkaError, AssertionError) as exc:
            log.debug("%s of %s[%d] skipped: no longer assigned (%s)", action.__name__, *tp, exc)

    def _forget(self, partitions: set[Partition]) -> None:
        """Partitions given up: nothing of them is delivered, finished or committed any more here
        (their trackers go; a delivery still running finds its tracker stale)."""
        units = {p % self._units for _t, p in partitions}
        for lane in self._lanes.values():
            lane.discard(lambda p: p.tp not in partitions)
            if lane.unit in units:
                lane.tags_due = None
        for tp in partitions:
            self._offsets.pop(tp, None)
            self._committed.pop(tp, None)
            self._restoring.pop(tp, None)
            self._ready.discard(tp)
        self._to_finish = [p for p in self._to_finish if p.tp not in partitions]
        self._parked_paused -= partitions
        log.info("publisher gave up %d partitions (units %s)", len(partitions), sorted(units))

    def _restore(self, partitions: set[Partition]) -> None:
        """Rebuild the ledger of the units of newly assigned partitions, their partitions paused
        meanwhile; once done they are read from the group's committed offset."""
        self._restore_token += 1
        token = self._restore_token
        units = {p % self._units for _t, p in partitions}
        for unit in units:
            self._unit_epochs[unit] = self._unit_epochs.get(unit, 0) + 1
        for lane in self._lanes.values():
            if lane.unit in units:
                lane.settled = False     # the previous owner's operations may still run: wait for them first
        for tp in partitions:
            self._restoring[tp] = token
            self._ready.discard(tp)
            self._offsets.pop(tp, None)
            self._on_partition(self._consumer.pause, tp)
        log.info("publisher assigned %d partitions (units %s); restoring their ledger", len(partitions), sorted(units))

        def restore() -> int:
            ledger = self.deliverer.ledger
            ledger.forget_units(lambda tenant: self._journal.unit_of(tenant), units)
            return self._journal.restore(self.kafka, ledger, sorted(units))

        assignments = {tp: self._ownership.assignment(tp) for tp in partitions}
        self._restores.append((self._restorer.submit(restore), partitions, token, assignments))

    def _restored(self) -> None:
        for entry in list(self._restores):
            future, partitions, token, assignments = entry
            if not future.done():
                continue
            self._restores.remove(entry)
            mine = {tp for tp in partitions if self._restoring.get(tp) == token}   # not revoked or re-assigned since
            try:
                future.result()
            except Exception as exc:  # the broker away: try again
                log.warning("ledger not restored (%s: %s); trying again", type(exc).__name__, exc)
                if mine:
                    self._restore(mine)
                continue
            try:
                committed = {tp: self._consumer.committed(tp) for tp in mine}
            except Exception as exc:  # the broker away: restore again, then ask again
                log.warning("committed offsets not read (%s: %s); trying again", type(exc).__name__, exc)
                if mine:
                    self._restore(mine)
                continue
            # served only if still assigned by the assignment the restore began under (a revocation
            # whose event is still queued, or a newer assignment with a restore of its own)
            mine = self._ownership.grant({tp: assignments[tp] for tp in mine})
            for tp in mine:
                del self._restoring[tp]
                self._on_partition(self._consumer.seek, tp, committed[tp])
                self._ready.add(tp)
                if tp not in self._parked_paused:
                    self._on_partition(self._consumer.resume, tp)
            self._schedule_pending_tags({tp[1] % self._units for tp in mine})

    def _schedule_pending_tags(self, units: set[int]) -> None:
        """Tags left pending by the unit's previous owner (or a crash) are merged without waiting
        for that connection's next event."""
        for connection, tenant in self.deliverer.ledger.connections_with_pending_tags():
            unit = self._journal.unit_of(tenant)
            if unit in units:
                lane = self._lane(connection, unit)
                lane.tags_due = time.monotonic()

    def _lane(self, connection: str, unit: int) -> Lane:
        lane = self._lanes.get(connection)
        if lane is None:
            lane = self._lanes[connection] = Lane(connection, cap=self.settings.lane_cap)
        lane.unit = unit
        return lane
