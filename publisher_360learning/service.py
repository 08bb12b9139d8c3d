"""The publisher's Kafka loop: consume courses, learner stats and parked stats, deliver them in
batches, and acknowledge a batch only once 360Learning's answer for every item is known.

* Its own consumer group (``publisher-360learning``), ``read_committed``: only events of
  committed worker transactions are seen.
* A batch closes at ``batch_size`` events or ``batch_seconds`` after its first one. Its dead
  letters and parked stats are produced and acknowledged by the broker, then its offsets are
  committed. A transient failure (360Learning down, throttling beyond the retries) rewinds the
  consumer to the batch's first offsets and tries again after ``backoff_s``: nothing is lost.
  A crash before the commit re-delivers the batch; upserts and stat imports are idempotent and
  the ledger skips what was already delivered.
* Parked stats are retried in rounds: at start and every ``retry_interval_s``, the parked
  topic is read up to the records parked during the current round, then paused until the next.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec import metrics
from hostspec.dead_letters import raw_rejection
from hostspec.errors import DeliveryError
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.kafka import (InboundMessage, KafkaSink, Partition, RequestConsumer, ensure_topics,
                                      make_producer)

from .delivery import SOURCE, Deliverer, Inbound, Outcome
from .errors import TransientError

log = logging.getLogger(__name__)
DELIVERABLE = (ev.COURSE_UPSERTED, ev.COURSE_REMOVED, ev.LEARNER_STAT_UPSERTED)


@dataclass(frozen=True)
class ServiceSettings:
    group_id: str = "publisher-360learning"
    batch_size: int = 10_000
    batch_seconds: float = 2.0
    retry_interval_s: float = 3600.0
    backoff_s: float = 5.0
    max_poll_interval_ms: int = 1_800_000   # a batch may wait on slow bulk operations
    max_batch_failures: int = 5             # unexpected errors in a row before a batch is dead-lettered
    session_timeout_ms: int = 10_000
    instance: str | None = None             # a stable name: static membership, a restart resumes at once


class PublisherService:
    def __init__(self, deliverer: Deliverer, kafka: KafkaConfig, topics: Topics,
                 settings: ServiceSettings = ServiceSettings()):
        self.deliverer, self.kafka, self.topics, self.settings = deliverer, kafka, topics, settings
        self._stop = threading.Event()
        self._pending: list[InboundMessage] = []
        self._pending_since = 0.0
        self._parked_paused: set[Partition] = set()
        self._round_start = 0.0
        self.batches = 0
        self._failures = 0
        self.totals: dict[str, int] = {}

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, max_batches: int | None = None) -> None:
        ensure_topics(self.kafka, topic_specs(self.topics))
        producer = make_producer(self.kafka)
        self._sink = KafkaSink(producer, self.topics.for_type)
        self._consumer = RequestConsumer(
            self.kafka, [self.topics.courses, self.topics.learner_stats, self.topics.parked], self.settings.group_id,
            on_assigned=self._assigned, on_revoked=self._revoked, max_poll_records=2000,
            max_poll_interval_ms=self.settings.max_poll_interval_ms, session_timeout_ms=self.settings.session_timeout_ms,
            group_instance_id=self.settings.instance)
        log.info("publisher consuming %s, %s and %s as group %s", self.topics.courses, self.topics.learner_stats,
                 self.topics.parked, self.settings.group_id)
        probe = metrics.LagProbe(self._consumer, self.settings.group_id)
        try:
            self._start_round()
            while not self._stop.is_set() and (max_batches is None or self.batches < max_batches):
                probe()
                if time.time() - self._round_start >= self.settings.retry_interval_s:
                    self._start_round()
                messages = self._consumer.poll(timeout_ms=200)
                self._take(messages)
                due = self._pending and (len(self._pending) >= self.settings.batch_size or not messages
                                         or time.monotonic() - self._pending_since >= self.settings.batch_seconds)
                if due:
                    self._process()
        finally:
            self._consumer.close()
            producer.close(timeout=10)
            self.deliverer.close()

    # -- parked rounds ----------------------------------------------------------------------------------
    def _start_round(self) -> None:
        self._round_start = time.time()
        for tp in self._parked_paused:
            self._consumer.resume(tp)
        self._parked_paused.clear()

    def _take(self, messages: list[InboundMessage]) -> None:
        stopped: set[Partition] = set()
        for msg in messages:
            if msg.tp in stopped:
                continue
            if msg.topic == self.topics.parked and _parked_at(msg.value) >= self._round_start:
                # parked during this round: leave it (and what follows) for the next round
                self._consumer.seek(msg.tp, msg.offset)
                self._consumer.pause(msg.tp)
                self._parked_paused.add(msg.tp)
                stopped.add(msg.tp)
                continue
            if not self._pending:
                self._pending_since = time.monotonic()
            self._pending.append(msg)

    def _assigned(self, partitions: set[Partition]) -> None:
        log.info("publisher assigned %d partitions", len(partitions))

    def _revoked(self, partitions: set[Partition]) -> None:
        """Forget uncommitted messages of partitions this member lost: their new owner reads them."""
        self._pending = [m for m in self._pending if m.tp not in partitions]
        self._parked_paused -= partitions

    # -- a batch ----------------------------------------------------------------------------------------
    def _process(self) -> None:
        batch, self._pending = self._pending, []
        first: dict[Partition, int] = {}
        after: dict[Partition, int] = {}
        for msg in batch:
            first.setdefault(msg.tp, msg.offset)
            after[msg.tp] = msg.offset + 1
        inbound, dead = self._parse(batch)
        started = time.monotonic()
        try:
            outcome = self._deliver(inbound, batch)
            for event in [*dead, *outcome.dead, *outcome.parked]:
                self._sink.emit(event)
            self._sink.flush(timeout_s=60)
        except (TransientError, DeliveryError) as exc:
            log.warning("batch of %d events not delivered (%s); trying again in %.0fs", len(batch), exc,
                        self.settings.backoff_s)
            for tp, offset in first.items():
                self._consumer.seek(tp, offset)
            self._stop.wait(self.settings.backoff_s)
            return
        self._failures = 0
        self._consumer.commit_many(after)
        metrics.PUBLISHER_BATCH_SECONDS.observe(time.monotonic() - started)
        self.batches += 1
        counts = dict(outcome.counts)
        if dead:
            counts["malformed"] = len(dead)
        for k, v in counts.items():
            self.totals[k] = self.totals.get(k, 0) + v
        log.info("batch %d: %d events: %s", self.batches, len(batch),
                 ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "nothing to deliver")

    def _deliver(self, inbound: list[Inbound], batch: list[InboundMessage]) -> Outcome:
        """Deliver, turning an unexpected error into a retry, and after ``max_batch_failures`` of
        them in a row into dead letters for the whole batch, so one poison batch cannot stop the
        publisher for ever nor crash it."""
        try:
            return self.deliverer.deliver(inbound)
        except (TransientError, DeliveryError):
            raise
        except Exception as exc:
            self._failures += 1
            log.exception("batch of %d events failed unexpectedly (%d in a row)", len(batch), self._failures)
            if self._failures < self.settings.max_batch_failures:
                raise TransientError(f"unexpected {type(exc).__name__}: {exc}") from None
        outcome = Outcome()
        for item in inbound:
            outcome.dead.append(self.deliverer.rejected(item, "publisher_error",
                                                        f"{self._failures} attempts failed; see the publisher log"))
        outcome.counts["publisher_error"] = len(inbound)
        return outcome

    def _parse(self, batch: list[InboundMessage]) -> tuple[list[Inbound], list[ev.Event]]:
        inbound, dead = [], []
        for msg in batch:
            origin = (msg.topic, msg.partition, msg.offset)
            try:
                event = ev.parse_event(msg.value or b"")
                parked = None
                if event.type == ev.STAT_PARKED:
                    parked = event.data
                    event = ev.parse_event(parked["event"], ev.LEARNER_STAT_UPSERTED)
            except ValidationError as exc:
                dead.append(_malformed(msg, exc.messages))
                continue
            if event.type in DELIVERABLE:
                inbound.append(Inbound(event, origin, parked))
        return inbound, dead


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
