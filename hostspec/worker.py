"""The Kafka worker: consume sync requests, run them, produce events, exactly once.

How a long sync never gets the worker thrown out of its group, nor blocks other partitions:
the poll loop runs in the main thread and never waits for a sync. A request is handed to a
thread pool and its partition is *paused*, so the loop keeps calling ``poll()`` (the consumer
stays a live group member however long the sync takes) and keeps serving the other partitions.
When the run ends, every event it produced has been flushed and acknowledged (acks=all,
idempotent producer); only then does the loop commit the request's offset + 1 and resume the
partition. Requests of one partition therefore run in order; different partitions run in
parallel, up to ``concurrency``. Two runs of the same connection never overlap: a
per-connection lock queues the later request until the earlier one ends.

Exactly once: a run is a series of Kafka transactions (one per engine checkpoint). Each carries
the batch's events, the batch's state records (fingerprints, cursors) on the compacted state
topic and, for the last one, the request's consumer offset. ``read_committed`` consumers see a
batch entirely or not at all. A worker that dies, or loses the partition, leaves the request
uncommitted; the next owner first reads the state topic (so it knows every committed
fingerprint), runs the request again, resumes at the last committed page and skips entities
already delivered: no event is lost and none is delivered twice.
A request that cannot be run (malformed, unknown provider or connection) goes to the dead-letter
topic with its raw bytes and origin, a ``failed`` status is published when its id is readable,
its offset is committed in the same transaction, and the worker carries on.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
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
from . import metrics
from .connections import ConnectionStore
from .dead_letters import refused_request, skipped_request
from .engine import DEFAULT_LOOKBACK, REQUEST_DONE, RunReport, SyncEngine, SyncRequest
from .errors import DeliveryError, HostError, RunAbandoned
from .plugins import HostPluginManager
from .provider import Connection
from .state import SEP, StateDB, apply_changelog
from .topics import Topics
from .transport.config import KafkaConfig, topic_specs
from .transport.kafka import (InboundMessage, Partition, ProducerPool, RequestConsumer, StateChangelog,
                              TransactionalSink, ensure_topics)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerSettings:
    group_id: str = "connector-host"
    concurrency: int = 1             # syncs at once in this process; scale with processes (see BENCHMARKS.md)
    session_timeout_ms: int = 45_000
    grace_s: float = 30.0            # on shutdown, how long running syncs may finish
    retry_backoff_s: float = 5.0     # wait before re-running a request whose events were not delivered
    status_every: int = 5_000        # a "progress" status every that many records
    batch_size: int = 5_000          # records per transaction
    batch_seconds: float = 10.0      # ... or this long, whichever comes first
    transaction_timeout_ms: int = 60_000
    lookback_s: float = DEFAULT_LOOKBACK.total_seconds()
    state_dir: str | None = None     # local state database (rebuilt from the state topic at start)
    static_membership: bool = False  # join as a static group member named worker_id
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


@dataclass(frozen=True)
class Refusal:
    """Why a request message will not run (it goes to the dead-letter topic)."""

    reason: str
    errors: Any
    request: SyncRequest | None = None


def admit(value: bytes | None, connections: ConnectionStore,
          plugins: HostPluginManager) -> tuple[SyncRequest, Connection] | Refusal:
    """The request and its connection, or why not. Never raises on bad input."""
    try:
        event = ev.parse_event(value or b"", expected_type=ev.SYNC_REQUESTED)
    except ValidationError as exc:
        return Refusal("malformed sync request", exc.messages)
    request = SyncRequest.from_event(event)
    try:
        plugins.provider(request.provider)  # unknown provider: name the installed ones
        connection = connections.get(request.connection, plugins)
    except HostError as exc:
        return Refusal(str(exc), {"connection": [str(exc)]}, request)
    if connection.provider != request.provider:
        return Refusal(f"connection {connection.name!r} is for provider {connection.provider!r}, "
                       f"not {request.provider!r}", {"provider": ["does not match the connection"]}, request)
    return request, connection


class _AlreadyRan(Exception):
    """The request's id ran before (its offset is committed, nothing else happens)."""


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
        self.duplicates = 0
        self._slots: dict[Partition, _Slot] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._active_scopes: set[str] = set()
        self._consumer: RequestConsumer | None = None
        self._producers: ProducerPool | None = None
        self._main_producers: ProducerPool | None = None
        self._changelog: StateChangelog | None = None
        self.state: StateDB | None = None
        self._temp_state_dir: Path | None = None
        self._pool: ThreadPoolExecutor | None = None

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop taking requests; running syncs get ``grace_s`` to finish (see :meth:`run`)."""
        self._stopping.set()

    def run(self) -> None:
        s = self.settings
        ensure_topics(self.kafka, topic_specs(self.topics))
        self._open_state()
        txn_prefix = f"{s.group_id}.{s.worker_id}"
        self._producers = ProducerPool(self.kafka, txn_prefix, s.concurrency,
                                       transaction_timeout_ms=s.transaction_timeout_ms)
        self._main_producers = ProducerPool(self.kafka, txn_prefix + ".main", 1,
                                            transaction_timeout_ms=s.transaction_timeout_ms)
        self._consumer = RequestConsumer(self.kafka, self.topics.requests, s.group_id,
                                         on_assigned=self._assigned, on_revoked=self._revoked,
                                         session_timeout_ms=s.session_timeout_ms,
                                         group_instance_id=s.worker_id if s.static_membership else None)
        self._pool = ThreadPoolExecutor(s.concurrency, thread_name_prefix="sync")
        log.info("worker %s consuming %s in group %s", s.worker_id, self.topics.requests, s.group_id)
        probe = metrics.LagProbe(self._consumer, s.group_id)
        try:
            while not self._stopping.is_set():
                self._take(self._consumer.poll(200))
                self._advance()
                probe()
            self._drain()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._producers.close()
            self._main_producers.close()
            self._consumer.close()
            self._changelog.close()  # type: ignore[union-attr]
            self.state.close()  # type: ignore[union-attr]
            if self._temp_state_dir is not None:
                shutil.rmtree(self._temp_state_dir, ignore_errors=True)
            log.info("worker %s stopped", s.worker_id)

    def _open_state(self) -> None:
        """A fresh local database, rebuilt from the compacted state topic."""
        if self.settings.state_dir:
            folder = Path(self.settings.state_dir)
        else:
            folder = self._temp_state_dir = Path(tempfile.mkdtemp(prefix="connector-host-state-"))
        path = folder / f"state-{self.settings.worker_id}.sqlite"
        for stale in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        self.state = StateDB(path)
        self._changelog = StateChangelog(self.kafka, self.topics.state)
        started = time.monotonic()
        n = self._changelog.catch_up(lambda records: apply_changelog(self.state, records))  # type: ignore[arg-type]
        log.info("state rebuilt from %s: %d records, %d entities in %.1fs", self.topics.state, n,
                 self.state.count(), time.monotonic() - started)

    def _catch_up(self, own_scope: str) -> None:
        """Apply state records written since the last read, e.g. by a worker that died.

        Records of scopes that another run of this process holds are skipped: that run is their
        only writer and its commits are already in the local database.
        """
        with self._locks_guard:
            busy = self._active_scopes - {own_scope}

        def apply(records: list[tuple[str, bytes | None]]) -> None:
            apply_changelog(self.state, [(k, v) for k, v in records if k.split(SEP)[1] not in busy])  # type: ignore[arg-type]

        self._changelog.catch_up(apply)  # type: ignore[union-attr]

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
                if future is not None:  # None: refused, its offset committed with the dead letter
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
        except _AlreadyRan as exc:
            log.info("%s", exc)
            self.duplicates += 1
            metrics.REQUESTS.labels("duplicate").inc()
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
        else:  # its offset was committed in the run's last transaction
            c = report.counts
            log.info("run %s of %s %s: %d courses, %d stats (%d unchanged), %d removed, %d rejected in %.1fs",
                     report.run_id, report.connection, report.outcome, c.courses_emitted, c.stats_emitted,
                     c.stats_unchanged, c.courses_removed, c.rejected, report.duration_s)

    # -- one request ---------------------------------------------------------------------------
    def _dispatch(self, msg: InboundMessage, slot: _Slot) -> Future[RunReport] | None:
        """Start the request's run, or dead-letter it and return None."""
        assert self._pool is not None
        try:
            store = self.connections.store()
        except HostError as exc:  # the connections file broke while running: refuse, do not crash
            return self._refuse(msg, str(exc), {"connections": [str(exc)]})
        admitted = admit(msg.value, store, self.plugins)
        if isinstance(admitted, Refusal):
            return self._refuse(msg, admitted.reason, admitted.errors, admitted.request)
        request, connection = admitted
        slot.cancel = threading.Event()
        metrics.REQUESTS.labels("accepted").inc()
        log.info("request %s for %s/%s (scope %s) from %s@%d", request.request_id, connection.tenant,
                 connection.name, request.scope, msg.partition, msg.offset)
        offset = (msg.tp, msg.offset + 1)
        return self._pool.submit(self._execute, request, connection, slot.cancel, offset,
                                 self._consumer.group_metadata())  # type: ignore[union-attr]

    def _refuse(self, msg: InboundMessage, reason: str, errors: Any,
                request: SyncRequest | None = None) -> None:
        log.warning("refused request at %s@%d: %s", msg.partition, msg.offset, reason)
        metrics.REQUESTS.labels("refused").inc()
        events = refused_request(topic=msg.topic, partition=msg.partition, offset=msg.offset, value=msg.value,
                                 reason=reason, errors=errors, now=datetime.now(timezone.utc),
                                 connection=request.connection if request else None,
                                 provider=request.provider if request else None,
                                 worker=self.settings.worker_id)
        assert self._main_producers is not None and self._consumer is not None
        slot_no, producer = self._main_producers.take()
        sink = TransactionalSink(producer, self.topics.for_type, self.topics.state, (msg.tp, msg.offset + 1),
                                 self._consumer.group_metadata())
        try:
            for event in events:
                sink.emit(event)
            sink.checkpoint([], final=True)
        finally:
            self._main_producers.give_back(slot_no, producer, broken=sink.broken)
        return None

    def _connection_lock(self, connection: Connection) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((connection.tenant, connection.name), threading.Lock())

    def _execute(self, request: SyncRequest, connection: Connection, cancel: threading.Event,
                 offset: tuple[Partition, int], group_metadata: Any) -> RunReport:
        from datetime import timedelta

        def should_stop() -> bool:
            return cancel.is_set() or self._abandon.is_set()

        s = self.settings
        scope = f"{connection.tenant}/{connection.name}"
        lock = self._connection_lock(connection)
        while not lock.acquire(timeout=0.5):  # another run of this connection: wait our turn
            if should_stop():
                raise RunAbandoned(f"request {request.request_id} gave up waiting for {connection.name}")
        assert self._producers is not None
        slot_no, producer = self._producers.take()
        sink = TransactionalSink(producer, self.topics.for_type, self.topics.state, offset, group_metadata)
        try:
            with self._locks_guard:
                self._active_scopes.add(scope)
            self._catch_up(scope)
            done_at = self.state.checkpoint(scope, f"{REQUEST_DONE}{request.request_id}")
            if done_at is not None:  # commit its offset with a "skipped" status, nothing else
                reason = f"request {request.request_id} already ran for {connection.name} ({done_at}): skipped"
                sink.emit(skipped_request(request.request_id, tenant=connection.tenant, connection=connection.name,
                                          provider=connection.provider, scope=request.scope, reason=reason,
                                          now=datetime.now(timezone.utc), worker=s.worker_id))
                sink.checkpoint([], final=True)
                raise _AlreadyRan(reason)
            engine = SyncEngine(self.plugins, sink, state=self.state, batch_size=s.batch_size,
                                batch_seconds=s.batch_seconds, lookback=timedelta(seconds=s.lookback_s),
                                status_every=s.status_every, worker_id=s.worker_id, should_stop=should_stop)
            try:
                return engine.run(request, connection)
            except (RunAbandoned, DeliveryError):
                sink.abort()
                raise
        finally:
            with self._locks_guard:
                self._active_scopes.discard(scope)
            self._producers.give_back(slot_no, producer, broken=sink.broken)
            lock.release()
