"""What the publisher keeps of what it reads (a part of :class:`.service.PublisherService`): polled
records sorted into lanes, parked stats in rounds, lanes' room and the memory budget (events left
in Kafka, read again once there is room), and the parked-stats gauges."""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.ops import metrics
from hostspec.rejections import raw_rejection
from hostspec.topics import Topics
from hostspec.transport.consumers import InboundMessage
from hostspec.transport.kafka import Partition
from hostspec.transport.offsets import OffsetTracker

from .budget import event_size
from .delivery import SOURCE, Deliverer, Inbound
from .lanes import Pending
from .membership import Membership
from .shared import Shared

log = logging.getLogger(__package__ + ".service")     # the service's log, as before its split
GAUGES_EVERY_S = 15.0
DELIVERABLE = (ev.COURSE_UPSERTED, ev.COURSE_REMOVED, ev.LEARNER_STAT_UPSERTED)


class Reader:
    """Polled records into lanes, parked rounds, lane room, the memory budget and gauges."""

    def __init__(self, deliverer: Deliverer, topics: Topics, shared: Shared, membership: Membership):
        self._deliverer, self._topics, self._shared, self._membership = deliverer, topics, shared, membership
        self.round_start = 0.0
        self._refusing = False                # over the memory budget with nothing left to give back
        self._gauges_at = 0.0
        self._parked_shown: set[str] = set()
        self.parked_now = 0                   # stats parked now (the ledger's count), for the summary

    def take(self, messages: list[InboundMessage]) -> None:
        """Sort polled records into lanes. Only partitions served *before* this poll's records
        are looked at: a restore ending now seeks its partitions to their committed offset, and
        records polled before that seek are read again after it (a loaded machine showed a
        restore ending between the poll and this call)."""
        sh = self._shared
        ready = set(sh.ready)
        stopped: set[Partition] = set()
        now = time.monotonic()
        for msg in messages:
            tp = msg.tp
            if tp in stopped or tp not in ready:
                continue                    # not served yet: read again from the committed offset
            if msg.topic == self._topics.parked and _parked_at(msg.value) >= self.round_start:
                # parked during this round: leave it (and what follows) for the next round
                sh.on_partition(sh.consumer.seek, tp, msg.offset)
                sh.on_partition(sh.consumer.pause, tp)
                sh.parked_paused.add(tp)
                stopped.add(tp)
                continue
            offsets = sh.offsets.setdefault(tp, OffsetTracker(msg.offset))
            # the connection its key names decides whether it is kept, before any parsing: a
            # record a full lane leaves in Kafka costs no JSON (the worker keys every event
            # tenant/connection/…; an event saying otherwise is dead-lettered)
            connection = _key_connection(msg.key)
            item = dead = None
            if connection is None:
                item, dead = _parse(msg)
                connection = item.data.get("connection") if item is not None else None
            if not self.read(offsets, msg.offset, connection):
                continue
            if item is None and dead is None:
                item, dead = _parse(msg)
                if item is not None and item.data.get("connection") != connection:
                    item, dead = None, _malformed(msg, {"key": [f"names connection {connection!r}, the event "
                                                                "another one"]})
            pending = Pending(tp, msg.offset, item, seen=now, tracker=offsets, size=event_size(msg.value))
            if item is not None and not self._mine(item):
                sh.to_finish.append(pending)
                sh.count("skipped_other_publisher")
                continue
            if item is None:
                if dead is not None:
                    sh.outbox.append((self._topics.dead_letter, None, dead.key, dead.to_json().encode("utf-8")))
                    sh.count("malformed")
                sh.to_finish.append(pending)
                continue
            sh.lane(connection, tp[1] % sh.units).add(pending)
        self.keep_within_budget()
        self._membership.restored()

    def start_round(self) -> None:
        sh = self._shared
        self.round_start = time.time()
        for tp in sh.parked_paused:
            if tp not in sh.restoring:
                sh.on_partition(sh.consumer.resume, tp)   # type: ignore[union-attr]
        sh.parked_paused.clear()

    def read(self, offsets: OffsetTracker, offset: int, connection: str | None) -> bool:
        """Whether to keep the record at ``offset`` of ``connection``: not when read before, nor
        when its lane has no room (full, or the instance over its memory budget: left in Kafka)."""
        lane = self._shared.lanes.get(connection) if connection is not None else None
        keep = lane is None or not (lane.full or self._refusing)
        if offsets.read(offset, connection, keep=keep):
            return True
        if not keep:
            lane.overflowed = True      # type: ignore[union-attr]
            metrics.PUBLISHER_LEFT_IN_KAFKA.labels("memory_budget" if self._refusing else "lane_cap").inc()
        return False

    def keep_within_budget(self) -> None:
        """Over the memory budget: the biggest lanes give their newest events back to Kafka; if
        that is not enough (deliveries in flight hold the rest), nothing more is kept and the
        partitions pause until the lanes are back under the low mark."""
        sh = self._shared
        lanes = list(sh.lanes.values())
        evicted = 0
        for lane, given_back in sh.budget.evict(lanes):
            for p in given_back:
                p.tracker.evict(p.offset, lane.connection)
            evicted += len(given_back)
        if evicted:
            metrics.PUBLISHER_LEFT_IN_KAFKA.labels("memory_budget").inc(evicted)
            log.info("memory budget (%d MB) reached: %d events of the biggest lanes left in Kafka, read again once "
                     "they can be delivered", sh.budget.limit // 2**20, evicted)
        held = sh.budget.held(lanes)
        metrics.PUBLISHER_HELD_BYTES.set(held)
        if not self._refusing and sh.budget.over(held):
            self._refusing = True
            log.warning("memory budget (%d MB) reached by deliveries in flight: reading paused",
                        sh.budget.limit // 2**20)
            for tp in sh.consumer.assignment():
                sh.on_partition(sh.consumer.pause, tp)
        elif self._refusing and held <= sh.budget.low * sh.budget.limit:
            self._refusing = False
            log.info("back under the memory budget: reading again")
            for tp in sh.consumer.assignment():
                if tp in sh.ready and tp not in sh.parked_paused:
                    sh.on_partition(sh.consumer.resume, tp)

    def _mine(self, item: Inbound) -> bool:
        s = self._shared.settings
        tenant = item.data.get("tenant")
        return (s.connections is None or item.data.get("connection") in s.connections) and \
               (s.tenants is None or tenant in s.tenants) and tenant not in s.except_tenants

    def reread(self) -> None:
        """Lanes that left events in Kafka and can take them again — room in the lane, no failure
        to wait out, the instance well under its memory budget — read them again."""
        sh = self._shared
        if self._refusing or not sh.budget.may_read_again(sh.budget.held(sh.lanes.values())):
            return
        for lane in sh.lanes.values():
            if not lane.overflowed or lane.running or lane.failures or len(lane.queue) > lane.cap // 2:
                continue
            lane.overflowed = False
            for tp, offsets in sh.offsets.items():
                start = offsets.rewind_to({lane.connection})
                if start is not None:
                    log.info("connection %s has room again: reading %s[%d] again from %d", lane.connection, *tp,
                             start)
                    sh.on_partition(sh.consumer.seek, tp, start)

    def gauges(self, *, force: bool = False) -> None:
        """Parked stats now, per connection (the ledger's count; every ``GAUGES_EVERY_S``)."""
        now = time.monotonic()
        if not force and now - self._gauges_at < GAUGES_EVERY_S:
            return
        self._gauges_at = now
        parked = self._deliverer.ledger.parked_by_connection()
        for connection in self._parked_shown | set(parked):
            metrics.PUBLISHER_PARKED.labels(connection).set(parked.get(connection, 0))
        self._parked_shown = set(parked)
        self.parked_now = sum(parked.values())
        metrics.PUBLISHER_PARKED_ALL.set(self.parked_now)


def _parse(msg: InboundMessage) -> tuple[Inbound | None, ev.Event | None]:
    """(the event to deliver, None) or (None, a dead letter) or (None, None) for types not delivered."""
    origin = (msg.topic, msg.partition, msg.offset)
    try:
        event = ev.parse_event(msg.value or b"")
        parked = None
        if event.type == ev.STAT_PARKED:
            parked = event.data
            event = ev.parse_event(parked["event"], ev.LEARNER_STAT_UPSERTED)
    except ValidationError as exc:
        return None, _malformed(msg, exc.messages)
    if event.type in DELIVERABLE:
        return Inbound(event, origin, parked), None
    return None, None


def _key_connection(key: bytes | None) -> str | None:
    """The connection a record's key names (``tenant/connection/provider/entity``), if any."""
    parts = (key or b"").split(b"/", 3)
    if len(parts) < 4 or parts[1] in (b"", b"-"):
        return None
    try:
        return parts[1].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _parked_at(value: bytes | None) -> float:
    try:
        return datetime.fromisoformat(json.loads(value or b"")["data"]["parked_at"]).timestamp()
    except (ValueError, KeyError, TypeError):
        return 0.0  # unreadable: let the batch dead-letter it


def _malformed(msg: InboundMessage, errors: Any) -> ev.Event:
    key = (msg.key or b"").decode("utf-8", "replace") or f"{msg.topic}/{msg.partition}"
    return raw_rejection(stage="delivery", topic=msg.topic, partition=msg.partition, offset=msg.offset,
                         value=msg.value, reason="malformed_event", errors=errors, now=datetime.now(timezone.utc),
                         key=key, source=SOURCE, id_content=f"{msg.topic}/{msg.partition}/{msg.offset}")
