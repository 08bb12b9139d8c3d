"""``connector-host schedule``: publish the sync requests that are due, from one instance at a time.

Several schedulers may run (for availability); they join one consumer group on the one-partition
scheduler topic, and only the member holding that partition publishes. The same compacted topic
records the last slot published per job, so a new leader knows where the previous one stopped.
Should two ever publish the same slot (a leader paused past its session timeout), both publish
the same request id, and the worker runs a request id once.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable

from hostspec.ops import metrics
from hostspec.requests import SyncRequest
from hostspec.errors import DeliveryError, HostError, TransportError
from hostspec.config.schedule import Job, Slot, due, jobs_of
from hostspec.config.sources import ConnectionSource
from hostspec.topics import Topics
from hostspec.transport.admin import ensure_topics
from hostspec.transport.changelog import ChangelogReader
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.consumers import RequestConsumer
from hostspec.transport.kafka import Partition
from hostspec.transport.liveness import BrokerProbe
from hostspec.transport.producers import KafkaSink, make_producer

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, connections: ConnectionSource, kafka: KafkaConfig, topics: Topics, *,
                 group_id: str = "connector-host-scheduler", instance: str = "scheduler", tick_s: float = 30.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.connections, self.kafka, self.topics = connections, kafka, topics
        self.group_id, self.instance, self.tick_s, self.clock = group_id, instance, tick_s, clock
        self.last: dict[str, str] = {}
        self.published: list[Slot] = []
        self._leader = False
        self._loaded = False
        self._stop = threading.Event()
        self._last_poll = 0.0
        self.broker = BrokerProbe(kafka)    # started by run(): /ready asks it whether Kafka answers

    def stop(self) -> None:
        self._stop.set()

    @property
    def leader(self) -> bool:
        return self._leader

    def readiness(self) -> dict[str, bool]:
        """``/ready``: polling its group (leader or standby), Kafka answering
        (:mod:`hostspec.transport.liveness`) and connections read."""
        try:
            self.connections.store()
            readable = True
        except HostError:
            readable = False
        polling = not self._stop.is_set() and time.monotonic() - self._last_poll < 30
        return {"kafka": polling and self.broker.alive(), "connections": readable}

    def jobs(self) -> list[Job]:
        raw = self.connections.store()
        jobs: list[Job] = []
        for name in raw.names:
            try:
                jobs.extend(jobs_of(name, raw.raw(name), source=raw.source))
            except HostError as exc:     # one connection's broken schedule stops only its own jobs
                log.error("%s", exc)
        return jobs

    def run(self) -> None:
        self.broker.start()
        try:
            self._run()
        finally:
            self.broker.close()

    def _run(self) -> None:
        ensure_topics(self.kafka, topic_specs(self.topics))
        producer = make_producer(self.kafka)
        self._sink = KafkaSink(producer, self.topics.for_type)
        consumer = RequestConsumer(self.kafka, self.topics.scheduler, self.group_id, on_assigned=self._assigned,
                                   on_revoked=self._revoked, session_timeout_ms=10_000)
        self._consumer = consumer
        try:
            next_tick = 0.0
            while not self._stop.is_set():
                consumer.poll(timeout_ms=200)    # keeps the membership (the lease) alive
                self._last_poll = time.monotonic()
                now = self.clock()
                if self._leader and now.timestamp() >= next_tick:
                    try:
                        self.tick(now)
                    except (DeliveryError, TransportError) as exc:  # the broker hiccupped: next tick redoes it
                        log.warning("due requests not published (%s); trying again next tick", exc)
                    next_tick = now.timestamp() + self.tick_s
        finally:
            consumer.close()
            producer.close(timeout=10)

    def _assigned(self, partitions: set[Partition]) -> None:
        self._leader = any(topic == self.topics.scheduler for topic, _p in partitions)
        for tp in partitions:
            self._consumer.pause(tp)             # the partition is a lease: its records are read apart
        if self._leader:
            log.info("scheduler %s leads: it publishes the due requests", self.instance)
            self._loaded = False

    def _revoked(self, partitions: set[Partition]) -> None:
        if self._leader:
            log.info("scheduler %s no longer leads", self.instance)
        self._leader = False

    def _load(self) -> None:
        changelog = ChangelogReader(self.kafka, self.topics.scheduler)
        try:
            changelog.read_all(lambda records: self.last.update(
                {k: v.decode("utf-8") for k, v in records if v is not None}))
        finally:
            changelog.close()
        self._loaded = True

    def tick(self, now: datetime) -> list[Slot]:
        """Publish every due slot; returns them."""
        if not self._loaded:
            self._load()
        try:
            jobs = self.jobs()
        except HostError as exc:
            log.error("schedule not read: %s", exc)
            return []
        slots = due(jobs, self.last, now)
        for slot in slots:
            request = SyncRequest(slot.request_id, slot.job.connection, slot.job.provider, slot.job.scope,
                                  requested_by=f"scheduler:{self.instance}", mode=slot.job.mode)
            self._sink.emit(request.to_event(now))
        self._sink.flush(timeout_s=30)          # the requests first: a crash now republishes the same ids
        for slot in slots:
            self._sink.send_raw(self.topics.scheduler, slot.job.key, slot.at.isoformat().encode("utf-8"))
            self.last[slot.job.key] = slot.at.isoformat()
            metrics.SCHEDULED.labels(slot.job.name).inc()
            log.info("published %s sync of %s for slot %s (request %s)", slot.job.name, slot.job.connection,
                     slot.at.isoformat(), slot.request_id)
        self._sink.flush(timeout_s=30)
        self.published.extend(slots)
        return slots
