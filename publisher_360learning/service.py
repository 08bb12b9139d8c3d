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

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from hostspec.ops import metrics
from hostspec.errors import TransportError
from hostspec.topics import Topics, ledger_topic
from hostspec.transport.admin import ensure_topics
from hostspec.transport.assignor import check_copartitioned
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.consumers import RequestConsumer
from hostspec.transport.liveness import BrokerProbe
from hostspec.transport.producers import KafkaSink, make_producer
from hostspec.transport.routing import Router

from . import contract
from .budget import DEFAULT_BUDGET, MemoryBudget
from .commits import Committer
from .delivery import Deliverer
from .dispatch import Dispatcher
from .journal import LedgerJournal, journal_spec
from .membership import WRITE_WAIT_S, Membership  # noqa: F401  (WRITE_WAIT_S re-exported)
from .ownership import Ownership
from .reading import GAUGES_EVERY_S, Reader  # noqa: F401  (GAUGES_EVERY_S re-exported)
from .settings import Target
from .shared import Shared

log = logging.getLogger(__name__)


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
    """The publisher's Kafka loop: a coordinator that opens the Kafka clients, wires its parts
    together and, after each poll, advances them in one step. Its parts, each an object of a
    module of its own, share a :class:`~.shared.Shared`: :class:`~.membership.Membership`
    (assignment, revocation, the fence, ledger restores), :class:`~.reading.Reader` (polled
    records into lanes, parked rounds, lane room, the memory budget, gauges),
    :class:`~.dispatch.Dispatcher` (lanes delivering, their outcomes) and
    :class:`~.commits.Committer` (the outbox and offset commits)."""

    def __init__(self, deliverer: Deliverer, kafka: KafkaConfig, topics: Topics,
                 settings: ServiceSettings = ServiceSettings(), *,
                 targets: Callable[[], dict[str, Target]] | None = None):
        """:param targets: the current targets (re-read when they change), for the deliverer."""
        self.deliverer, self.kafka, self.topics = deliverer, kafka, topics
        self._targets = targets
        self._stop = threading.Event()
        self._last_poll = 0.0
        self.broker = BrokerProbe(kafka)    # started by run(): /ready asks it whether Kafka answers
        self.shared = sh = Shared(settings, MemoryBudget(settings.memory_budget))
        # the fence's lease: half the session timeout without a heartbeat answered, no write starts
        sh.ownership = Ownership(lambda: sh.consumer.group_metadata(),   # type: ignore[union-attr]
                                 silence=lambda: sh.consumer.heartbeat_silence(),   # type: ignore[union-attr]
                                 lease_s=settings.session_timeout_ms / 2000)
        self.membership = Membership(deliverer, kafka, sh)
        self.reader = Reader(deliverer, topics, sh, self.membership)
        self.dispatcher = Dispatcher(deliverer, topics, sh)
        self.committer = Committer(topics, sh, self.reader)

    @property
    def settings(self) -> ServiceSettings:
        return self.shared.settings

    @settings.setter
    def settings(self, settings: ServiceSettings) -> None:
        self.shared.settings = settings

    @property
    def batches(self) -> int:
        return self.shared.batches

    @property
    def totals(self) -> dict[str, int]:
        return self.shared.totals

    @property
    def parked_now(self) -> int:
        """Stats parked now (the ledger's count), for the summary."""
        return self.reader.parked_now

    def stop(self) -> None:
        self._stop.set()

    def readiness(self) -> dict[str, bool]:
        """``/ready``: Kafka answering (:mod:`hostspec.transport.liveness`: false within seconds of
        the broker going away), a group member (a generation, a heartbeat answered within the
        session timeout) that polled lately, whose assigned partitions are all served."""
        consumer = self.shared.consumer
        polling = consumer is not None and not self._stop.is_set() and time.monotonic() - self._last_poll < 30
        member = polling and consumer.in_group(self.settings.session_timeout_ms / 1000)   # type: ignore[union-attr]
        served = member and set(consumer.assignment()) <= set(self.shared.ready)   # type: ignore[union-attr]
        return {"kafka": self.broker.alive(), "group": bool(member), "partitions": bool(served)}

    # -- the loop ---------------------------------------------------------------------------------------
    def run(self, *, max_batches: int | None = None) -> None:
        self.broker.start()
        try:
            self._run(max_batches)
        finally:
            self.broker.close()

    def _run(self, max_batches: int | None) -> None:
        s, sh, membership = self.settings, self.shared, self.membership
        consumed = [self.topics.courses, self.topics.learner_stats, self.topics.parked]
        specs = [spec for spec in topic_specs(self.topics) if spec.name in consumed]
        units = check_copartitioned({spec.name: spec.partitions for spec in specs})
        ensure_topics(self.kafka, topic_specs(self.topics) + [journal_spec(self._ledger_topic(), units)])
        producer = make_producer(self.kafka)
        sh.sink = KafkaSink(producer, self.topics.for_type)
        sh.route = Router(producer.partitions_for)
        sh.consumer = consumer = RequestConsumer(
            self.kafka, consumed, s.group_id, on_assigned=membership.assigned, on_revoked=membership.revoked,
            on_lost=membership.lost, max_poll_records=2000, max_poll_interval_ms=s.max_poll_interval_ms,
            session_timeout_ms=s.session_timeout_ms, group_instance_id=s.instance,
            assignors=[membership.assignor], also_known=[self._ledger_topic()],
            fetch_bytes=sh.budget.fetch_bytes())
        counts = {t: consumer.partition_counts[t] for t in consumed}
        sh.units = check_copartitioned(counts)
        sh.journal = LedgerJournal(self._ledger_topic(), sh.units)
        if consumer.partition_counts.get(self._ledger_topic()) != sh.units:
            raise TransportError(f"{self._ledger_topic()} has {consumer.partition_counts.get(self._ledger_topic())} "
                                 f"partitions, the group has {sh.units} units: recreate it with {sh.units}")
        self.deliverer.ledger.journal = sh.journal
        sh.pool = ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix="lane")
        sh.restorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-restore")
        log.info("publisher consuming %s as group %s: %d units, %d lanes at once%s", ", ".join(consumed),
                 s.group_id, sh.units, s.concurrency, self._filter_text())
        probe = metrics.LagProbe(consumer, s.group_id)
        try:
            self.reader.start_round()
            while not self._stop.is_set() and (max_batches is None or sh.batches < max_batches):
                probe()
                self.reader.gauges()
                membership.catch_up()
                if self._targets is not None:
                    self._refresh_targets()
                if time.time() - self.reader.round_start >= s.retry_interval_s:
                    self.reader.start_round()
                messages = consumer.poll(timeout_ms=100 if self.dispatcher.running else 200)
                self._last_poll = time.monotonic()
                membership.catch_up()      # before taking: the poll may have completed a rebalance
                self.reader.take(messages)
                self.dispatcher.finish_done()
                self.dispatcher.dispatch()
                self.committer.commit()
            self._drain()
        finally:
            sh.pool.shutdown(wait=True, cancel_futures=True)
            sh.restorer.shutdown(wait=False, cancel_futures=True)
            consumer.close()
            producer.close(timeout=10)
            self.deliverer.close()

    def _drain(self) -> None:
        """Stopping: let running deliveries end, account for them, commit what is finished."""
        deadline = time.monotonic() + 60
        while self.dispatcher.running and time.monotonic() < deadline:
            time.sleep(0.05)
            self.dispatcher.finish_done()
        self.committer.commit(force=True)
        self.reader.gauges(force=True)
        if self.shared.outbox:
            log.warning("stopping with %d records not acknowledged by Kafka: their events are read again "
                        "at the next start", len(self.shared.outbox))

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
