"""The Kafka worker: consume sync requests, run them, produce events, commit after acknowledgement.

How a long sync never gets the worker thrown out of its group, nor blocks other partitions:
the poll loop runs in the main thread and never waits for a sync. A request is handed to a
thread pool and its partition is *paused*, so the loop keeps calling ``poll()`` (the consumer
stays a live group member however long the sync takes) and keeps serving the other partitions.
When the run ends, every event it produced has been flushed and acknowledged (acks=all,
idempotent producer); only then does the loop commit the request's offset + 1 and resume the
partition. Requests of one partition therefore run in order; different partitions run in
parallel, up to ``concurrency``. Two runs of the same connection never overlap: a
per-connection lock queues the later request until the earlier one ends.

Nothing is lost: a worker that dies, or loses a partition in a rebalance, has not committed the
request it was running, so the partition's next owner runs it again. Events already sent by the
dead run are sent again with the same ids (content-derived), so consumers can recognise them.
A request that cannot be run (malformed, unknown provider or connection) goes to the dead-letter
topic with its raw bytes and origin, a ``failed`` status is published when its id is readable,
its offset is committed and the worker carries on.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from marshmallow import ValidationError

from . import events as ev
from .connections import ConnectionStore
from .dead_letters import refused_request
from .engine import RunReport, SyncEngine, SyncRequest
from .errors import DeliveryError, HostError, RunAbandoned
from .plugins import HostPluginManager
from .provider import Connection
from .topics import Topics
from .transport.config import KafkaConfig, topic_specs
from .transport.kafka import InboundMessage, KafkaSink, Partition, RequestConsumer, ensure_topics, make_producer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    group_id: str = "connector-host"
    concurrency: int = 2
    session_timeout_ms: int = 45_000
    grace_s: float = 30.0            # on shutdown, how long running syncs may finish
    retry_backoff_s: float = 5.0     # wait before re-running a request whose events were not delivered
    status_every: int = 5_000        # a "progress" status every that many records
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class ConnectionsFile:
    """The connections file, re-read when it changes so operators can add connections live."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._mtime: float | None = None
        self._store: ConnectionStore | None = None

    def store(self) -> ConnectionStore:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            mtime = None
        if self._store is None or mtime != self._mtime:
            self._store = ConnectionStore.from_file(self.path)
            self._mtime = mtime
        return self._store


@dataclass
class _Slot:
    """One assigned partition's queue: the request running now and the ones fetched after it."""

    pending: deque[InboundMessage] = field(default_factory=deque)
    running: Future[RunReport] | None = None
    current: InboundMessage | None = None
    cancel: threading.Event | None = None
    not_before: float = 0.0


class Worker:
    def __init__(self, plugins: HostPluginManager, connections: ConnectionsFile, kafka: KafkaConfig,
                 topics: Topics, settings: WorkerSettings | None = None):
        self.plugins, self.connections, self.kafka, self.topics = plugins, connections, kafka, topics
        self.settings = settings or WorkerSettings()
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self._slots: dict[Partition, _Slot] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._consumer: RequestConsumer | None = None
        self._producer: Any = None
        self._pool: ThreadPoolExecutor | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop taking requests; running syncs get ``grace_s`` to finish (see :meth:`run`)."""
        self._stopping.set()

    def run(self) -> None:
        s = self.settings
        ensure_topics(self.kafka, topic_specs(self.topics))
        self._producer = make_producer(self.kafka)
        self._consumer = RequestConsumer(self.kafka, self.topics.requests, s.group_id,
                                         on_assigned=self._assigned, on_revoked=self._revoked,
                                         session_timeout_ms=s.session_timeout_ms)
        self._pool = ThreadPoolExecutor(s.concurrency, thread_name_prefix="sync")
        log.info("worker %s consuming %s in group %s", s.worker_id, self.topics.requests, s.group_id)
        try:
            while not self._stopping.is_set():
                self._take(self._consumer.poll(200))
                self._advance()
            self._drain()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._producer.flush(timeout=30)
            self._producer.close(timeout=10)
            self._consumer.close()
            log.info("worker %s stopped", s.worker_id)

    def _drain(self) -> None:
        """Let running syncs finish within the grace period, commit them, abandon the rest."""
        assert self._consumer is not None
        deadline = time.monotonic() + self.settings.grace_s
        log.info("stopping: waiting up to %.0fs for %d running syncs", self.settings.grace_s,
                 sum(1 for s in self._slots.values() if s.running))
        while any(s.running for s in self._slots.values()):
            if time.monotonic() >= deadline and not self._abandon.is_set():
                log.warning("grace period over: abandoning running syncs (their requests stay uncommitted)")
                self._abandon.set()
            self._consumer.poll(100)  # stay a group member so the commits below are accepted
            self._advance()

    # -- rebalance callbacks (called inside poll, on the main thread) --------------------------
    def _assigned(self, partitions: set[Partition]) -> None:
        log.info("worker %s assigned partitions %s", self.settings.worker_id, sorted(p for _, p in partitions))

    def _revoked(self, partitions: set[Partition]) -> None:
        for tp in partitions:
            slot = self._slots.pop(tp, None)
            if slot and slot.cancel is not None:
                slot.cancel.set()  # its next owner runs the request again
                log.info("partition %s revoked while a sync ran; the sync is abandoned", tp[1])

    # -- the loop ------------------------------------------------------------------------------
    def _take(self, messages: list[InboundMessage]) -> None:
        assert self._consumer is not None
        for msg in messages:
            slot = self._slots.get(msg.tp)
            if slot is None:
                slot = self._slots[msg.tp] = _Slot()
                self._consumer.pause(msg.tp)
            slot.pending.append(msg)

    def _advance(self) -> None:
        assert self._consumer is not None
        for tp, slot in list(self._slots.items()):
            if slot.running is not None:
                if not slot.running.done():
                    continue
                self._finish(tp, slot)
            while (slot.running is None and slot.pending and time.monotonic() >= slot.not_before
                   and not self._stopping.is_set()):
                msg = slot.pending.popleft()
                try:
                    future = self._dispatch(msg, slot)
                except DeliveryError as exc:
                    log.error("dead letter for offset %d not delivered (%s); retrying later", msg.offset, exc)
                    slot.pending.appendleft(msg)
                    slot.not_before = time.monotonic() + self.settings.retry_backoff_s
                    break
                if future is None:
                    self._consumer.commit(tp, msg.offset + 1)
                else:
                    slot.running, slot.current = future, msg
            if slot.running is None and not slot.pending and tp in self._slots:
                del self._slots[tp]
                if tp in self._consumer.assignment():
                    self._consumer.resume(tp)

    def _finish(self, tp: Partition, slot: _Slot) -> None:
        assert self._consumer is not None and slot.running is not None and slot.current is not None
        msg, future = slot.current, slot.running
        slot.running = slot.current = slot.cancel = None
        try:
            report = future.result()
        except RunAbandoned as exc:
            log.info("request at %s@%d abandoned: %s", tp[1], msg.offset, exc)
            return
        except DeliveryError as exc:
            log.error("events of request at %s@%d not delivered (%s); it will run again", tp[1], msg.offset, exc)
            slot.pending.appendleft(msg)
            slot.not_before = time.monotonic() + self.settings.retry_backoff_s
            return
        except Exception as exc:  # a bug: dead-letter the request rather than loop on it
            log.exception("request at %s@%d crashed the run", tp[1], msg.offset)
            try:
                self._refuse(msg, f"the worker failed on this request: {type(exc).__name__}", None)
            except DeliveryError:
                slot.pending.appendleft(msg)
                slot.not_before = time.monotonic() + self.settings.retry_backoff_s
                return
        else:
            c = report.counts
            log.info("run %s of %s %s: %d courses, %d stats, %d rejected in %.1fs", report.run_id,
                     report.connection, report.outcome, c.courses_emitted, c.stats_emitted, c.rejected,
                     report.duration_s)
        self._consumer.commit(tp, msg.offset + 1)

    # -- one request ---------------------------------------------------------------------------
    def _dispatch(self, msg: InboundMessage, slot: _Slot) -> Future[RunReport] | None:
        """Start the request's run, or dead-letter it and return None."""
        assert self._pool is not None
        try:
            event = ev.parse_event(msg.value or b"", expected_type=ev.SYNC_REQUESTED)
        except ValidationError as exc:
            return self._refuse(msg, "malformed sync request", exc.messages)
        request = SyncRequest.from_event(event)
        try:
            self.plugins.provider(request.provider)  # unknown provider: name the installed ones
            connection = self.connections.store().get(request.connection, self.plugins)
        except HostError as exc:
            return self._refuse(msg, str(exc), {"connection": [str(exc)]}, request)
        if connection.provider != request.provider:
            return self._refuse(msg, f"connection {connection.name!r} is for provider {connection.provider!r}, "
                                f"not {request.provider!r}", {"provider": ["does not match the connection"]}, request)
        slot.cancel = threading.Event()
        log.info("request %s for %s/%s (scope %s) from %s@%d", request.request_id, connection.tenant,
                 connection.name, request.scope, msg.partition, msg.offset)
        return self._pool.submit(self._execute, request, connection, slot.cancel)

    def _refuse(self, msg: InboundMessage, reason: str, errors: Any,
                request: SyncRequest | None = None) -> None:
        log.warning("refused request at %s@%d: %s", msg.partition, msg.offset, reason)
        events = refused_request(topic=msg.topic, partition=msg.partition, offset=msg.offset, value=msg.value,
                                 reason=reason, errors=errors, now=datetime.now(timezone.utc),
                                 connection=request.connection if request else None,
                                 provider=request.provider if request else None,
                                 worker=self.settings.worker_id)
        sink = KafkaSink(self._producer, self.topics.for_type)
        for event in events:
            sink.emit(event)
        sink.flush()
        return None

    def _connection_lock(self, connection: Connection) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((connection.tenant, connection.name), threading.Lock())

    def _execute(self, request: SyncRequest, connection: Connection, cancel: threading.Event) -> RunReport:
        def should_stop() -> bool:
            return cancel.is_set() or self._abandon.is_set()

        lock = self._connection_lock(connection)
        while not lock.acquire(timeout=0.5):  # another run of this connection: wait our turn
            if should_stop():
                raise RunAbandoned(f"request {request.request_id} gave up waiting for {connection.name}")
        try:
            sink = KafkaSink(self._producer, self.topics.for_type)
            engine = SyncEngine(self.plugins, sink, status_every=self.settings.status_every,
                                worker_id=self.settings.worker_id, should_stop=should_stop)
            return engine.run(request, connection)
        finally:
            lock.release()
