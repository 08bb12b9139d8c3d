"""Dispatch: which waiting request runs next when a thread is free.

* **Parallel runs.** A thread pool of ``concurrency`` runs the requests of different
  connections at once, from any of the worker's partitions; the requests of one connection run
  one at a time, in order. A slow or failing connection occupies one thread and delays no other.
* **Fair turns** (:mod:`hostspec.runtime.fairness`). When a thread is free, the waiting connection
  of the tenant with the fewest runs goes first; the connections of one tenant take turns, and
  the partitions are taken round robin.
* **Coalescing** (:mod:`hostspec.runtime.coalescing`). Requests waiting behind a connection's next
  one merge into its run while one request can say their union.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Callable

from hostspec.ops import metrics
from hostspec.runtime.admission import Admitter
from hostspec.runtime.coalescing import merge
from hostspec.runtime.endings import Outgoing
from hostspec.runtime.fairness import next_turn
from hostspec.runtime.runner import Runner
from hostspec.runtime.settings import WorkerSettings
from hostspec.runtime.tasks import READY, PartitionTask, Pending

log = logging.getLogger("hostspec.runtime.worker")   # the worker's lines, whichever part says them


class Dispatcher:
    """Starts runs while threads are free, checking each request again at its turn."""

    def __init__(self, settings: WorkerSettings, all_tasks: Callable[[], list[PartitionTask]],
                 admitter: Admitter, runner: Runner):
        self._settings, self._all_tasks, self._admitter, self._runner = settings, all_tasks, admitter, runner
        self._rotation = 0

    def dispatch(self, outgoing: list[Outgoing]) -> None:
        """Start runs while threads are free: round robin over partitions, in order per connection."""
        ready = [t for t in self._all_tasks() if t.phase == READY and t.serves_runs and not t.revoked.is_set()]
        if not ready:
            return
        self._rotation = (self._rotation + 1) % len(ready)
        ready = ready[self._rotation:] + ready[:self._rotation]
        now = time.monotonic()
        progress = True
        while progress and self._runner.running < self._settings.concurrency:
            progress = False
            for task in ready:
                if self._runner.running >= self._settings.concurrency:
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
                    self.take_turn(task, queue_, outgoing)
                finally:
                    if queue_:
                        task.waiting[name] = queue_  # back in line, behind the other connections
                progress = True

    def take_turn(self, task: PartitionTask, queue_: deque[Pending], outgoing: list[Outgoing]) -> None:
        """The connection's next request: ended at once if it already ran, else started with the
        requests waiting behind it merged in."""
        pending = queue_.popleft()
        if not self._admitter.still_configured(task, pending, outgoing):
            queue_.extendleft(reversed(pending.separate()))
            return
        ended = self._admitter.already_ran(task, pending)
        if ended is None:
            self._coalesce(task, pending, queue_, outgoing)
            self._runner.start(task, pending)
            return
        outgoing.append(ended)
        # a merged run that ended unknown to this worker: each request it answered is looked up alone
        queue_.extendleft(reversed(pending.separate()))

    def _coalesce(self, task: PartitionTask, head: Pending, queue_: deque[Pending],
                  outgoing: list[Outgoing]) -> None:
        """Merge the requests waiting behind ``head`` into its run, in order, while one request
        can say their union (:func:`hostspec.runtime.coalescing.merge`). Each keeps its own final status,
        request-done marker and offset, all committed by the run's last transaction."""
        while self._settings.coalesce and queue_:
            later = queue_[0]
            if later.reading_back or later.request.request_id in {head.request.request_id,
                                                                   *(i for i, _o, _s in head.request.merged)}:
                break   # the same id again waits: the run's marker makes it a duplicate
            ended = self._admitter.already_ran(task, later)
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


__all__ = ["Dispatcher"]
