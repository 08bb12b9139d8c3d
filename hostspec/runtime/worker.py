"""The Kafka worker: consume sync requests, run them, produce events, exactly once, in a fleet.

The design is Kafka Streams' task model with the parallel-consumer pattern inside each task.
:class:`Worker` is the coordinator: it opens the Kafka clients, wires its parts together and,
after each poll, advances them in one step. Each part holds one side of the design, and its
module says how:

* :mod:`hostspec.runtime.polling` (:class:`~hostspec.runtime.polling.PollLoop`): the main thread's
  loop; bounded backlogs; on shutdown, the grace period of running syncs.
* :mod:`hostspec.runtime.membership` (:class:`~hostspec.runtime.membership.Membership`): partition
  tasks, restored when assigned and dropped when revoked or lost; cooperative rebalancing; a
  rejoin after an eviction.
* :mod:`hostspec.runtime.admission` (:class:`~hostspec.runtime.admission.Admitter`): home
  partitions, fair queues (caps on pending requests, refusals beyond them), request-done markers.
* :mod:`hostspec.runtime.dispatch` (:class:`~hostspec.runtime.dispatch.Dispatcher`): parallel runs,
  whose turn is next, coalescing.
* :mod:`hostspec.runtime.runner` (:class:`~hostspec.runtime.runner.Runner`): one run in its thread,
  and the table of what a run's exception does to its request.
* :mod:`hostspec.runtime.endings` (:class:`~hostspec.runtime.endings.Endings`): requests ended
  without a run (refused, forwarded, skipped), committed together per partition.
* :mod:`hostspec.runtime.settings`, :mod:`hostspec.runtime.resources` (what :meth:`Worker.run`
  opens, shared by the parts), :mod:`hostspec.config.sources` (where connections come from).

One step (:meth:`Worker._advance`): end the runs that are done, admit each ready partition's new
requests, start runs while threads are free, commit the step's endings, read on from partitions
whose backlog has shrunk.

Across the parts:

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
import shutil
import tempfile
import threading
import time
from pathlib import Path

from hostspec.engine.plugins import HostPluginManager
from hostspec.errors import HostError, TransportError
from hostspec.runtime.admission import Admitter, Refusal, admit
from hostspec.runtime.dispatch import Dispatcher
from hostspec.runtime.endings import Endings, Outgoing
from hostspec.runtime.membership import Membership
from hostspec.runtime.polling import PollLoop
from hostspec.runtime.ratebudget import AccountBudgets
from hostspec.runtime.resources import Resources
from hostspec.runtime.restore import Restorer
from hostspec.runtime.runner import Runner
from hostspec.runtime.settings import MAX_BACKLOG, WorkerSettings
from hostspec.config.sources import ConnectionSource, ConnectionsFile
from hostspec.runtime.tasks import READY
from hostspec.topics import Topics
from hostspec.transport.admin import ensure_topics
from hostspec.transport.config import KafkaConfig, topic_specs
from hostspec.transport.consumers import RequestConsumer
from hostspec.transport.liveness import BrokerProbe
from hostspec.transport.producer_pool import ProducerPool
from hostspec.transport.signals import RateSignals

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, plugins: HostPluginManager, connections: ConnectionSource, kafka: KafkaConfig,
                 topics: Topics, settings: WorkerSettings | None = None):
        self.plugins, self.connections, self.kafka, self.topics = plugins, connections, kafka, topics
        self.settings = s = settings or WorkerSettings()
        self._stopping = threading.Event()
        self.resources = Resources()
        self.endings = Endings(s, topics, self.resources)
        self.admitter = Admitter(s, plugins, connections, topics, self.resources, self.endings)
        self.membership = Membership(s, connections, self.resources)
        self.runner = Runner(s, plugins, connections, kafka, topics, self.resources, self.endings, self._stopping)
        self.dispatcher = Dispatcher(s, self.membership.all_tasks, self.admitter, self.runner)
        self.loop = PollLoop(s, self.resources, self.membership, self.runner, self._stopping)
        self._state_folder: Path | None = None
        self._temp_state_dir: Path | None = None
        self.broker = BrokerProbe(kafka)    # started by run(): /ready asks it whether Kafka answers

    @property
    def duplicates(self) -> int:
        """Requests skipped because their id already ran."""
        return self.admitter.duplicates

    # -- life cycle ----------------------------------------------------------------------------
    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop taking requests; running syncs get ``grace_s`` to finish (see :meth:`run`)."""
        self._stopping.set()

    def run(self) -> None:
        self.broker.start()
        try:
            self._run()
        finally:
            self.broker.close()

    def _run(self) -> None:
        s, r = self.settings, self.resources
        ensure_topics(self.kafka, topic_specs(self.topics))
        self._state_folder = self._folder()
        try:
            txn_prefix = f"{s.group_id}.{s.worker_id}"
            r.producers = ProducerPool(self.kafka, txn_prefix, s.concurrency,
                                       transaction_timeout_ms=s.transaction_timeout_ms)
            r.main_producers = ProducerPool(self.kafka, txn_prefix + ".main", 1,
                                            transaction_timeout_ms=s.transaction_timeout_ms)
            r.consumer = RequestConsumer(
                self.kafka, self.topics.requests, s.group_id, also_known=[self.topics.state],
                on_assigned=self.membership.on_assigned, on_revoked=self.membership.on_revoked,
                on_lost=self.membership.on_lost, session_timeout_ms=s.session_timeout_ms,
                max_poll_interval_ms=s.max_poll_interval_ms,
                group_instance_id=s.worker_id if s.static_membership else None)
            r.state_partitions = self._check_partitions()
            r.signals = RateSignals(self.kafka, self.topics.rate, s.worker_id,
                                    on_signal=lambda account, pause_s: r.call_budgets().signal(account, pause_s))
            r.budgets = AccountBudgets(self.plugins, r.state_partitions, on_throttle=r.signals.publish)
            r.restorer = Restorer(self.kafka, self.topics, s.group_id, self._state_folder,
                                  self.membership.restored, worker_id=s.worker_id)
            log.info("worker %s consuming %s in group %s (%d state partitions, %d runs at once, "
                     "transactions through %s)", s.worker_id, self.topics.requests, s.group_id,
                     r.state_partitions, s.concurrency, self.kafka.client)
            self.loop.run(self._advance)    # until stopped, then the running syncs' grace period
        finally:
            self._shutdown()

    def readiness(self) -> dict[str, bool]:
        """``/ready``: Kafka answering (:mod:`hostspec.transport.liveness`: false within seconds of
        the broker going away), a group member (a generation, a heartbeat answered within the
        session timeout) that polled lately, every owned partition restored, connections read."""
        consumer = self.resources.consumer
        kafka = self.broker.alive()
        member = consumer is not None and not self._stopping.is_set() and time.monotonic() - self.loop.last_poll < 30
        member = member and consumer.in_group(self.settings.session_timeout_ms / 1000)   # type: ignore[union-attr]
        restored = self.membership.all_restored()
        try:
            self.connections.store()
            readable = True
        except HostError:
            readable = False
        return {"kafka": kafka, "group": member, "partitions": member and restored, "connections": readable}

    def _folder(self) -> Path:
        if self.settings.state_dir:
            folder = Path(self.settings.state_dir)
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        folder = self._temp_state_dir = Path(tempfile.mkdtemp(prefix="connector-host-state-"))
        return folder

    def _check_partitions(self) -> int:
        assert self.resources.consumer is not None
        counts = self.resources.consumer.partition_counts
        requests, state = counts.get(self.topics.requests, 0), counts.get(self.topics.state, 0)
        if not state or not requests:
            raise TransportError(f"topics {self.topics.requests} and {self.topics.state} have no partitions yet")
        if requests < state:
            raise TransportError(f"{self.topics.requests} has {requests} partitions and {self.topics.state} {state}: "
                                 "the requests topic needs at least as many partitions as the state topic")
        return state

    def _shutdown(self) -> None:
        r = self.resources
        if r.consumer is not None:
            r.consumer.close()    # revokes every partition: no commit can start after this
        for task in self.membership.all_tasks():
            task.revoke()
            if task.store is not None and not task.running:
                task.store.close()    # kept for an incremental restore when this worker comes back
        if r.restorer is not None:
            r.restorer.close()
        if r.signals is not None:
            r.signals.close()
        for pool in (r.producers, r.main_producers):
            if pool is not None:
                pool.close()
        if self._temp_state_dir is not None:
            shutil.rmtree(self._temp_state_dir, ignore_errors=True)
        log.info("worker %s stopped", self.settings.worker_id)

    # -- one step of the loop ------------------------------------------------------------------
    def _advance(self) -> None:
        tasks = self.membership.all_tasks()
        for task in tasks:
            self.runner.finish_ended(task)
        outgoing: list[Outgoing] = []
        now = time.monotonic()
        for task in tasks:
            if task.phase == READY and not task.revoked.is_set() and now >= task.not_before:
                self.admitter.admit(task, outgoing)
        if not self._stopping.is_set():
            self.dispatcher.dispatch(outgoing)
        if outgoing:
            self.endings.end(outgoing)
        self.loop.resume(tasks)


__all__ = ["ConnectionSource", "ConnectionsFile", "MAX_BACKLOG", "Refusal", "Worker", "WorkerSettings", "admit"]
