"""The publisher's group membership (a part of :class:`.service.PublisherService`): partitions
assigned (their ledger restored from the journal before they are served), revoked or lost (fenced
first: no write of a delivery on them starts any more; then waited for, bounded by
``revoke_wait_s``), and the lanes of the units served."""
from __future__ import annotations

import logging
import queue
import time
from concurrent.futures import Future

from hostspec.transport.assignor import CoPartitionedAssignor
from hostspec.transport.config import KafkaConfig
from hostspec.transport.kafka import Partition

from .delivery import Deliverer
from .shared import Shared

log = logging.getLogger(__package__ + ".service")     # the service's log, as before its split
WRITE_WAIT_S = 90.0     # a revocation waits this long at most for a 360Learning write in flight (one HTTP call)


class Membership:
    """Assignment, revocation and ledger restores. Kafka's callbacks (:meth:`assigned`,
    :meth:`revoked`, :meth:`lost`) queue the change; the poll loop applies it (:meth:`catch_up`)."""

    def __init__(self, deliverer: Deliverer, kafka: KafkaConfig, shared: Shared):
        self._deliverer, self._kafka, self._shared = deliverer, kafka, shared
        self._events: queue.Queue = queue.Queue()        # membership changes, from kafka-python's IO thread
        self.assignor = CoPartitionedAssignor()
        self.restores: list[tuple[Future, set[Partition], int, dict[Partition, int]]] = []
        self._restore_token = 0

    def assigned(self, partitions: set[Partition]) -> None:     # kafka-python's IO thread
        self._shared.ownership.assigned(partitions)   # type: ignore[union-attr]
        self._events.put(("assigned", partitions))

    def lost(self, partitions: set[Partition]):                  # kafka-python's IO thread
        """Taken away while this instance was out of its group: not claimed at the next join."""
        self.assignor.forget(partitions)
        return self.revoked(partitions)

    def revoked(self, partitions: set[Partition]):               # kafka-python's IO thread
        """Fence first (no write of a delivery on these partitions may start from now on), then
        wait for the writes in flight, and for the deliveries themselves up to ``revoke_wait_s``."""
        sh, settings = self._shared, self._shared.settings
        ownership = sh.ownership
        assert ownership is not None
        ownership.revoke(partitions)
        self._events.put(("revoked", partitions))
        started = time.monotonic()
        deadline = started + settings.revoke_wait_s
        writes_deadline = started + max(settings.revoke_wait_s, WRITE_WAIT_S)

        def barrier() -> bool:
            now = time.monotonic()
            if ownership.writes_in_flight(partitions):
                if now < writes_deadline:
                    return False
                log.error("revocation: a write to 360Learning on %s still in flight after %.0fs; giving the "
                          "partitions up anyway (the new owner waits for the operations it finds unfinished)",
                          sorted(partitions), now - started)
                return True
            with sh.busy_lock:
                busy = [tp for tp in partitions if sh.busy.get(tp)]
            if busy and now >= deadline:
                log.warning("revocation: deliveries on %s still running after %.0fs; leaving them behind (fenced: "
                            "they write nothing more to 360Learning)", sorted(busy), settings.revoke_wait_s)
                return True
            return not busy
        return barrier

    def catch_up(self) -> None:
        """Apply the membership changes Kafka's callbacks queued."""
        while True:
            try:
                what, partitions = self._events.get_nowait()
            except queue.Empty:
                return
            if what == "revoked":
                self.forget(partitions)
            else:   # the assignment may have changed again since the callback: take what is still ours
                current = self._shared.consumer.assignment()   # type: ignore[union-attr]
                if partitions & current:
                    self.restore(partitions & current)

    def forget(self, partitions: set[Partition]) -> None:
        """Partitions given up: nothing of them is delivered, finished or committed any more here
        (their trackers go; a delivery still running finds its tracker stale)."""
        sh = self._shared
        units = {p % sh.units for _t, p in partitions}
        for lane in sh.lanes.values():
            lane.discard(lambda p: p.tp not in partitions)
            if lane.unit in units:
                lane.tags_due = None
        for tp in partitions:
            sh.offsets.pop(tp, None)
            sh.committed.pop(tp, None)
            sh.restoring.pop(tp, None)
            sh.ready.discard(tp)
        sh.to_finish = [p for p in sh.to_finish if p.tp not in partitions]
        sh.parked_paused -= partitions
        log.info("publisher gave up %d partitions (units %s)", len(partitions), sorted(units))

    def restore(self, partitions: set[Partition]) -> None:
        """Rebuild the ledger of the units of newly assigned partitions, their partitions paused
        meanwhile; once done they are read from the group's committed offset."""
        sh = self._shared
        self._restore_token += 1
        token = self._restore_token
        units = {p % sh.units for _t, p in partitions}
        for unit in units:
            sh.unit_epochs[unit] = sh.unit_epochs.get(unit, 0) + 1
        for lane in sh.lanes.values():
            if lane.unit in units:
                lane.settled = False     # the previous owner's operations may still run: wait for them first
        for tp in partitions:
            sh.restoring[tp] = token
            sh.ready.discard(tp)
            sh.offsets.pop(tp, None)
            sh.on_partition(sh.consumer.pause, tp)   # type: ignore[union-attr]
        log.info("publisher assigned %d partitions (units %s); restoring their ledger", len(partitions), sorted(units))

        def restore() -> int:
            ledger = self._deliverer.ledger
            ledger.forget_units(lambda tenant: sh.journal.unit_of(tenant), units)   # type: ignore[union-attr]
            return sh.journal.restore(self._kafka, ledger, sorted(units))   # type: ignore[union-attr]

        assignments = {tp: sh.ownership.assignment(tp) for tp in partitions}   # type: ignore[union-attr]
        self.restores.append((sh.restorer.submit(restore), partitions, token, assignments))   # type: ignore[union-attr]

    def restored(self) -> None:
        """Partitions whose ledger is restored are served, from the group's committed offset."""
        sh = self._shared
        for entry in list(self.restores):
            future, partitions, token, assignments = entry
            if not future.done():
                continue
            self.restores.remove(entry)
            mine = {tp for tp in partitions if sh.restoring.get(tp) == token}   # not revoked or re-assigned since
            try:
                future.result()
            except Exception as exc:  # the broker away: try again
                log.warning("ledger not restored (%s: %s); trying again", type(exc).__name__, exc)
                if mine:
                    self.restore(mine)
                continue
            try:
                committed = {tp: sh.consumer.committed(tp) for tp in mine}   # type: ignore[union-attr]
            except Exception as exc:  # the broker away: restore again, then ask again
                log.warning("committed offsets not read (%s: %s); trying again", type(exc).__name__, exc)
                if mine:
                    self.restore(mine)
                continue
            # served only if still assigned by the assignment the restore began under (a revocation
            # whose event is still queued, or a newer assignment with a restore of its own)
            mine = sh.ownership.grant({tp: assignments[tp] for tp in mine})   # type: ignore[union-attr]
            for tp in mine:
                del sh.restoring[tp]
                sh.on_partition(sh.consumer.seek, tp, committed[tp])   # type: ignore[union-attr]
                sh.ready.add(tp)
                if tp not in sh.parked_paused:
                    sh.on_partition(sh.consumer.resume, tp)   # type: ignore[union-attr]
            self._schedule_pending_tags({tp[1] % sh.units for tp in mine})

    def _schedule_pending_tags(self, units: set[int]) -> None:
        """Tags left pending by the unit's previous owner (or a crash) are merged without waiting
        for that connection's next event."""
        for connection, tenant in self._deliverer.ledger.connections_with_pending_tags():
            unit = self._shared.journal.unit_of(tenant)   # type: ignore[union-attr]
            if unit in units:
                lane = self._shared.lane(connection, unit)
                lane.tags_due = time.monotonic()
