"""The runner: one request's run in its own thread, and what its end means for the request.

* **Transactions.** A run writes its events and state records at each checkpoint in one Kafka
  transaction with its partition's lowest unfinished offset
  (:class:`~hostspec.transport.transactional_sink.TransactionalSink`), fenced by its task
  (:class:`~hostspec.runtime.tasks.PartitionTask`); it stops when its partition is no longer this
  worker's, or the worker abandons its runs.
* **Outcomes.** How a run that raised ends its request is one table, :data:`OUTCOMES`: exception
  type (its nearest class in the table) → an :class:`Outcome`. Transient errors (Kafka, state,
  producer re-creation) retry the request with a capped backoff, before the connection's other
  requests, instead of dead-lettering it; Kafka errors that a retry cannot fix, and bugs, end it
  as ``failed`` (dead letter and status, committed with the poll's other endings); a run
  abandoned because its partition moved or the worker stops leaves its request uncommitted, for
  the next owner (abandoned otherwise, e.g. on noticing an eviction first, it runs again).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from hostspec.engine.plugins import HostPluginManager
from hostspec.engine.report import RunReport
from hostspec.engine.run import SyncEngine
from hostspec.errors import DeliveryError, PermanentDeliveryError, RunAbandoned, TransportError
from hostspec.ops import metrics
from hostspec.provider import Connection
from hostspec.runtime.endings import Endings
from hostspec.runtime.ratebudget import RunCalls
from hostspec.runtime.resources import Resources
from hostspec.runtime.settings import WorkerSettings
from hostspec.config.sources import ConnectionSource
from hostspec.runtime.tasks import PartitionTask, Pending, Running
from hostspec.topics import Topics
from hostspec.transport.config import KafkaConfig
from hostspec.transport.consumers import InboundMessage
from hostspec.transport.transactional_sink import TransactionalSink

log = logging.getLogger("hostspec.runtime.worker")   # the worker's lines, whichever part says them


@dataclass(frozen=True)
class Outcome:
    """What a run that raised does with its request (and the requests merged into it)."""

    retry: bool        # run it again later; else it fails: a dead letter and a failed status, committed
    why: Callable[[BaseException], str]   # the retry's reason, or the refusal's
    read_back: bool = False     # a transaction may have committed unknown to the worker: re-read the state first
    left_if_given_up: bool = False   # partition revoked or worker stopping: left uncommitted for the next owner
    stage: str = "request"      # the dead letter's stage, and the failed status's error kind
    kind: str = "invalid_request"
    says: Callable[[InboundMessage, BaseException], None] | None = None   # the line logged before it fails


def _refused_for_good(msg: InboundMessage, exc: BaseException) -> None:
    log.error("events of request at %d@%d refused by Kafka for good (%s): the request fails",
              msg.partition, msg.offset, exc)


def _crashed(msg: InboundMessage, exc: BaseException) -> None:
    log.error("request at %d@%d crashed the run", msg.partition, msg.offset, exc_info=exc)


_TRANSIENT = Outcome(retry=True, why=lambda exc: f"{type(exc).__name__}: {exc}", read_back=True)

OUTCOMES: dict[type[BaseException], Outcome] = {
    RunAbandoned: Outcome(retry=True, why=lambda exc: f"abandoned: {exc}", left_if_given_up=True),
    PermanentDeliveryError: Outcome(retry=False, why=lambda exc: f"Kafka refused the run's events: {exc}",
                                    stage="delivery", kind="delivery", says=_refused_for_good),
    DeliveryError: _TRANSIENT,
    TransportError: _TRANSIENT,
    sqlite3.Error: _TRANSIENT,
    # a bug: dead-letter the request rather than loop on it
    Exception: Outcome(retry=False, why=lambda exc: f"the worker failed on this request: {type(exc).__name__}",
                       says=_crashed),
}


def outcome_of(exc: BaseException) -> Outcome | None:
    """The outcome of the nearest class of ``exc`` in :data:`OUTCOMES`; None beyond ``Exception``."""
    for cls in type(exc).__mro__:
        if cls in OUTCOMES:
            return OUTCOMES[cls]
    return None


class Runner:
    """Starts runs in their threads, and ends them on the main thread."""

    def __init__(self, settings: WorkerSettings, plugins: HostPluginManager, connections: ConnectionSource,
                 kafka: KafkaConfig, topics: Topics, resources: Resources, endings: Endings,
                 stopping: threading.Event):
        self._settings, self._plugins, self._connections = settings, plugins, connections
        self._kafka, self._topics, self._resources, self._endings = kafka, topics, resources, endings
        self._stopping = stopping
        self._abandon = threading.Event()
        self.running = 0     # runs started and not yet ended, across all partitions

    @property
    def abandoning(self) -> bool:
        return self._abandon.is_set()

    def abandon(self, tasks: list[PartitionTask]) -> None:
        """The grace period is over: every run stops (its request stays uncommitted)."""
        self._abandon.set()
        for task in tasks:
            for running in list(task.running.values()):
                running.cancel.set()

    def start(self, task: PartitionTask, pending: Pending) -> None:
        request, connection = pending.request, pending.connection
        running = Running(pending, Future())
        if pending.attempts == 0:
            metrics.REQUESTS.labels("accepted").inc()
        log.info("request %s for %s/%s (scope %s) from %s@%d%s", request.request_id, connection.tenant,
                 connection.name, request.scope, pending.msg.partition, pending.msg.offset,
                 f", attempt {pending.attempts + 1}" if pending.attempts else "")
        task.started(connection.name, running)
        self.running += 1
        thread = threading.Thread(target=self._execute, args=(task, running), daemon=True,
                                  name=f"sync-{connection.name}"[:40])
        thread.start()

    def finish_ended(self, task: PartitionTask) -> None:
        """End the task's runs whose threads are done."""
        for name, running in list(task.running.items()):
            if running.future.done():
                self._finish(task, name)

    def _finish(self, task: PartitionTask, name: str) -> None:
        running = task.ended(name)
        self.running -= 1
        pending, future = running.pending, running.future
        try:
            report = future.result()
        except Exception as exc:
            outcome = outcome_of(exc)
            assert outcome is not None
            self._end_raised(task, pending, exc, outcome)
            return
        c = report.counts
        log.info("run %s of %s %s: %d courses, %d stats (%d unchanged), %d removed, %d rejected in %.1fs",
                 report.run_id, report.connection, report.outcome, c.courses_emitted, c.stats_emitted,
                 c.stats_unchanged, c.courses_removed, c.rejected, report.duration_s)

    def _end_raised(self, task: PartitionTask, pending: Pending, exc: Exception, outcome: Outcome) -> None:
        msg = pending.msg
        if outcome.left_if_given_up and (task.revoked.is_set() or self._stopping.is_set()):
            log.info("request at %d@%d abandoned: %s", msg.partition, msg.offset, exc)
        elif outcome.retry:
            self._retry(task, pending, outcome.why(exc), read_back=outcome.read_back)
        else:
            if outcome.says is not None:
                outcome.says(msg, exc)
            self._endings.end([self._endings.refusal(task, m, outcome.why(exc), None, pending.request,
                                                     stage=outcome.stage, kind=outcome.kind,
                                                     tenant=pending.connection.tenant)
                               for m in pending.messages])

    def _retry(self, task: PartitionTask, pending: Pending, why: str, *, read_back: bool = False) -> None:
        """Run the request again later, before the connection's other requests.

        ``read_back``: a transaction of the run may have committed without this worker knowing
        it (a broker outage, a fenced producer): the connection's state is read back from the
        changelog before the request runs again, so nothing committed is emitted twice.
        """
        s = self._settings
        restorer = self._resources.restorer
        pending.attempts += 1
        if read_back and task.store is not None and restorer is not None:
            pending.reading_back = True

            def done() -> None:
                pending.reading_back = False

            restorer.read_back(task, pending.connection.state_scope, done)
        wait = min(s.retry_backoff_max_s, s.retry_backoff_s * 2 ** min(pending.attempts - 1, 16))
        pending.not_before = time.monotonic() + wait
        metrics.REQUESTS.labels("retried").inc()
        log.warning("request at %d@%d not completed (%s); running it again in %.0fs", pending.msg.partition,
                    pending.msg.offset, why, wait)
        if not task.revoked.is_set():
            task.waiting.setdefault(pending.connection.name, deque()).appendleft(pending)

    # -- one run (in its own thread) -----------------------------------------------------------
    def _execute(self, task: PartitionTask, running: Running) -> None:
        try:
            running.future.set_result(self._run(task, running))
        except BaseException as exc:
            running.future.set_exception(exc)

    def _run(self, task: PartitionTask, running: Running) -> RunReport:
        s = self._settings
        request, connection = running.pending.request, running.pending.connection

        def should_stop() -> bool:
            return running.cancel.is_set() or self._abandon.is_set() or not task.still_ours()

        producers = self._resources.producers
        assert producers is not None and task.store is not None
        slot, producer = producers.take()
        scope = connection.state_scope
        sink = TransactionalSink(producer, self._topics.for_type, self._topics.state, task,
                                 finishing=[m.offset for m in running.pending.messages],
                                 max_record_bytes=self._kafka.max_request_bytes,
                                 should_stop=should_stop, on_state_written=lambda end: task.state_written(scope, end))
        budgets = self._resources.call_budgets()    # its partitions are kept by the main loop (Membership)

        def calls(c: Connection) -> RunCalls | None:
            gate = budgets.gate(c, self._connections.store())
            return RunCalls(gate, should_stop) if gate is not None else None

        try:
            engine = SyncEngine(self._plugins, sink, state=task.store, batch_size=s.batch_size,
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
            producers.give_back(slot, producer, broken=sink.broken)


__all__ = ["OUTCOMES", "Outcome", "Runner", "outcome_of"]
