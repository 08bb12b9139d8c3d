"""Membership: the worker's partition tasks, as the group assigns, revokes and loses them.

* **Partition tasks.** Each assigned partition of the requests topic is a
  :class:`~hostspec.runtime.tasks.PartitionTask` that owns the co-partitioned partition of the state
  topic. On assignment its state is restored in the background (:mod:`hostspec.runtime.restore`): the
  worker holds only the state of the partitions it owns, and restoring takes time in proportion
  to that state, not to the fleet. On revocation the task stops its runs and commits, and its
  state is dropped.
* **Cooperative rebalancing** (cooperative-sticky, KIP-429): a worker joining or leaving moves
  only the partitions that change owner; syncs on the others go on untouched.
* **Take-overs.** A worker evicted from its group and rejoined gives up every task of its
  previous membership, whatever the consumer's callbacks said; a new owner sees every committed
  record before it runs anything.

The consumer's callbacks run on kafka-python's IO thread: they create or give up tasks at once
and leave the rest (restores, seeks, dropping state) to the main loop, through :meth:`Membership.apply`.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

from hostspec.errors import HostError
from hostspec.ops import metrics
from hostspec.runtime.resources import Resources
from hostspec.runtime.settings import WorkerSettings
from hostspec.config.sources import ConnectionSource
from hostspec.runtime.tasks import READY, PartitionTask
from hostspec.transport.kafka import Partition

log = logging.getLogger("hostspec.runtime.worker")   # the worker's lines, whichever part says them


class Membership:
    """The partition tasks this worker owns, and those given up whose runs have not ended yet."""

    def __init__(self, settings: WorkerSettings, connections: ConnectionSource, resources: Resources):
        self._settings, self._connections, self._resources = settings, connections, resources
        self.tasks: dict[Partition, PartitionTask] = {}     # by partition; changed under ``lock``
        self.lock = threading.Lock()
        self._retiring: list[PartitionTask] = []
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def all_tasks(self) -> list[PartitionTask]:
        with self.lock:
            return list(self.tasks.values()) + list(self._retiring)

    def all_restored(self) -> bool:
        with self.lock:
            return all(t.phase == READY for t in self.tasks.values())

    def restored(self, task: PartitionTask) -> None:
        """The restorer's callback (on its thread): the main loop starts the task."""
        self._events.put(("restored", task))

    # -- the consumer's callbacks (on kafka-python's IO thread; the main loop applies them) -------
    def on_assigned(self, partitions: set[Partition]) -> None:
        """Create the tasks now, so that a revocation that follows at once finds them."""
        consumer = self._resources.consumer
        assert consumer is not None
        member_id = consumer.group_metadata().member_id
        created = []
        with self.lock:
            for tp in sorted(partitions):
                if tp in self.tasks:
                    continue
                state_partition = tp[1] if tp[1] < self._resources.state_partitions else None
                task = self.tasks[tp] = PartitionTask(tp, state_partition=state_partition, member_id=member_id,
                                                      membership=consumer.group_metadata)
                created.append(task)
        for task in created:         # nothing is read before the restore says where to start
            consumer.pause(task.tp)
        self._events.put(("assigned", created))

    def on_revoked(self, partitions: set[Partition]) -> Callable[[], bool]:
        return self._give_up(partitions, "revoked")

    def on_lost(self, partitions: set[Partition]) -> Callable[[], bool]:
        return self._give_up(partitions, "lost")

    def _give_up(self, partitions: set[Partition], how: str) -> Callable[[], bool]:
        """Stop the partitions' runs and commits at once; the returned barrier is true once no
        commit of theirs is in flight (the consumer hands them back only then)."""
        with self.lock:
            tasks = [self.tasks.pop(tp) for tp in partitions if tp in self.tasks]
            self._retiring.extend(tasks)
        for task in tasks:       # all flags first: none of these partitions can start a commit now
            busy = len(task.running)
            task.begin_revoke()
            if busy:
                metrics.RUNS_CANCELLED.labels(how).inc(busy)
            log.info("partition %d %s%s", task.partition, how, f": {busy} running syncs abandoned" if busy else "")
        self._events.put(("revoked", partitions))
        return lambda: all(task.no_commit_in_flight() for task in tasks)

    # -- the main loop's side ------------------------------------------------------------------
    def apply(self) -> None:
        """Apply the changes the callbacks and the restorer announced since the last call."""
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
            self.log_partitions()

    def _drop_stale_tasks(self) -> bool:
        """Tasks of a previous membership: the worker was evicted and rejoined, and kafka-python
        did not always say so (a failed rejoin skips its "lost" callback). They are given up;
        the partitions the new membership owns get fresh tasks, restored again."""
        consumer = self._resources.consumer
        assert consumer is not None
        metadata = consumer.group_metadata()
        with self.lock:
            stale = {tp for tp, task in self.tasks.items() if task.stale(metadata)}
        if not stale:
            return False
        log.warning("worker %s rejoined its group: partitions %s of its previous membership are dropped",
                    self._settings.worker_id, sorted(p for _t, p in stale))
        barrier = self._give_up(stale, "lost")
        deadline = time.monotonic() + 60
        while not barrier() and time.monotonic() < deadline:
            time.sleep(0.02)
        still_assigned = stale & consumer.assignment()
        if still_assigned:
            self.on_assigned(still_assigned)
        return True

    def _assign(self, tasks: list[PartitionTask]) -> None:
        restorer = self._resources.restorer
        assert restorer is not None
        log.info("worker %s assigned partitions %s", self._settings.worker_id, [t.partition for t in tasks])
        for task in tasks:
            if not task.revoked.is_set():
                restorer.submit(task)

    def _start_task(self, task: PartitionTask) -> None:
        """A restored task reads its requests from the committed offset, whatever was read before."""
        consumer = self._resources.consumer
        assert consumer is not None
        task.start()
        if task.tp in consumer.assignment():
            consumer.seek(task.tp, task.start_offset)
            consumer.resume(task.tp)

    def _retire(self) -> None:
        """Drop the state of revoked partitions once their runs have ended."""
        for task in list(self._retiring):
            if task.running:
                continue
            self._drop_state(task)
            with self.lock:
                self._retiring.remove(task)

    def _drop_state(self, task: PartitionTask) -> None:
        """Close a revoked task's database; delete it unless the partition is ours again (same file)."""
        store, task.store = task.store, None
        if store is None:
            return
        with self.lock:
            back = task.tp in self.tasks
        store.close() if back else store.destroy()

    def log_partitions(self) -> None:
        with self.lock:
            ready = sorted(t.partition for t in self.tasks.values() if t.phase == READY)
            owned = len(self.tasks)
        metrics.WORKER_PARTITIONS.labels("owned").set(owned)
        metrics.WORKER_PARTITIONS.labels("ready").set(len(ready))
        log.info("worker %s serves partitions %s", self._settings.worker_id, ready)
        try:
            self._resources.call_budgets().owned(self._budget_partitions(), self._connections.store())
        except HostError:
            pass    # no usable connections file yet: no run either

    def _budget_partitions(self) -> set[int]:
        """The state partitions whose share of the call budgets this worker may spend."""
        with self.lock:
            return {t.state_partition for t in self.tasks.values()
                    if t.phase == READY and not t.revoked.is_set() and t.state_partition is not None}


__all__ = ["Membership"]
