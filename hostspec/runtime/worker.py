"""The Kafka worker: consume sync requests, run them, produce events, exactly once, in a fleet.

The design is Kafka Streams' task model with the parallel-consumer pattern inside each task:

* **Partition tasks.** Each assigned partition of the requests topic is a
  :class:`~hostspec.runtime.tasks.PartitionTask` that owns the co-partitioned partition of the state
  topic. On assignment its state is restored in the background (:mod:`hostspec.runtime.restore`): the
  worker holds only the state of the partitions it owns, and restoring takes time in proportion
  to that state, not to the fleet. On revocation the task stops its runs and commits, and its
  state is dropped.
* **Cooperative rebalancing** (cooperative-sticky, KIP-429): a worker joining or leaving moves
  only the partitions that change owner; syncs on the others go on untouched.
* **Home partitions.** Every connection has one home partition (murmur2 of its name over the
  state topic's partitions). Its requests run only there; one arriving elsewhere (a producer
  that keys differently, partitions added to the requests topic) is forwarded to its home in a
  transaction with its offset. One connection therefore never runs on two workers at once.
* **Parallel runs.** A thread pool of ``concurrency`` runs the requests of different
  connections at once, from any of the worker's partitions; the requests of one connection run
  one at a time, in order. A slow or failing connection occupies one thread and delays no other.
* **Fair queues** (:mod:`hostspec.runtime.fairness`). A partition holds at most ``MAX_BACKLOG`` (500)
  requests read and not ended, then it is paused; every connection whose home it is shares that.
  So one connection holds at most ``max_pending_per_connection`` (50) requests, waiting or
  running, and one tenant at most ``max_pending_per_tenant`` (250) in the partition, below its
  bound: one tenant alone never pauses it. A request beyond a cap ends at once, refused with a
  ``failed`` status of kind ``too_many_pending`` (retry later) and a dead letter keeping its raw
  value (re-drivable), committed with the poll's other endings; the partition is read on, and
  another tenant's request behind a flood is read as soon as the flood is refused. A request over
  a cap whose id already ran (read again after a take-over) ends as it did instead. When a thread
  is free, the waiting connection of the tenant with the fewest runs goes first; the connections
  of one tenant take turns.
  Leaving the excess in Kafka, to be read again when the connection has room (what
  :mod:`hostspec.transport.offsets` lets the publisher do), was the other way, not taken for requests: the
  committed offset would stay at the first request left behind for as long as the whole flood
  takes to run (a thousand runs), so a take-over in that time reads and decides the flood's tail
  again; the consumer would seek back and read that tail again each time room appears; and the
  requester would hear nothing until its request runs. Refusing answers at once (like an HTTP
  429) and leaves the offsets alone. The price: after a take-over the new owner decides afresh
  the requests it reads again from the committed offset, so a request refused by the previous
  owner may run now (its final status then follows the refusal's), and one refused again repeats
  the same events (same ids).
* **Exactly once.** A run buffers its events and writes them with its state records at each
  checkpoint in one Kafka transaction that also commits the task's lowest unfinished offset
  with the current group metadata (:mod:`hostspec.transport.transactions`): a worker that lost
  the partition, or was evicted from the group, cannot commit anything; a new owner sees every
  committed record before it runs anything. Each request leaves a request-done marker in its
  connection's state, so one that finished before a take-over is not run again.
* **Nothing blocks a partition.** Refusals, forwards and skips of one poll are committed
  together; dead letters are size-bounded; Kafka errors that a retry cannot fix end the request
  as ``failed``; transient errors (Kafka, state, producer re-creation) retry the request with a
  capped backoff instead of dead-lettering it; a broken connections file keeps the last good
  one.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from marshmallow import ValidationError

from hostspec import events as ev
from hostspec.ops import metrics
from hostspec.runtime.coalescing import merge
from hostspec.config.connections import ConnectionStore
from hostspec.config.sources import ConnectionSource
from hostspec.runtime.dead_letters import MAX_ID_CHARS, refused_request, skipped_request
from hostspec.engine.emit import REQUEST_DONE
from hostspec.engine.report import RunReport
from hostspec.engine.run import DEFAULT_LOOKBACK, SyncEngine
from hostspec.requests import SyncRequest
from hostspec.errors import (
    DeliveryError,
    HostError,
    PermanentDeliveryError,
    RunAbandoned,
    TransportError,
    UnknownConnectionError,
)
from hostspec.runtime.fairness import (
    DEFAULT_PER_CONNECTION,
    DEFAULT_PER_TENANT,
    TOO_MANY_PENDING,
    Admission,
    Overflow,
    PendingCaps,
    held_requests,
    next_turn,
)
from hostspec.ops.logs import log_context
from hostspec.engine.plugins import HostPluginManager
from hostspec.config.policy import SettingsPolicy
from hostspec.provider import Connection
from hostspec.runtime.ratebudget import AccountBudgets, RunCalls
from hostspec.config.reloading import ReloadingFile
from hostspec.runtime.restore import Restorer
from hostspec.runtime.tasks import READY, PartitionTask, Pending, Running, home_partition
from hostspec.topics import Topics
from hostspec.transport.cloudevents import STRUCTURED
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.kafka import InboundMessage, Partition, RequestConsumer, ensure_topics
from hostspec.transport.signals import RateSignals
from hostspec.transport.transactions import (
    OutRecord,
    ProducerBroken,
    ProducerPool,
    TransactionalSink,
    commit_fenced,
)

log = logging.getLogger(__name__)
MAX_BACKLOG = 500          # requests read and not yet ended, per partition, before it is paused


@dataclass(frozen=True)
class WorkerSettings:
    group_id: str = "connector-host"
    concurrency: int = 4             # runs at once in this process, across all its partitions
    session_timeout_ms: int = 45_000
    max_poll_interval_ms: int = 300_000
    grace_s: float = 30.0            # on shutdown, how long running syncs may finish
    retry_backoff_s: float = 1.0     # first wait before re-running a request that hit a transient error ...
    retry_backoff_max_s: float = 60.0  # ... doubling up to this
    status_every: int = 5_000        # a "progress" status every that many records
    batch_size: int = 5_000          # records per transaction
    batch_seconds: float = 10.0      # ... or this long, whichever comes first
    transaction_timeout_ms: int = 15_000
    lookback_s: float = DEFAULT_LOOKBACK.total_seconds()
    request_memory_s: float = 7 * 86_400   # how long request ids are remembered (the requests topic's retention)
    coalesce: bool = True            # requests waiting behind a running one merge into one run
    max_pending_per_connection: int = DEFAULT_PER_CONNECTION   # requests held per connection, ...
    max_pending_per_tenant: int = DEFAULT_PER_TENANT           # ... and per tenant in a partition; more: refused
    state_dir: str | None = None     # local state databases, one per owned partition (default: a temporary folder)
    static_membership: bool = False  # join as a static group member named worker_id
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


@dataclass(frozen=True)
class Refusal:
    """Why a request message will not run (it goes to the dead-letter topic)."""

    reason: str
    errors: Any
    request: SyncRequest | None = None
    unknown_connection: bool = False
    tenant: str | None = None     # whose request it is, when the connection it names says so


def admit(value: bytes | None, connections: ConnectionStore,
          plugins: HostPluginManager) -> tuple[SyncRequest, Connection] | Refusal:
    """The request and its connection, or why not. Never raises on bad input.

    A refusal names only what the request itself names and the connection's own settings: it
    becomes the requester's status and dead letter (never a list of other connections)."""
    try:
        event = ev.parse_event(value or b"", expected_type=ev.SYNC_REQUESTED)
    except ValidationError as exc:
        return Refusal("malformed sync request", exc.messages)
    except RecursionError:
        return Refusal("malformed sync request", {"_schema": ["nested too deeply"]})
    request = SyncRequest.from_event(event)
    if len(request.request_id) > MAX_ID_CHARS:
        return Refusal(f"request id longer than {MAX_ID_CHARS} characters", {"id": ["too long"]})
    try:
        plugins.provider(request.provider)  # unknown provider: name the installed ones
        connection = connections.get(request.connection, plugins)
    except HostError as exc:
        return Refusal(str(exc), {"connection": [str(exc)]}, request, isinstance(exc, UnknownConnectionError),
                       tenant=_tenant_of(connections, request.connection))
    if connection.provider != request.provider:
        return Refusal(f"connection {connection.name!r} is for provider {connection.provider!r}, "
                       f"not {request.provider!r}", {"provider": ["does not match the connection"]}, request,
                       tenant=connection.tenant)
    return request, connection


def _tenant_of(connections: ConnectionStore, name: str) -> str | None:
    """The tenant a configured (maybe invalid) connection names; None when there is no such
    connection, or it names none."""
    try:
        tenant = connections.raw(name).get("tenant")
    except HostError:
        return None
    return tenant if isinstance(tenant, str) and tenant else None


class ConnectionsFile(ReloadingFile[ConnectionStore]):
    """The connections file, re-read when it changes so operators can add connections live
    (:class:`~hostspec.config.reloading.ReloadingFile`: a broken change keeps the last good version)."""

    def __init__(self, path: str | os.PathLike[str], *, policy: SettingsPolicy | None = None):
        super().__init__(path, lambda p: ConnectionStore.from_file(p, policy=policy), what="connections file",
                         describe=lambda store: f": {len(store.names)} connections",
                         on_ok=lambda: metrics.CONNECTIONS_FILE_OK.set(1),
                         on_error=lambda: (metrics.CONNECTIONS_FILE_OK.set(0), metrics.CONNECTIONS_FILE_ERRORS.inc()))

    @property
    def source(self) -> str:
        return str(self.path)

    def store(self) -> ConnectionStore:
        """The current connections; raises :class:`HostError` only if no version ever read."""
        return self.current()

    def catch_up(self, timeout_s: float = 5) -> bool:
        """Nothing to wait for: :meth:`store` reads the file's latest version."""
        return False


@dataclass
class _Outgoing:
    """A request the main loop ends without running it: refused, forwarded, skipped, redelivered."""

    task: PartitionTask
    msg: InboundMessage
    records: list[OutRecord]
    outcome: str
    minimal: Callable[[], list[OutRecord]] | None = None   # a smaller ending if Kafka refuses ``records``


class Worker:
    def __init__(self, plugins: HostPluginManager, connections: ConnectionSource, kafka: KafkaConfig,
                 topics: Topics, settings: WorkerSettings | None = None):
        self.plugins, self.connections, self.kafka, self.topics = plugins, connections, kafka, topics
        self.settings = settings or WorkerSettings()
        self._caps = PendingCaps(self.settings.max_pending_per_connection, self.settings.max_pending_per_tenant,
                                 partition_bound=MAX_BACKLOG)
        self._stopping = threading.Event()
        self._abandon = threading.Event()
        self.duplicates = 0
        self._tasks: dict[Partition, PartitionTask] = {}
        self._tasks_lock = threading.Lock()
        self._retiring: list[PartitionTask] = []
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._consumer: RequestConsumer | None = None
        self._last_poll = 0.0
        self._producers: ProducerPool | None = None
        self._main_producers: ProducerPool | None = None
        self._restorer: Restorer | None = None
        self._budgets: AccountBudgets | None = None
        self._signals: RateSignals | None = None
        self._state_partitions = 0
        self._running = 0
        self._rotation = 0
        self._state_folder: Path | None = None
        self._temp_state_dir: Path | None = None

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
        self._state_folder = self._folder()
        try:
            txn_prefix = f"{s.group_id}.{s.worker_id}"
            self._producers = ProducerPool(self.kafka, txn_prefix, s.concurrency,
                                           transaction_timeout_ms=s.transaction_timeout_ms)
            self._main_producers = ProducerPool(self.kafka, txn_prefix + ".main", 1,
                                                transaction_timeout_ms=s.transaction_timeout_ms)
            self._consumer = RequestConsumer(
                self.kafka, self.topics.requests, s.group_id, also_known=[self.topics.state],
                on_assigned=self._on_assigned, on_revoked=self._on_revoked, on_lost=self._on_lost,
                session_timeout_ms=s.session_timeout_ms, max_poll_interval_ms=s.max_poll_interval_ms,
                group_instance_id=s.worker_id if s.static_membership else None)
            self._state_partitions = self._check_partitions()
            self._signals = RateSignals(self.kafka, self.topics.rate, s.worker_id,
                                        on_signal=lambda account, pause_s: self._call_budgets().signal(account, pause_s))
            self._budgets = AccountBudgets(self.plugins, self._state_partitions, on_throttle=self._signals.publish)
            self._restorer = Restorer(self.kafka, self.topics, s.group_id, self._state_folder,
                                      lambda task: self._events.put(("restored", task)), worker_id=s.worker_id)
            log.info("worker %s consuming %s in group %s (%d state partitions, %d runs at once, "
                     "transactions through %s)", s.worker_id, self.topics.requests, s.group_id,
                     self._state_partitions, s.concurrency, self.kafka.client)
            probe = metrics.LagProbe(self._consumer, s.group_id)
            while not self._stopping.is_set():
                messages = self._consumer.poll(200)
                self._last_poll = time.monotonic()
                self._membership_changes()
                self._take(messages)
                self._advance()
                probe()
            self._drain()
        finally:
            self._shutdown()

    def readiness(self) -> dict[str, bool]:
        """``/ready``: a group member that polled lately, every owned partition restored, connections read."""
        consumer = self._consumer
        member = consumer is not None and not self._stopping.is_set() and time.monotonic() - self._last_poll < 30
        try:
            member = member and consumer.group_metadata().generation_id >= 0   # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - not joined yet
            member = False
        with self._tasks_lock:
            restored = all(t.phase == READY for t in self._tasks.values())
        try:
            self.connections.store()
            readable = True
        except HostError:
            readable = False
        return {"kafka": member, "partitions": member and restored, "connections": readable}

    def _folder(self) -> Path:
        if self.settings.state_dir:
            folder = Path(self.settings.state_dir)
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        folder = self._temp_state_dir = Path(tempfile.mkdtemp(prefix="connector-host-state-"))
        return folder

    def _check_partitions(self) -> int:
        assert self._consumer is not None
        counts = self._consumer.partition_counts
        requests, state = counts.get(self.topics.requests, 0), counts.get(self.topics.state, 0)
        if not state or not requests:
            raise TransportError(f"topics {self.topics.requests} and {self.topics.state} have no partitions yet")
        if requests < state:
            raise TransportError(f"{self.topics.requests} has {requests} partitions and {self.topics.state} {state}: "
                                 "the requests topic needs at least as many partitions as the state topic")
        return state

    def _shutdown(self) -> None:
        s = self.settings
        if self._consumer is not None:
            self._consumer.close()    # revokes every partition: no commit can start after this
        for task in self._all_tasks():
            task.revoke()
            if task.store is not None and not task.running:
                task.store.close()    # kept for an incremental restore when this worker comes back
        if self._restorer is not None:
            self._restorer.close()
        if self._signals is not None:
            self._signals.close()
        for pool in (self._producers, self._main_producers):
            if pool is not None:
                pool.close()
        if self._temp_state_dir is not None:
            shutil.rmtree(self._temp_state_dir, ignore_errors=True)
        log.info("worker %s stopped", s.worker_id)

    def _drain(self) -> None:
        """Let running syncs finish within the grace period, commit them, abandon the rest."""
        assert self._consumer is not None
        deadline = time.monotonic() + self.settings.grace_s
        log.info("stopping: waiting up to %.0fs for %d running syncs", self.settings.grace_s, self._running)
        while self._running:
            if time.monotonic() >= deadline:
                if not self._abandon.is_set():
                    log.warning("grace period over: abandoning running syncs (their requests stay uncommitted)")
                    self._abandon.set()
                    for task in self._all_tasks():
                        for running in list(task.running.values()):
                            running.cancel.set()
                elif time.monotonic() >= deadline + 10:
                    log.warning("%d runs still blocked (in a provider call); leaving them", self._running)
                    return
            if self._consumer.group_metadata().generation_id >= 0:
                self._consumer.poll(100)  # stay a group member so the commits below are accepted
            else:                         # evicted: rejoining now would only move partitions twice
                time.sleep(0.1)
            self._membership_changes()
            self._advance()

    def _all_tasks(self) -> list[PartitionTask]:
        with self._tasks_lock:
            return list(self._tasks.values()) + list(self._retiring)

    # -- membership (callbacks on kafka-python's IO thread; the main loop applies them) ----------
    def _on_assigned(self, partitions: set[Partition]) -> None:
        """Create the tasks now, so that a revocation that follows at once finds them."""
        assert self._consumer is not None
        member_id = self._consumer.group_metadata().member_id
        created = []
        with self._tasks_lock:
            for tp in sorted(partitions):
                if tp in self._tasks:
                    continue
                state_partition = tp[1] if tp[1] < self._state_partitions else None
                task = self._tasks[tp] = PartitionTask(tp, state_partition=state_partition, member_id=member_id,
                                                       membership=self._consumer.group_metadata)
                created.append(task)
        for task in created:         # nothing is read before the restore says where to start
            self._consumer.pause(task.tp)
        self._events.put(("assigned", created))

    def _on_revoked(self, partitions: set[Partition]) -> Callable[[], bool]:
        return self._give_up(partitions, "revoked")

    def _on_lost(self, partitions: set[Partition]) -> Callable[[], bool]:
        return self._give_up(partitions, "lost")

    def _give_up(self, partitions: set[Partition], how: str) -> Callable[[], bool]:
        """Stop the partitions' runs and commits at once; the returned barrier is true once no
        commit of theirs is in flight (the consumer hands them back only then)."""
        with self._tasks_lock:
            tasks = [self._tasks.pop(tp) for tp in partitions if tp in self._tasks]
            self._retiring.extend(tasks)
        for task in tasks:       # all flags first: none of these partitions can start a commit now
            busy = len(task.running)
            task.begin_revoke()
            if busy:
                metrics.RUNS_CANCELLED.labels(how).inc(busy)
            log.info("partition %d %s%s", task.partition, how, f": {busy} running syncs abandoned" if busy else "")
        self._events.put(("revoked", partitions))
        return lambda: all(task.no_commit_in_flight() for task in tasks)

    def _membership_changes(self) -> None:
        changed = False
        while True:
            try:
                what, payload = self._events.get_nowait()
            except queue.Empty:
                break
            changed = True
            if what == "assigned":
                self._assign(payload)
            elif what == "restored":
                task = payload
                if task.revoked.is_set():
                    self._drop_state(task)
                else:
                    self._start_task(task)
        changed = self._drop_stale_tasks() or changed
        self._retire()
        if changed:
            self._log_partitions()

    def _drop_stale_tasks(self) -> bool:
        """Tasks of a previous membership: the worker was evicted and rejoined, and kafka-python
        did not always say so (a failed rejoin skips its "lost" callback). They are given up;
        the partitions the new membership owns get fresh tasks, restored again."""
        assert self._consumer is not None
        metadata = self._consumer.group_metadata()
        with self._tasks_lock:
            stale = {tp for tp, task in self._tasks.items() if task.stale(metadata)}
        if not stale:
            return False
        log.warning("worker %s rejoined its group: partitions %s of its previous membership are dropped",
                    self.settings.worker_id, sorted(p for _t, p in stale))
        barrier = self._give_up(stale, "lost")
        deadline = time.monotonic() + 60
        while not barrier() and time.monotonic() < deadline:
            time.sleep(0.02)
        still_assigned = stale & self._consumer.assignment()
        if still_assigned:
            self._on_assigned(still_assigned)
        return True

    def _assign(self, tasks: list[PartitionTask]) -> None:
        assert self._restorer is not None
        log.info("worker %s assigned partitions %s", self.settings.worker_id, [t.partition for t in tasks])
        for task in tasks:
            if not task.revoked.is_set():
                self._restorer.submit(task)

    def _start_task(self, task: PartitionTask) -> None:
        """A restored task reads its requests from the committed offset, whatever was read before."""
        assert self._consumer is not None
        task.start()
        if task.tp in self._consumer.assignment():
            self._consumer.seek(task.tp, task.start_offset)
            self._consumer.resume(task.tp)

    def _retire(self) -> None:
        """Drop the state of revoked partitions once their runs have ended."""
        for task in list(self._retiring):
            if task.running:
                continue
            self._drop_state(task)
            with self._tasks_lock:
                self._retiring.remove(task)

    def _drop_state(self, task: PartitionTask) -> None:
        """Close a revoked task's database; delete it unless the partition is ours again (same file)."""
        store, task.store = task.store, None
        if store is None:
            return
        with self._tasks_lock:
            back = task.tp in self._tasks
        store.close() if back else store.destroy()

    def _log_partitions(self) -> None:
        with self._tasks_lock:
            ready = sorted(t.partition for t in self._tasks.values() if t.phase == READY)
            owned = len(self._tasks)
        metrics.WORKER_PARTITIONS.labels("owned").set(owned)
        metrics.WORKER_PARTITIONS.labels("ready").set(len(ready))
        log.info("worker %s serves partitions %s", self.settings.worker_id, ready)
        try:
            self._call_budgets().owned(self._budget_partitions(), self.connections.store())
        except HostError:
            pass    # no usable connections file yet: no run either

    def _call_budgets(self) -> AccountBudgets:
        assert self._budgets is not None
        return self._budgets

    def _budget_partitions(self) -> set[int]:
        """The state partitions whose share of the call budgets this worker may spend."""
        with self._tasks_lock:
            return {t.state_partition for t in self._tasks.values()
                    if t.phase == READY and not t.revoked.is_set() and t.state_partition is not None}

    # -- the loop ------------------------------------------------------------------------------
    def _take(self, messages: list[InboundMessage]) -> None:
        assert self._consumer is not None
        for msg in messages:
            with self._tasks_lock:
                task = self._tasks.get(msg.tp)
            if task is None or task.revoked.is_set() or task.phase != READY:
                continue    # given up meanwhile (its new owner reads it again), or read again once restored
            if not task.fetched(msg.offset):
                continue    # read before (handed over twice): handled once
            task.backlog.append(msg)
            if task.unfinished >= MAX_BACKLOG and not task.paused:   # read, not yet ended: bounded
                self._consumer.pause(msg.tp)
                task.paused = True

    def _advance(self) -> None:
        assert self._consumer is not None
        tasks = [t for t in self._all_tasks()]
        for task in tasks:
            for name, running in list(task.running.items()):
                if running.future.done():
                    self._finish(task, name)
        outgoing: list[_Outgoing] = []
        now = time.monotonic()
        for task in tasks:
            if task.phase == READY and not task.revoked.is_set() and now >= task.not_before:
                self._admit(task, outgoing)
        if not self._stopping.is_set():
            self._dispatch(outgoing)
        if outgoing:
            self._end(outgoing)
        for task in tasks:
            if task.paused and task.unfinished < MAX_BACKLOG // 2 and not task.revoked.is_set():
                if task.tp in self._consumer.assignment():
                    self._consumer.resume(task.tp)
                task.paused = False

    def _admit(self, task: PartitionTask, outgoing: list[_Outgoing]) -> None:
        """Sort the task's new requests: refused, forwarded to their home, or queued per connection."""
        try:
            store = self.connections.store()
        except HostError as exc:   # never read successfully: wait for the file, refuse nothing
            log.error("no usable connections file (%s); requests wait", exc)
            task.not_before = time.monotonic() + 5
            return
        self._call_budgets().refresh(store)    # an edit of the connections re-splits the call budgets
        caps = Admission(self._caps, held_requests(task.waiting, task.running))
        caught_up = False
        while task.backlog:
            msg = task.backlog.popleft()
            admitted = admit(msg.value, store, self.plugins)
            if isinstance(admitted, Refusal) and admitted.unknown_connection and not caught_up:
                caught_up = True       # once per batch: a connection created a moment ago may be on its way
                if self.connections.catch_up():
                    store = self.connections.store()
                    admitted = admit(msg.value, store, self.plugins)
            if isinstance(admitted, Refusal):
                outgoing.append(self._refusal(task, msg, admitted.reason, admitted.errors, admitted.request,
                                              tenant=admitted.tenant))
                continue
            request, connection = admitted
            request = replace(request, origin=f"{msg.topic}:{msg.partition}:{msg.offset}")
            home = home_partition(connection.name, self._state_partitions)
            if home != task.partition:
                log.info("request %s for %s at %d@%d forwarded to its home partition %d", request.request_id,
                         connection.name, msg.partition, msg.offset, home)
                outgoing.append(_Outgoing(task, msg, [OutRecord(self.topics.requests, home, msg.key or
                                                                connection.name.encode(), msg.value, STRUCTURED)],
                                          "forwarded"))
                continue
            pending = Pending(msg, request, connection)
            overflow = caps.take(connection.tenant, connection.name)
            if overflow is not None:    # ended now, so the partition is read on (fairness.py)
                outgoing.append(self._already_ran(task, pending) or self._too_many(task, pending, overflow))
                continue
            task.waiting.setdefault(connection.name, deque()).append(pending)

    def _too_many(self, task: PartitionTask, pending: Pending, overflow: Overflow) -> _Outgoing:
        """A request beyond a cap of pending requests (and not read again after a take-over: those
        end as they did before): refused, ``too_many_pending``, to be sent again later."""
        connection = pending.connection
        refusal = self._refusal(task, pending.msg, overflow.reason, overflow.errors, pending.request,
                                kind=TOO_MANY_PENDING, tenant=connection.tenant)
        return replace(refusal, outcome=TOO_MANY_PENDING)

    def _dispatch(self, outgoing: list[_Outgoing]) -> None:
        """Start runs while threads are free: round robin over partitions, in order per connection."""
        ready = [t for t in self._all_tasks() if t.phase == READY and t.serves_runs and not t.revoked.is_set()]
        if not ready:
            return
        self._rotation = (self._rotation + 1) % len(ready)
        ready = ready[self._rotation:] + ready[:self._rotation]
        now = time.monotonic()
        progress = True
        while progress and self._running < self.settings.concurrency:
            progress = False
            for task in ready:
                if self._running >= self.settings.concurrency:
                    break
                candidates = [(name, queue_[0].connection.tenant) for name, queue_ in task.waiting.items()
                              if name not in task.running and queue_ and queue_[0].not_before <= now
                              and not queue_[0].reading_back]
                if not candidates:
                    continue
                busy = Counter(r.pending.connection.tenant for t in self._all_tasks() for r in t.running.values())
                name = next_turn(candidates, busy)     # the least busy tenant first (fairness.py)
                queue_ = task.waiting.pop(name)
                try:
                    self._take_turn(task, queue_, outgoing)
                finally:
                    if queue_:
                        task.waiting[name] = queue_  # back in line, behind the other connections
                progress = True

    def _take_turn(self, task: PartitionTask, queue_: deque[Pending], outgoing: list[_Outgoing]) -> None:
        """The connection's next request: ended at once if it already ran, else started with the
        requests waiting behind it merged in."""
        pending = queue_.popleft()
        if not self._still_configured(task, pending, outgoing):
            queue_.extendleft(reversed(pending.separate()))
            return
        ended = self._already_ran(task, pending)
        if ended is None:
            self._coalesce(task, pending, queue_, outgoing)
            self._start(task, pending)
            return
        outgoing.append(ended)
        # a merged run that ended unknown to this worker: each request it answered is looked up alone
        queue_.extendleft(reversed(pending.separate()))

    def _coalesce(self, task: PartitionTask, head: Pending, queue_: deque[Pending],
                  outgoing: list[_Outgoing]) -> None:
        """Merge the requests waiting behind ``head`` into its run, in order, while one request
        can say their union (:func:`hostspec.runtime.coalescing.merge`). Each keeps its own final status,
        request-done marker and offset, all committed by the run's last transaction."""
        while self.settings.coalesce and queue_:
            later = queue_[0]
            if later.reading_back or later.request.request_id in {head.request.request_id,
                                                                   *(i for i, _o, _s in head.request.merged)}:
                break   # the same id again waits: the run's marker makes it a duplicate
            ended = self._already_ran(task, later)
            if ended is not None:
                queue_.popleft()
                outgoing.append(ended)
                continue
            merged = merge(head.request, later.request)
            if merged is None:
                break
            queue_.popleft()
            log.info("request %s for %s merged into the run of request %s", later.request.request_id,
                     later.connection.name, head.request.request_id)
            metrics.REQUESTS.labels("merged").inc()
            head.absorb(later, merged)

    def _still_configured(self, task: PartitionTask, pending: Pending, outgoing: list[_Outgoing]) -> bool:
        """Take the connection's current version (a secret reference changed since the request
        arrived is used now); a connection deleted meanwhile ends the request refused, with its status."""
        try:
            current = self.connections.store().get(pending.connection.name, self.plugins)
        except HostError as exc:
            outgoing.append(self._refusal(task, pending.msg, f"{exc} (changed after the request arrived)",
                                          {"connection": [str(exc)]}, pending.request,
                                          tenant=pending.connection.tenant))
            return False
        if current.provider != pending.connection.provider:
            outgoing.append(self._refusal(task, pending.msg, f"connection {current.name!r} is now for provider "
                                          f"{current.provider!r}", {"provider": ["changed"]}, pending.request,
                                          tenant=pending.connection.tenant))
            return False
        pending.connection = current
        return True

    def _already_ran(self, task: PartitionTask, pending: Pending) -> _Outgoing | None:
        """A request whose id already ran: read again after a take-over (silently ended) or a duplicate."""
        request, connection = pending.request, pending.connection
        assert task.store is not None
        marker = task.store.checkpoint(connection.state_scope, f"{REQUEST_DONE}{request.request_id}")
        if marker is None:
            return None
        if isinstance(marker, dict) and marker.get("origin") == request.origin:
            log.info("request %s at %d@%d already ended (%s) before this worker took the partition over",
                     request.request_id, pending.msg.partition, pending.msg.offset, marker.get("outcome", "?"))
            return _Outgoing(task, pending.msg, [], "redelivered")
        if isinstance(marker, dict) and marker.get("outcome") == "failed":
            return None     # the same id published again after a failure: it may run again
        ended_at = marker.get("ended_at") if isinstance(marker, dict) else marker
        reason = f"request {request.request_id} already ran for {connection.name} ({ended_at}): skipped"
        log.info("%s", reason)
        self.duplicates += 1
        event = skipped_request(request.request_id, tenant=connection.tenant, connection=connection.name,
                                provider=connection.provider, scope=request.scope, reason=reason,
                                now=datetime.now(timezone.utc), worker=self.settings.worker_id)
        return _Outgoing(task, pending.msg, [self._record(event)], "duplicate")

    def _start(self, task: PartitionTask, pending: Pending) -> None:
        request, connection = pending.request, pending.connection
        running = Running(pending, Future())
        if pending.attempts == 0:
            metrics.REQUESTS.labels("accepted").inc()
        log.info("request %s for %s/%s (scope %s) from %s@%d%s", request.request_id, connection.tenant,
                 connection.name, request.scope, pending.msg.partition, pending.msg.offset,
                 f", attempt {pending.attempts + 1}" if pending.attempts else "")
        task.started(connection.name, running)
        self._running += 1
        thread = threading.Thread(target=self._execute, args=(task, running), daemon=True,
                                  name=f"sync-{connection.name}"[:40])
        thread.start()

    def _finish(self, task: PartitionTask, name: str) -> None:
        running = task.ended(name)
        self._running -= 1
        pending, future = running.pending, running.future
        msg = pending.msg
        try:
            report = future.result()
        except RunAbandoned as exc:
            if task.revoked.is_set() or self._stopping.is_set():
                log.info("request at %d@%d abandoned: %s", msg.partition, msg.offset, exc)
            else:
                self._retry(task, pending, f"abandoned: {exc}")
            return
        except PermanentDeliveryError as exc:
            log.error("events of request at %d@%d refused by Kafka for good (%s): the request fails",
                      msg.partition, msg.offset, exc)
            self._end([self._refusal(task, m, f"Kafka refused the run's events: {exc}", None, pending.request,
                                     stage="delivery", kind="delivery", tenant=pending.connection.tenant)
                       for m in pending.messages])
            return
        except (DeliveryError, TransportError, sqlite3.Error) as exc:
            self._retry(task, pending, f"{type(exc).__name__}: {exc}", read_back=True)
            return
        except Exception as exc:  # a bug: dead-letter the request rather than loop on it
            log.error("request at %d@%d crashed the run", msg.partition, msg.offset, exc_info=exc)
            self._end([self._refusal(task, m, f"the worker failed on this request: {type(exc).__name__}",
                                     None, pending.request, tenant=pending.connection.tenant)
                       for m in pending.messages])
            return
        c = report.counts
        log.info("run %s of %s %s: %d courses, %d stats (%d unchanged), %d removed, %d rejected in %.1fs",
                 report.run_id, report.connection, report.outcome, c.courses_emitted, c.stats_emitted,
                 c.stats_unchanged, c.courses_removed, c.rejected, report.duration_s)

    def _retry(self, task: PartitionTask, pending: Pending, why: str, *, read_back: bool = False) -> None:
        """Run the request again later, before the connection's other requests.

        ``read_back``: a transaction of the run may have committed without this worker knowing
        it (a broker outage, a fenced producer): the connection's state is read back from the
        changelog before the request runs again, so nothing committed is emitted twice.
        """
        s = self.settings
        pending.attempts += 1
        if read_back and task.store is not None and self._restorer is not None:
            pending.reading_back = True

            def done() -> None:
                pending.reading_back = False

            self._restorer.read_back(task, pending.connection.state_scope, done)
        wait = min(s.retry_backoff_max_s, s.retry_backoff_s * 2 ** min(pending.attempts - 1, 16))
        pending.not_before = time.monotonic() + wait
        metrics.REQUESTS.labels("retried").inc()
        log.warning("request at %d@%d not completed (%s); running it again in %.0fs", pending.msg.partition,
                    pending.msg.offset, why, wait)
        if not task.revoked.is_set():
            task.waiting.setdefault(pending.connection.name, deque()).appendleft(pending)

    # -- ending requests without a run ---------------------------------------------------------
    def _record(self, event: ev.Event) -> OutRecord:
        return OutRecord(self.topics.for_type(event.type), None, event.key.encode("utf-8"),
                         event.to_json().encode("utf-8"), STRUCTURED)

    def _refusal(self, task: PartitionTask, msg: InboundMessage, reason: str, errors: Any,
                 request: SyncRequest | None = None, *, stage: str = "request",
                 kind: str = "invalid_request", tenant: str | None = None) -> _Outgoing:
        """End a request refused: its dead letter and failed status (with ``tenant``, the
        connection's, when known), and a log line bound to the request like a run's lines."""
        with log_context(request_id=request.request_id if request else None,
                         connection=request.connection if request else None, tenant=tenant,
                         provider=request.provider if request else None):
            log.warning("refused request at %d@%d: %s", msg.partition, msg.offset, reason)

        def events(value: bytes | None, errors: Any) -> list[OutRecord]:
            return [self._record(e) for e in refused_request(
                topic=msg.topic, partition=msg.partition, offset=msg.offset, value=value, reason=reason,
                errors=errors, now=datetime.now(timezone.utc), connection=request.connection if request else None,
                provider=request.provider if request else None, tenant=tenant, worker=self.settings.worker_id,
                stage=stage, kind=kind)]

        return _Outgoing(task, msg, events(msg.value, errors), "refused", minimal=lambda: events(None, None))

    def _end(self, outgoing: list[_Outgoing]) -> None:
        """Commit the endings of requests that did not run, one transaction per partition.

        One partition's failure never touches another's endings: a revoked one is dropped (its
        new owner reads them again), a transient failure puts them back in that partition's
        backlog. Endings Kafka refuses for good are replaced by minimal dead letters, and those
        (should Kafka refuse them too) by the offsets alone, so a partition always moves on.
        """
        by_task: dict[int, list[_Outgoing]] = {}
        for o in outgoing:
            if not o.task.revoked.is_set():
                by_task.setdefault(id(o.task), []).append(o)
        for endings in by_task.values():
            self._end_partition(endings)

    def _end_partition(self, endings: list[_Outgoing]) -> None:
        assert self._main_producers is not None
        slot, producer, broken = None, None, False
        try:
            slot, producer = self._main_producers.take()
            for attempt in ("whole", "minimal", "offsets only"):
                try:
                    self._commit_endings(producer, endings, attempt)
                    return
                except PermanentDeliveryError as exc:
                    log.error("endings of %d requests refused by Kafka (%s, %s); trying again with less",
                              len(endings), exc, attempt)
            raise DeliveryError("even the offsets alone were refused")
        except RunAbandoned:
            pass    # the partition moved on: its new owner reads these requests again
        except (DeliveryError, TransportError) as exc:
            broken = isinstance(exc, ProducerBroken)
            self._requeue(endings, f"{type(exc).__name__}: {exc}")
        finally:
            if slot is not None:
                self._main_producers.give_back(slot, producer, broken=broken)

    def _commit_endings(self, producer: Any, endings: list[_Outgoing], attempt: str) -> None:
        records: list[OutRecord] = []
        for o in endings:
            if attempt == "whole":
                records.extend(o.records)
            elif attempt == "minimal":
                records.extend(o.minimal() if o.minimal else o.records)
        task = endings[0].task
        commit_fenced(producer, [task], records, finishing={task.tp: [o.msg.offset for o in endings]})
        task.failures = 0
        for o in endings:
            metrics.REQUESTS.labels(o.outcome).inc()

    def _requeue(self, endings: list[_Outgoing], why: str) -> None:
        task = endings[0].task
        task.failures += 1
        wait = min(self.settings.retry_backoff_max_s, self.settings.retry_backoff_s * 2 ** min(task.failures, 16))
        log.warning("%d requests of partition %d not ended (%s); trying again in %.0fs", len(endings),
                    task.partition, why, wait)
        for o in sorted(endings, key=lambda o: o.msg.offset, reverse=True):
            task.backlog.appendleft(o.msg)
        task.not_before = time.monotonic() + wait

    # -- one run (in its own thread) -----------------------------------------------------------
    def _execute(self, task: PartitionTask, running: Running) -> None:
        try:
            running.future.set_result(self._run(task, running))
        except BaseException as exc:
            running.future.set_exception(exc)

    def _run(self, task: PartitionTask, running: Running) -> RunReport:
        s = self.settings
        request, connection = running.pending.request, running.pending.connection

        def should_stop() -> bool:
            return running.cancel.is_set() or self._abandon.is_set() or not task.still_ours()

        assert self._producers is not None and task.store is not None
        slot, producer = self._producers.take()
        scope = connection.state_scope
        sink = TransactionalSink(producer, self.topics.for_type, self.topics.state, task,
                                 finishing=[m.offset for m in running.pending.messages],
                                 max_record_bytes=self.kafka.max_request_bytes,
                                 should_stop=should_stop, on_state_written=lambda end: task.state_written(scope, end))
        budgets = self._call_budgets()    # its partitions are kept by the main loop (_log_partitions)

        def calls(c: Connection) -> RunCalls | None:
            gate = budgets.gate(c, self.connections.store())
            return RunCalls(gate, should_stop) if gate is not None else None

        try:
            engine = SyncEngine(self.plugins, sink, state=task.store, batch_size=s.batch_size,
                                batch_seconds=s.batch_seconds, lookback=timedelta(seconds=s.lookback_s),
                                status_every=s.status_every, worker_id=s.worker_id, should_stop=should_stop,
                                request_memory=timedelta(seconds=s.request_memory_s), calls=calls)
            try:
                return engine.run(request, connection)
            except BaseException as exc:
                sink.abort()
                if isinstance(exc, RunAbandoned) and not running.cancel.is_set() and not task.revoked.is_set():
                    metrics.RUNS_CANCELLED.labels("evicted").inc()   # noticed before the group told the loop
                raise
        finally:
            self._producers.give_back(slot, producer, broken=sink.broken)


__all__ = ["ConnectionSource", "ConnectionsFile", "Refusal", "Worker", "WorkerSettings", "admit"]
