"""What the publisher keeps of what it reads (a part of :class:`.service.PublisherService`):
parked stats in rounds, lanes' room and the memory budget (events left in Kafka, read again once
there is room), and the parked-stats gauges."""
from __future__ import annotations

import logging
import time

from hostspec.ops import metrics
from hostspec.transport.offsets import OffsetTracker

from .delivery import Inbound

log = logging.getLogger(__package__ + ".service")     # the service's log, as before its split
GAUGES_EVERY_S = 15.0


class Reading:
    """Parked rounds, lane room, the memory budget and gauges; uses the service's state."""

    def _start_round(self) -> None:
        self._round_start = time.time()
        for tp in self._parked_paused:
            if tp not in self._restoring:
                self._on_partition(self._consumer.resume, tp)
        self._parked_paused.clear()

    def _read(self, offsets: OffsetTracker, offset: int, connection: str | None) -> bool:
        """Whether to keep the record at ``offset`` of ``connection``: not when read before, nor
        when its lane has no room (full, or the instance over its memory budget: left in Kafka)."""
        lane = self._lanes.get(connection) if connection is not None else None
        keep = lane is None or not (lane.full or self._refusing)
        if offsets.read(offset, connection, keep=keep):
            return True
        if not keep:
            lane.overflowed = True      # type: ignore[union-attr]
            metrics.PUBLISHER_LEFT_IN_KAFKA.labels("memory_budget" if self._refusing else "lane_cap").inc()
        return False

    def _keep_within_budget(self) -> None:
        """Over the memory budget: the biggest lanes give their newest events back to Kafka; if
        that is not enough (deliveries in flight hold the rest), nothing more is kept and the
        partitions pause until the lanes are back under the low mark."""
        lanes = list(self._lanes.values())
        evicted = 0
        for lane, given_back in self._budget.evict(lanes):
            for p in given_back:
                p.tracker.evict(p.offset, lane.connection)
            evicted += len(given_back)
        if evicted:
            metrics.PUBLISHER_LEFT_IN_KAFKA.labels("memory_budget").inc(evicted)
            log.info("memory budget (%d MB) reached: %d events of the biggest lanes left in Kafka, read again once "
                     "they can be delivered", self._budget.limit // 2**20, evicted)
        held = self._budget.held(lanes)
        metrics.PUBLISHER_HELD_BYTES.set(held)
        if not self._refusing and self._budget.over(held):
            self._refusing = True
            log.warning("memory budget (%d MB) reached by deliveries in flight: reading paused",
                        self._budget.limit // 2**20)
            for tp in self._consumer.assignment():
                self._on_partition(self._consumer.pause, tp)
        elif self._refusing and held <= self._budget.low * self._budget.limit:
            self._refusing = False
            log.info("back under the memory budget: reading again")
            for tp in self._consumer.assignment():
                if tp in self._ready and tp not in self._parked_paused:
                    self._on_partition(self._consumer.resume, tp)

    def _mine(self, item: Inbound) -> bool:
        s = self.settings
        tenant = item.data.get("tenant")
        return (s.connections is None or item.data.get("connection") in s.connections) and \
               (s.tenants is None or tenant in s.tenants) and tenant not in s.except_tenants

    def _reread(self) -> None:
        """Lanes that left events in Kafka and can take them again — room in the lane, no failure
        to wait out, the instance well under its memory budget — read them again."""
        if self._refusing or not self._budget.may_read_again(self._budget.held(self._lanes.values())):
            return
        for lane in self._lanes.values():
            if not lane.overflowed or lane.running or lane.failures or len(lane.queue) > lane.cap // 2:
                continue
            lane.overflowed = False
            for tp, offsets in self._offsets.items():
                start = offsets.rewind_to({lane.connection})
                if start is not None:
                    log.info("connection %s has room again: reading %s[%d] again from %d", lane.connection, *tp,
                             start)
                    self._on_partition(self._consumer.seek, tp, start)

    def _gauges(self, *, force: bool = False) -> None:
        """Parked stats now, per connection (the ledger's count; every ``GAUGES_EVERY_S``)."""
        now = time.monotonic()
        if not force and now - self._gauges_at < GAUGES_EVERY_S:
            return
        self._gauges_at = now
        parked = self.deliverer.ledger.parked_by_connection()
        for connection in self._parked_shown | set(parked):
            metrics.PUBLISHER_PARKED.labels(connection).set(parked.get(connection, 0))
        self._parked_shown = set(parked)
        self.parked_now = sum(parked.values())
