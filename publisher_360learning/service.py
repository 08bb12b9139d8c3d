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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.ops import metrics
from hostspec.credentials import CredentialKey
from hostspec.rejections import raw_rejection
from hostspec.errors import TransportError
from hostspec.topics import Topics, ledger_topic
from hostspec.transport.admin import ensure_topics
from hostspec.transport.assignor import CoPartitionedAssignor, check_copartitioned
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.consumers import InboundMessage, RequestConsumer
from hostspec.transport.kafka import Partition
from hostspec.transport.producers import KafkaSink, make_producer
from hostspec.transport.routing import Router

from hostspec.transport.offsets import OffsetTracker

from . import contract
from .budget import DEFAULT_BUDGET, MemoryBudget, event_size
from .commits import Commits
from .delivery import SOURCE, Deliverer, Inbound
from .dispatch import Dispatch
from .journal import LedgerJournal, journal_spec
from .lanes import Lane, Pending
from .membership import WRITE_WAIT_S, Membership  # noqa: F401  (WRITE_WAIT_S re-exported)
from .ownership import Ownership
from .reading import GAUGES_EVERY_S, Reading  # noqa: F401  (GAUGES_EVERY_S re-exported)
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
    memory_budget: int = DEFAULT_BUDGET     # bytes of events all lanes keep in memory together
    company_lanes: int = contract.BULK_CONCURRENCY   # lanes of one company delivering at once (<= its bulk slots)
    revoke_wait_s: float = 120.0
    commit_interval_s: float = 1.0
    connections: frozenset[str] | None = None   # serve only these connections
    tenants: frozenset[str] | None = None       # serve only these tenants
    except_tenants: frozenset[str] = frozenset()   # serve every tenant but these (they have their own)
    ledger_topic: str | None = None             # default: <topic prefix><group id>.ledger


class PublisherService(Membership, Reading, Dispatch, Commits):
    """The publisher's Kafka loop. Its parts, each a module of its own: :mod:`.membership`
    (assignment, revocation, the fence, ledger restores), :mod:`.reading` (parked rounds, lane
    room, the memory budget, gauges), :mod:`.dispatch` (lanes delivering, their outcomes) and
    :mod:`.commits` (the outbox and offset commits); here the loop and the sorting of polled
    records into lanes."""

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

    # -- reading ----------------------------------------------------------------------------------------
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
