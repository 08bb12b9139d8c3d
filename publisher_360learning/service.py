"""The publisher's Kafka loop: consume courses, learner stats and parked stats; deliver each
connection's events in a lane of its own; acknowledge an event only once its outcome is known.

* **One company, one instance.** The group uses the co-partitioned assignor
  (:mod:`hostspec.transport.assignor`) and the host partitions these topics by tenant
  (:mod:`hostspec.transport.routing`): every event of a company reaches one instance, so its
  360Learning limits (reads, writes, bulk slots) hold across the group, and its live and parked
  stats meet in one place. ``read_committed``: only events of committed worker transactions.
* **Lanes** (:mod:`.lanes`). The poll loop sorts events into one lane per connection; up to
  ``concurrency`` lanes deliver at once, each in its own thread, while the loop keeps polling. A
  lane's failure (360Learning down, throttling beyond the retries, the company's bulk API
  disabled) puts its events back and makes *that lane* wait (1 s … 60 s; a configuration problem
  every minute, logged as an error); no other lane waits. Offsets are committed up to the lowest
  event not finished, so a failing company's events are never acknowledged early and a crash
  re-reads them. A lane holds at most ``lane_cap`` events; beyond that its events are read again
  from Kafka once it has room.
* **The ledger is shared through Kafka** (:mod:`.journal`): an instance given a unit rebuilds its
  ledger from the journal before delivering it; the journal is flushed before the offsets of the
  events it accounts for are committed.
* **Revocation waits** (bounded by ``revoke_wait_s``) for the lanes delivering events of the
  revoked partitions, and a new owner's first delivery of a company waits until the company has
  no bulk operation unfinished in 360Learning: a previous owner's import (even one whose process
  died inside it) never lands after newer content.
* Parked stats are retried in rounds: at start and every ``retry_interval_s``, the parked topic
  is read up to the records parked during the current round, then paused until the next.
* ``connections`` / ``tenants``: serve only these (a per-company publisher); ``except_tenants``:
  all but these (the shared group beside per-company ones). Other events are skipped, not
  dead-lettered. The targets file is re-read when it changes.
* **Acknowledgement.** A delivery's dead letters, parked stats and ledger journal records are sent
  by the poll loop and flushed before the offsets of its events are finished and committed; a
  failed flush keeps them all to be sent again (compacted facts and idempotent events: sending
  twice is harmless, not sending is not).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from kafka.errors import KafkaError
from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.ops import metrics
from hostspec.credentials import CredentialKey
from hostspec.runtime.dead_letters import raw_rejection
from hostspec.errors import DeliveryError, TransportError
from hostspec.topics import Topics, ledger_topic
from hostspec.transport.assignor import CoPartitionedAssignor, check_copartitioned
from hostspec.transport.cloudevents import STRUCTURED
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.kafka import (
    InboundMessage,
    KafkaSink,
    Partition,
    RequestConsumer,
    ensure_topics,
    make_producer,
)
from hostspec.transport.routing import Router

from hostspec.transport.offsets import OffsetTracker

from . import contract
from .budget import DEFAULT_BUDGET, MemoryBudget, event_size
from .delivery import SOURCE, Deliverer, Inbound, Outcome
from .errors import TargetConfigError, TransientError
from .journal import LedgerJournal, journal_spec
from .lanes import BACKOFF_S, Lane, Pending
from .ownership import Fence, LaneRevoked, Ownership
from .settings import Target

log = logging.getLogger(__name__)
WRITE_WAIT_S = 90.0     # a revocation waits this long at most for a 360Learning write in flight (one HTTP call)
GAUGES_EVERY_S = 15.0
DELIVERABLE = (ev.COURSE_UPSERTED, ev.COURSE_REMOVED, ev.LEARNER_STAT_UPSERTED)


@dataclass(frozen=True)
class ServiceSettings:
    group_id: str = "publisher-360learning"
    batch_size: int = 10_000                # events per delivery of one lane
    batch_seconds: float = 2.0              # a lane delivers this long after its oldest event at the latest
    retry_interval_s: float = 3600.0
    max_poll_interval_ms: int = 300_000     # the loop never waits on 360Learning: deliveries run in lanes
    max_batch_failures: int = 5             # unexpected errors in a row before a lane's batch is dead-lettered
    session_timeout_ms: int = 10_000
    instance: str | None = None             # a stable name: static membership, a restart resumes at once
    concurrency: int = 4                    # lanes delivering at once
    lane_cap: int = 50_000                  # events one lane keeps in memory
    memory_budget: int = DEFAULT_BUDGET     # bytes of events all lanes keep in memory together
    company_lanes: int = contract.BULK_CONCURRENCY   # lanes of one company delivering at once (<= its bulk slots)
    revoke_wait_s: float = 120.0
    commit_interval_s: float = 1.0
    connections: frozenset[str] | None = None   # serve only these connections
    tenants: frozenset[str] | None = None       # serve only these tenants
    except_tenants: frozenset[str] = frozenset()   # serve every tenant but these (they have their own)
    ledger_topic: str | None = None             # default: <topic prefix><group id>.ledger


class PublisherService:
    def __init__(self, deliverer: Deliverer, kafka: KafkaConfig, topics: Topics,
                 settings: ServiceSettings = ServiceSettings(), *,
                 targets: Callable[[], dict[str, Target]] | None = None):
        """:param targets: the current targets (re-read when they change), for the deliverer."""
        self.deliverer, self.kafka, self.topics, self.settings = deliverer, kafka, topics, settings
        self._targets = targets
        self._stop = threading.Event()
        self._events: queue.Queue = queue.Queue()        # membership changes, from kafka-python's IO thread
        self._lanes: dict[str, Lane] = {}
        self._offsets: dict[Partition, OffsetTracker] = {}
        self._running: dict[Future, tuple[Lane, list[Pending]]] = {}
        self._busy: dict[Partition, int] = {}            # lane batches in flight per partition
        self._busy_lock = threading.Lock()
        self._ready: set[Partition] = set()              # assigned, ledger restored, served
        self._restoring: dict[Partition, int] = {}        # partition -> token of the restore it waits for
        self._restores: list[tuple[Future, set[Partition], int, dict[Partition, int]]] = []
        self._unit_epochs: dict[int, int] = {}            # unit -> restores begun: a delivery settles for one
        self._restore_token = 0
        self._outbox: list[tuple[str, int | None, str, bytes | None]] = []   # (topic, partition, key, value)
        self._event_topics = {self.topics.dead_letter, self.topics.parked}
        self._to_finish: list[Pending] = []               # finished once the outbox is acknowledged
        self._company_wait: dict[CredentialKey, float] = {}   # a company's lanes wait together
        self._parked_paused: set[Partition] = set()
        self._round_start = 0.0
        self._last_commit = 0.0
        self._committed: dict[Partition, int] = {}
        self.batches = 0
        self.totals: dict[str, int] = {}
        self._last_poll = 0.0
        self._consumer: RequestConsumer | None = None
        self._budget = MemoryBudget(settings.memory_budget)
        # the fence's lease: half the session timeout without a heartbeat answered, no write starts
        self._ownership = Ownership(lambda: self._consumer.group_metadata(),   # type: ignore[union-attr]
                                    silence=lambda: self._consumer.heartbeat_silence(),   # type: ignore[union-attr]
                                    lease_s=settings.session_timeout_ms / 2000)
        self._assignor = CoPartitionedAssignor()
        self._company_lanes = max(1, min(settings.company_lanes, contract.BULK_CONCURRENCY))
        self._dispatch_from = 0               # where the next dispatch starts looking (round robin)
        self._refusing = False                # over the memory budget with nothing left to give back
        self._gauges_at = 0.0
        self._parked_shown: set[str] = set()
        self.parked_now = 0                   # stats parked now (the ledger's count), for the summary

    def stop(self) -> None:
        self._stop.set()

    def readiness(self) -> dict[str, bool]:
        """``/ready``: a group member that polled lately, whose assigned partitions are all served."""
        consumer = self._consumer
        polling = consumer is not None and not self._stop.is_set() and time.monotonic() - self._last_poll < 30
        served = polling and set(consumer.assignment()) <= set(self._ready)   # type: ignore[union-attr]
        return {"kafka": polling, "partitions": bool(served)}

    # -- the loop ---------------------------------------------------------------------------------------
    def run(self, *, max_batches: int | None = None) -> None:
        s = self.settings
        consumed = [self.topics.courses, self.topics.learner_stats, self.topics.parked]
        specs = [spec for spec in topic_specs(self.topics) if spec.name in consumed]
        units = check_copartitioned({spec.name: spec.partitions for spec in specs})
        ensure_topics(self.kafka, topic_specs(self.topics) + [journal_spec(self._ledger_topic(), units)])
        producer = make_producer(self.kafka)
        self._sink = KafkaSink(producer, self.topics.for_type)
        self._route = Router(producer.partitions_for)
        self._consumer = RequestConsumer(
            self.kafka, consumed, s.group_id, on_assigned=self._assigned, on_revoked=self._revoked, on_lost=self._lost,
            max_poll_records=2000, max_poll_interval_ms=s.max_poll_interval_ms,
            session_timeout_ms=s.session_timeout_ms, group_instance_id=s.instance,
            assignors=[self._assignor], also_known=[self._ledger_topic()],
            fetch_bytes=self._budget.fetch_bytes())
        counts = {t: self._consumer.partition_counts[t] for t in consumed}
        self._units = check_copartitioned(counts)
        self._journal = LedgerJournal(self._ledger_topic(), self._units)
        if self._consumer.partition_counts.get(self._ledger_topic()) != self._units:
            raise TransportError(f"{self._ledger_topic()} has {self._consumer.partition_counts.get(self._ledger_topic())} "
                                 f"partitions, the group has {self._units} units: recreate it with {self._units}")
        self.deliverer.ledger.journal = self._journal
        self._pool = ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix="lane")
        self._restorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-restore")
        log.info("publisher consuming %s as group %s: %d units, %d lanes at once%s", ", ".join(consumed),
                 s.group_id, self._units, s.concurrency, self._filter_text())
        probe = metrics.LagProbe(self._consumer, s.group_id)
        try:
            self._start_round()
            while not self._stop.is_set() and (max_batches is None or self.batches < max_batches):
                probe()
                self._gauges()
                self._membership()
                if self._targets is not None:
                    self._refresh_targets()
                if time.time() - self._round_start >= s.retry_interval_s:
                    self._start_round()
                messages = self._consumer.poll(timeout_ms=100 if self._running else 200)
                self._last_poll = time.monotonic()
                self._membership()      # before taking: the poll may have completed a rebalance
                self._take(messages)
                self._finish_done()
                self._dispatch()
                self._commit()
            self._drain()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._restorer.shutdown(wait=False, cancel_futures=True)
            self._consumer.close()
            producer.close(timeout=10)
            self.deliverer.close()

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

    def _drain(self) -> None:
        """Stopping: let running deliveries end, account for them, commit what is finished."""
        deadline = time.monotonic() + 60
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
            self._finish_done()
        self._commit(force=True)
        self._gauges(force=True)
        if self._outbox:
            log.warning("stopping with %d records not acknowledged by Kafka: their events are read again "
                        "at the next start", len(self._outbox))

    def _ledger_topic(self) -> str:
        return self.settings.ledger_topic or ledger_topic(self.topics, self.settings.group_id)

    def _filter_text(self) -> str:
        s = self.settings
        parts = [f"connections {sorted(s.connections)}" if s.connections else "",
                 f"tenants {sorted(s.tenants)}" if s.tenants else "",
                 f"not tenants {sorted(s.except_tenants)}" if s.except_tenants else ""]
        return "; only " + " and ".join(p for p in parts if p) if any(parts) else ""

    def _refresh_targets(self) -> None:
        targets = self._targets()
        if targets is not self.deliverer.targets:
            self.deliverer.set_targets(targets)

    # -- membership ---------------------------------------------------------------------------------------
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

    # -- reading ----------------------------------------------------------------------------------------
    def _start_round(self) -> None:
        self._round_start = time.time()
        for tp in self._parked_paused:
            if tp not in self._restoring:
                self._on_partition(self._consumer.resume, tp)
        self._parked_paused.clear()

    def _take(self, messages: list[InboundMessage]) -> None:
        """Sort polled records into lanes. Only partitions served *before* this poll's records
        are looked at: a restore ending now seeks its partitions to their committed offset, and
        records polled before that seek are read again after it (a loaded machine showed a
        restore ending between the poll and this call)."""
        ready = set(self._ready)
        stopped: set[Partition] = set()
        now = time.monotonic()
        for msg in messages:
            tp = msg.tp
            if tp in stopped or tp not in ready:
                continue                    # not served yet: read again from the committed offset
            if msg.topic == self.topics.parked and _parked_at(msg.value) >= self._round_start:
                # parked during this round: leave it (and what follows) for the next round
                self._on_partition(self._consumer.seek, tp, msg.offset)
                self._on_partition(self._consumer.pause, tp)
                self._parked_paused.add(tp)
                stopped.add(tp)
                continue
            offsets = self._offsets.setdefault(tp, OffsetTracker(msg.offset))
            # the connection its key names decides whether it is kept, before any parsing: a
            # record a full lane leaves in Kafka costs no JSON (the worker keys every event
            # tenant/connection/…; an event saying otherwise is dead-lettered)
            connection = _key_connection(msg.key)
            item = dead = None
            if connection is None:
                item, dead = _parse(msg)
                connection = item.data.get("connection") if item is not None else None
            if not self._read(offsets, msg.offset, connection):
                continue
            if item is None and dead is None:
                item, dead = _parse(msg)
                if item is not None and item.data.get("connection") != connection:
                    item, dead = None, _malformed(msg, {"key": [f"names connection {connection!r}, the event "
                                                                "another one"]})
            pending = Pending(tp, msg.offset, item, seen=now, tracker=offsets, size=event_size(msg.value))
            if item is not None and not self._mine(item):
                self._to_finish.append(pending)
                self._count("skipped_other_publisher")
                continue
            if item is None:
                if dead is not None:
                    self._outbox.append((self.topics.dead_letter, None, dead.key, dead.to_json().encode("utf-8")))
                    self._count("malformed")
                self._to_finish.append(pending)
                continue
            self._lane(connection, tp[1] % self._units).add(pending)
        self._keep_within_budget()
        self._restored()

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

    # -- delivering -------------------------------------------------------------------------------------
    def _company(self, connection: str) -> CredentialKey | None:
        """The credential the connection delivers with (host, client id, secret's digest): the
        connections holding it wait together; another secret naming the same client id is
        another credential and never makes them wait."""
        target = self.deliverer.targets.get(connection)
        if target is None:
            return None
        try:
            return self.deliverer.credential(target)
        except TargetConfigError:
            return None

    def _dispatch(self) -> None:
        """Start the lanes that are due, round robin, while threads are free; one company's lanes
        take at most ``company_lanes`` of them (its bulk slots), so the others always get theirs."""
        s = self.settings
        now = time.monotonic()
        ready_units = {p % self._units for _t, p in self._ready}
        if self._company_wait:     # waits over are forgotten
            self._company_wait = {k: until for k, until in self._company_wait.items() if until > now}
        companies = Counter(self._company(lane.connection) for lane, _batch, _epoch in self._running.values())
        lanes = list(self._lanes.values())
        first = self._dispatch_from % len(lanes) if lanes else 0
        for i, lane in enumerate(lanes[first:] + lanes[:first]):
            if len(self._running) >= s.concurrency:
                return
            metrics.PUBLISHER_LANE_BACKLOG.labels(lane.connection).set(len(lane.queue))
            if not lane.due(now, batch_size=s.batch_size, batch_seconds=s.batch_seconds):
                continue
            company = self._company(lane.connection)
            if now < self._company_wait.get(company, 0.0):
                continue                 # another connection of this company just failed: wait with it
            if company is not None and companies[company] >= self._company_lanes:
                continue                 # the company's bulk slots are all taken: other companies first
            if not lane.queue and lane.unit not in ready_units:
                lane.tags_due = None     # tags of a unit given up: its new owner merges them
                continue
            batch = lane.take(s.batch_size, self._budget.batch_bytes(s.concurrency))
            lane.tags_due = None         # a delivery runs the tags step too
            partitions = {p.tp for p in batch} or {tp for tp in self._ready if tp[1] % self._units == lane.unit}
            fence = self._ownership.fence(partitions)
            with self._busy_lock:
                for p in batch:
                    self._busy[p.tp] = self._busy.get(p.tp, 0) + 1
            future = self._pool.submit(self._deliver, lane.connection, batch, not lane.settled, fence)
            self._running[future] = (lane, batch, self._unit_epochs.get(lane.unit, 0))
            companies[company] += 1
            self._dispatch_from = first + i + 1

    def _deliver(self, connection: str, batch: list[Pending], settle: bool,
                 fence: Fence) -> tuple[Outcome | None, BaseException | None, list]:
        """In a lane's thread: (outcome, None, journal records) or (None, the error, journal records).
        The journal records are returned either way: what the ledger learnt must reach Kafka.
        Marks its partitions idle itself when done: a revocation waits on that while the poll
        loop may be blocked in the rebalance."""
        started = time.monotonic()
        with self._journal.capturing() as journal:
            try:
                return self.deliverer.deliver_connection(connection, [p.item for p in batch], settle=settle,
                                                         fence=fence), None, journal
            except Exception as exc:
                return None, exc, journal
            finally:
                metrics.PUBLISHER_BATCH_SECONDS.observe(time.monotonic() - started)
                with self._busy_lock:
                    for p in batch:
                        self._busy[p.tp] -= 1

    def _finish_done(self) -> None:
        for future in [f for f in self._running if f.done()]:
            lane, batch, epoch = self._running.pop(future)
            outcome, error, journal = future.result()
            self._outbox.extend(journal)
            if error is None:
                self._lane_succeeded(lane, batch, outcome, epoch)
            elif isinstance(error, LaneRevoked):     # its partitions were given up: their new owner delivers
                lane.requeue([p for p in batch if self._current(p)])    # (those still ours: tried again)
                log.info("connection %s: delivery of %d events stopped: %s", lane.connection, len(batch), error)
            elif isinstance(error, TransientError):
                self._lane_failed(lane, batch, error, config=error.code == contract.BULK_DISABLED)
            else:   # a bug, or something no one foresaw: retried, then dead-lettered
                lane.bugs += 1
                if lane.bugs < self.settings.max_batch_failures:
                    log.error("connection %s: delivery failed unexpectedly (%d in a row)", lane.connection, lane.bugs,
                              exc_info=error)
                    self._lane_failed(lane, batch, error)
                    continue
                log.error("connection %s: delivery failed unexpectedly %d times in a row; dead-lettering its %d "
                          "events", lane.connection, lane.bugs, len(batch), exc_info=error)
                outcome = Outcome()
                with self._journal.capturing() as journal:
                    for p in batch:
                        outcome.dead.append(self.deliverer.rejected(p.item, "publisher_error",
                                                                    f"{lane.bugs} attempts failed; see the log"))
                self._outbox.extend(journal)
                outcome.counts["publisher_error"] = len(batch)
                self._lane_succeeded(lane, batch, outcome, epoch)

    def _current(self, p: Pending) -> bool:
        return self._offsets.get(p.tp) is p.tracker and p.tp in self._ready

    def _lane_failed(self, lane: Lane, batch: list[Pending], exc: BaseException, *, config: bool = False) -> None:
        bugs = lane.bugs
        wait = lane.failed([p for p in batch if self._current(p)], f"{type(exc).__name__}: {exc}", config=config)
        lane.bugs = bugs
        company = self._company(lane.connection)
        if company is not None and isinstance(exc, TransientError):
            self._company_wait[company] = max(self._company_wait.get(company, 0.0), lane.not_before)
        metrics.PUBLISHER_LANE_WAITS.labels(lane.connection, lane.state).inc()
        if config:
            log.error("connection %s: 360Learning refuses bulk operations for this company (%s): an administrator "
                      "must enable its bulk API. %d events wait; asking again in %.0fs", lane.connection, exc,
                      len(lane.queue), wait)
        else:
            log.warning("connection %s: %d events not delivered (%s); this connection tries again in %.0fs, "
                        "the others go on", lane.connection, len(batch), exc, wait)

    def _lane_succeeded(self, lane: Lane, batch: list[Pending], outcome: Outcome, epoch: int) -> None:
        for event in [*outcome.dead, *outcome.parked]:
            topic = self.topics.for_type(event.type)
            self._outbox.append((topic, self._route(topic, event), event.key, event.to_bytes()))
        self._to_finish.extend(p for p in batch if self._current(p))
        lane.succeeded()
        if epoch == self._unit_epochs.get(lane.unit, 0):
            lane.settled = True        # settled under the unit's current ownership, not a stale one's
        if outcome.tags_pending:
            lane.tags_due = time.monotonic() + BACKOFF_S[3]
        self.batches += 1
        for k, v in outcome.counts.items():
            self.totals[k] = self.totals.get(k, 0) + v
        if batch:
            log.info("connection %s: %d events: %s", lane.connection, len(batch),
                     ", ".join(f"{k}={v}" for k, v in sorted(outcome.counts.items())) or "nothing to deliver")

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

    def _flush_outbox(self) -> bool:
        """Send what deliveries produced (dead letters, parked stats, journal records) and wait for
        the broker; then their events are finished. False (everything kept) when it failed."""
        self._outbox.extend(self._journal.drain())
        if self._outbox:
            try:
                for topic, partition, key, value in self._outbox:
                    headers = STRUCTURED if topic in self._event_topics else None   # journal records: none
                    self._sink.send_raw(topic, key, value, partition=partition, headers=headers)
                self._sink.flush(timeout_s=60)
            except DeliveryError as exc:
                log.warning("%d records not acknowledged by Kafka (%s); sent again before the next commit",
                            len(self._outbox), exc)
                return False
            self._outbox = []
        for p in self._to_finish:
            p.tracker.finished(p.offset)
        self._to_finish = []
        return True

    def _commit(self, *, force: bool = False) -> None:
        now = time.monotonic()
        self._reread()
        if not force and now - self._last_commit < self.settings.commit_interval_s:
            return
        self._last_commit = now
        if not self._flush_outbox():
            return
        positions = {tp: o.commit_position() for tp, o in self._offsets.items() if tp in self._ready}
        changed = {tp: n for tp, n in positions.items() if self._committed.get(tp) != n}
        if changed and self._consumer.commit_many(changed):
            self._committed.update(changed)

    def _count(self, what: str) -> None:
        self.totals[what] = self.totals.get(what, 0) + 1


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
