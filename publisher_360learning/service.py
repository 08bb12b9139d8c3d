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
  revoked partitions, so the next owner does not send newer content while this one still sends
  older content.
* Parked stats are retried in rounds: at start and every ``retry_interval_s``, the parked topic
  is read up to the records parked during the current round, then paused until the next.
* ``connections`` / ``tenants``: serve only these (a per-company publisher); other events are
  skipped, not dead-lettered. The targets file is re-read when it changes.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec import metrics
from hostspec.dead_letters import raw_rejection
from hostspec.errors import DeliveryError, TransportError
from hostspec.topics import Topics
from hostspec.transport.assignor import CoPartitionedAssignor, check_copartitioned
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.kafka import (
    InboundMessage,
    KafkaSink,
    Partition,
    RequestConsumer,
    ensure_topics,
    make_producer,
)

from . import contract
from .delivery import SOURCE, Deliverer, Inbound, Outcome
from .errors import TransientError
from .journal import LedgerJournal, journal_spec
from .lanes import BACKOFF_S, Lane, Offsets, Pending
from .settings import Target

log = logging.getLogger(__name__)
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
    revoke_wait_s: float = 120.0
    commit_interval_s: float = 1.0
    connections: frozenset[str] | None = None   # serve only these connections
    tenants: frozenset[str] | None = None       # serve only these tenants
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
        self._offsets: dict[Partition, Offsets] = {}
        self._running: dict[Future, tuple[Lane, list[Pending]]] = {}
        self._busy: dict[Partition, int] = {}            # lane batches in flight per partition
        self._busy_lock = threading.Lock()
        self._restoring: dict[Partition, int | None] = {}   # partition -> first offset read meanwhile
        self._restores: list[tuple[Future, set[Partition]]] = []
        self._parked_paused: set[Partition] = set()
        self._round_start = 0.0
        self._last_commit = 0.0
        self._committed: dict[Partition, int] = {}
        self._unflushed = 0
        self.batches = 0
        self.totals: dict[str, int] = {}

    def stop(self) -> None:
        self._stop.set()

    # -- the loop ---------------------------------------------------------------------------------------
    def run(self, *, max_batches: int | None = None) -> None:
        s = self.settings
        consumed = [self.topics.courses, self.topics.learner_stats, self.topics.parked]
        specs = [spec for spec in topic_specs(self.topics) if spec.name in consumed]
        units = check_copartitioned({spec.name: spec.partitions for spec in specs})
        ensure_topics(self.kafka, topic_specs(self.topics) + [journal_spec(self._ledger_topic(), units)])
        producer = make_producer(self.kafka)
        self._sink = KafkaSink(producer, self.topics.for_type)
        self._consumer = RequestConsumer(
            self.kafka, consumed, s.group_id, on_assigned=self._assigned, on_revoked=self._revoked,
            max_poll_records=2000, max_poll_interval_ms=s.max_poll_interval_ms,
            session_timeout_ms=s.session_timeout_ms, group_instance_id=s.instance,
            assignors=[CoPartitionedAssignor], also_known=[self._ledger_topic()])
        counts = {t: self._consumer.partition_counts[t] for t in consumed}
        self._units = check_copartitioned(counts)
        self._journal = LedgerJournal(self._sink, self._ledger_topic(), self._units)
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
                self._membership()
                if self._targets is not None:
                    self._refresh_targets()
                if time.time() - self._round_start >= s.retry_interval_s:
                    self._start_round()
                self._take(self._consumer.poll(timeout_ms=100 if self._running else 200))
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

    def _drain(self) -> None:
        """Stopping: let running deliveries end, account for them, commit what is finished."""
        deadline = time.monotonic() + 60
        while self._running and time.monotonic() < deadline:
            time.sleep(0.05)
            self._finish_done()
        self._commit(force=True)

    def _ledger_topic(self) -> str:
        if self.settings.ledger_topic:
            return self.settings.ledger_topic
        base = Topics().requests
        prefix = self.topics.requests[:-len(base)] if self.topics.requests.endswith(base) else ""
        return f"{prefix}{self.settings.group_id}.ledger"

    def _filter_text(self) -> str:
        s = self.settings
        parts = [f"connections {sorted(s.connections)}" if s.connections else "",
                 f"tenants {sorted(s.tenants)}" if s.tenants else ""]
        return "; only " + " and ".join(p for p in parts if p) if any(parts) else ""

    def _refresh_targets(self) -> None:
        targets = self._targets()
        if targets is not self.deliverer.targets:
            self.deliverer.set_targets(targets)

    # -- membership ---------------------------------------------------------------------------------------
    def _assigned(self, partitions: set[Partition]) -> None:     # kafka-python's IO thread
        self._events.put(("assigned", partitions))

    def _revoked(self, partitions: set[Partition]):               # kafka-python's IO thread
        self._events.put(("revoked", partitions))
        deadline = time.monotonic() + self.settings.revoke_wait_s

        def barrier() -> bool:
            with self._busy_lock:
                busy = [tp for tp in partitions if self._busy.get(tp)]
            if busy and time.monotonic() >= deadline:
                log.warning("revocation: deliveries on %s still running after %.0fs; leaving them behind",
                            sorted(busy), self.settings.revoke_wait_s)
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
            else:
                self._restore(partitions)

    def _forget(self, partitions: set[Partition]) -> None:
        for lane in self._lanes.values():
            lane.queue = type(lane.queue)(p for p in lane.queue if p.tp not in partitions)
        for tp in partitions:
            self._offsets.pop(tp, None)
            self._committed.pop(tp, None)
            self._restoring.pop(tp, None)
        self._parked_paused -= partitions
        log.info("publisher gave up %d partitions", len(partitions))

    def _restore(self, partitions: set[Partition]) -> None:
        """Rebuild the ledger of the units of newly assigned partitions, their partitions paused
        meanwhile (records read before it is done are read again after)."""
        units = sorted({p % self._units for _t, p in partitions})
        for tp in partitions:
            self._restoring[tp] = None
            self._consumer.pause(tp)
        log.info("publisher assigned %d partitions (units %s); restoring their ledger", len(partitions), units)
        future = self._restorer.submit(self._journal.restore, self.kafka, self.deliverer.ledger, units)
        self._restores.append((future, partitions))

    def _restored(self) -> None:
        for future, partitions in list(self._restores):
            if not future.done():
                continue
            self._restores.remove((future, partitions))
            try:
                future.result()
            except Exception as exc:  # the broker away: try again
                log.warning("ledger not restored (%s: %s); trying again", type(exc).__name__, exc)
                self._restore({tp for tp in partitions if tp in self._restoring})
                continue
            for tp in partitions:
                if tp not in self._restoring:
                    continue                       # revoked meanwhile
                first = self._restoring.pop(tp)
                if first is not None:
                    self._consumer.seek(tp, first)
                if tp not in self._parked_paused:
                    self._consumer.resume(tp)

    # -- reading ----------------------------------------------------------------------------------------
    def _start_round(self) -> None:
        self._round_start = time.time()
        for tp in self._parked_paused:
            if tp not in self._restoring:
                self._consumer.resume(tp)
        self._parked_paused.clear()

    def _take(self, messages: list[InboundMessage]) -> None:
        self._restored()
        stopped: set[Partition] = set()
        now = time.monotonic()
        for msg in messages:
            tp = msg.tp
            if tp in stopped:
                continue
            if tp in self._restoring:
                if self._restoring[tp] is None:
                    self._restoring[tp] = msg.offset
                continue
            if msg.topic == self.topics.parked and _parked_at(msg.value) >= self._round_start:
                # parked during this round: leave it (and what follows) for the next round
                self._consumer.seek(tp, msg.offset)
                self._consumer.pause(tp)
                self._parked_paused.add(tp)
                stopped.add(tp)
                continue
            offsets = self._offsets.setdefault(tp, Offsets(msg.offset))
            item, dead = _parse(msg)
            connection = item.data.get("connection") if item is not None else None
            if item is not None and not self._mine(item):
                if offsets.read(msg.offset, None, keep=True):
                    offsets.finished(msg.offset)
                self._count("skipped_other_publisher")
                continue
            lane = self._lanes.setdefault(connection, Lane(connection, cap=self.settings.lane_cap)) \
                if connection is not None else None
            if not offsets.read(msg.offset, connection, keep=lane is None or not lane.full):
                if lane is not None and lane.full:
                    lane.overflowed = True
                continue
            if item is None:
                if dead is not None:
                    self._sink.emit(dead)
                    self._unflushed += 1
                    self._count("malformed")
                offsets.finished(msg.offset)
                continue
            lane.queue.append(Pending(tp, msg.offset, item, seen=now))

    def _mine(self, item: Inbound) -> bool:
        s = self.settings
        return (s.connections is None or item.data.get("connection") in s.connections) and \
               (s.tenants is None or item.data.get("tenant") in s.tenants)

    # -- delivering -------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        s = self.settings
        now = time.monotonic()
        for lane in self._lanes.values():
            if len(self._running) >= s.concurrency:
                return
            metrics.PUBLISHER_LANE_BACKLOG.labels(lane.connection).set(len(lane.queue))
            if not lane.due(now, batch_size=s.batch_size, batch_seconds=s.batch_seconds):
                continue
            batch = lane.take(s.batch_size)
            if batch:
                lane.tags_due = None     # the delivery runs the tags step too
            with self._busy_lock:
                for p in batch:
                    self._busy[p.tp] = self._busy.get(p.tp, 0) + 1
            future = self._pool.submit(self._deliver, lane.connection, batch)
            self._running[future] = (lane, batch)

    def _deliver(self, connection: str, batch: list[Pending]) -> Outcome:
        """In a lane's thread. Marks its partitions idle itself when done: a revocation waits on
        that while the poll loop may be blocked in the rebalance."""
        started = time.monotonic()
        try:
            return self.deliverer.deliver_connection(connection, [p.item for p in batch])
        finally:
            metrics.PUBLISHER_BATCH_SECONDS.observe(time.monotonic() - started)
            with self._busy_lock:
                for p in batch:
                    self._busy[p.tp] -= 1

    def _finish_done(self) -> None:
        for future in [f for f in self._running if f.done()]:
            lane, batch = self._running.pop(future)
            try:
                outcome = future.result()
            except TransientError as exc:
                self._lane_failed(lane, batch, exc, config=exc.code == contract.BULK_DISABLED)
                continue
            except Exception as exc:   # a bug, or something no one foresaw: retried, then dead-lettered
                if lane.failures + 1 < self.settings.max_batch_failures:
                    log.exception("connection %s: delivery failed unexpectedly", lane.connection)
                    self._lane_failed(lane, batch, exc)
                    continue
                log.exception("connection %s: delivery failed %d times in a row; dead-lettering its %d events",
                              lane.connection, lane.failures + 1, len(batch))
                outcome = Outcome()
                for p in batch:
                    outcome.dead.append(self.deliverer.rejected(p.item, "publisher_error",
                                                                f"{lane.failures + 1} attempts failed; see the log"))
                outcome.counts["publisher_error"] = len(batch)
            self._lane_succeeded(lane, batch, outcome)

    def _lane_failed(self, lane: Lane, batch: list[Pending], exc: Exception, *, config: bool = False) -> None:
        wait = lane.failed(batch, f"{type(exc).__name__}: {exc}", config=config)
        metrics.PUBLISHER_LANE_WAITS.labels(lane.connection, lane.state).inc()
        if config:
            log.error("connection %s: 360Learning refuses bulk operations for this company (%s): an administrator "
                      "must enable its bulk API. %d events wait; asking again in %.0fs", lane.connection, exc,
                      len(lane.queue), wait)
        else:
            log.warning("connection %s: %d events not delivered (%s); this connection tries again in %.0fs, "
                        "the others go on", lane.connection, len(batch), exc, wait)

    def _lane_succeeded(self, lane: Lane, batch: list[Pending], outcome: Outcome) -> None:
        try:
            for event in [*outcome.dead, *outcome.parked]:
                self._sink.emit(event)
            self._sink.flush(timeout_s=60)           # dead letters, parked stats and the ledger's journal
        except DeliveryError as exc:
            # 360Learning has them; the ledger knows: the retry finds them delivered
            self._lane_failed(lane, batch, exc)
            return
        lane.succeeded()
        if outcome.tags_pending:
            lane.tags_due = time.monotonic() + BACKOFF_S[2]
        for p in batch:
            offsets = self._offsets.get(p.tp)
            if offsets is not None:
                offsets.finished(p.offset)
        if lane.overflowed and not lane.full and len(lane.queue) < lane.cap // 2:
            self._reread(lane)
        self.batches += 1
        for k, v in outcome.counts.items():
            self.totals[k] = self.totals.get(k, 0) + v
        if batch:
            log.info("connection %s: %d events: %s", lane.connection, len(batch),
                     ", ".join(f"{k}={v}" for k, v in sorted(outcome.counts.items())) or "nothing to deliver")

    def _reread(self, lane: Lane) -> None:
        lane.overflowed = False
        for tp, offsets in self._offsets.items():
            start = offsets.rewind_to({lane.connection})
            if start is not None:
                log.info("connection %s has room again: reading %s[%d] again from %d", lane.connection, *tp, start)
                self._consumer.seek(tp, start)

    def _commit(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit < self.settings.commit_interval_s:
            return
        self._last_commit = now
        positions = {tp: o.commit_position() for tp, o in self._offsets.items()}
        changed = {tp: n for tp, n in positions.items() if self._committed.get(tp) != n}
        if not changed:
            return
        if self._unflushed:
            try:
                self._sink.flush(timeout_s=60)
            except DeliveryError as exc:
                log.warning("dead letters not acknowledged (%s); commit postponed", exc)
                return
            self._unflushed = 0
        if self._consumer.commit_many(changed):
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
