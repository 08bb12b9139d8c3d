"""Lanes delivering (a part of :class:`.service.PublisherService`): the lanes that are due are
started round robin in the lane threads, a company's lanes taking at most its bulk slots; each
delivery's outcome is accounted for once it ends (succeeded, failed and waiting, revoked)."""
from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import Future

from hostspec.credentials import CredentialKey
from hostspec.ops import metrics
from hostspec.topics import Topics

from . import contract
from .delivery import Deliverer, Outcome
from .errors import TargetConfigError, TransientError
from .lanes import BACKOFF_S, Lane, Pending
from .ownership import Fence, LaneRevoked
from .shared import Shared

log = logging.getLogger(__package__ + ".service")     # the service's log, as before its split

class Dispatcher:
    """Starting deliveries and accounting for their outcomes."""

    def __init__(self, deliverer: Deliverer, topics: Topics, shared: Shared):
        self._deliverer, self._topics, self._shared = deliverer, topics, shared
        self.running: dict[Future, tuple[Lane, list[Pending], int]] = {}   # delivery -> (lane, batch, unit epoch)
        self._company_wait: dict[CredentialKey, float] = {}   # a company's lanes wait together
        self._company_lanes = max(1, min(shared.settings.company_lanes, contract.BULK_CONCURRENCY))
        self._dispatch_from = 0               # where the next dispatch starts looking (round robin)

    def _company(self, connection: str) -> CredentialKey | None:
        """The credential the connection delivers with (host, client id, secret's digest): the
        connections holding it wait together; another secret naming the same client id is
        another credential and never makes them wait."""
        target = self._deliverer.targets.get(connection)
        if target is None:
            return None
        try:
            return self._deliverer.credential(target)
        except TargetConfigError:
            return None

    def dispatch(self) -> None:
        """Start the lanes that are due, round robin, while threads are free; one company's lanes
        take at most ``company_lanes`` of them (its bulk slots), so the others always get theirs."""
        sh = self._shared
        s = sh.settings
        now = time.monotonic()
        ready_units = {p % sh.units for _t, p in sh.ready}
        if self._company_wait:     # waits over are forgotten
            self._company_wait = {k: until for k, until in self._company_wait.items() if until > now}
        companies = Counter(self._company(lane.connection) for lane, _batch, _epoch in self.running.values())
        lanes = list(sh.lanes.values())
        first = self._dispatch_from % len(lanes) if lanes else 0
        for i, lane in enumerate(lanes[first:] + lanes[:first]):
            if len(self.running) >= s.concurrency:
                return
            metrics.PUBLISHER_LANE_BACKLOG.labels(lane.connection).set(len(lane.queue))
            if not lane.due(now, batch_size=s.batch_size, batch_seconds=s.batch_seconds):
                continue
            company = self._company(lane.connection)
            if now < self._company_wait.get(company, 0.0):
                continue                 # another connection of this company just failed: wait with it
            if company is not None and companies[company] >= self._company_lanes:
                continue                 # the company's bulk slots are all taken: other companies first
            if not lane.queue and lane.unit not in ready_units:
                lane.tags_due = None     # tags of a unit given up: its new owner merges them
                continue
            batch = lane.take(s.batch_size, sh.budget.batch_bytes(s.concurrency))
            lane.tags_due = None         # a delivery runs the tags step too
            partitions = {p.tp for p in batch} or {tp for tp in sh.ready if tp[1] % sh.units == lane.unit}
            fence = sh.ownership.fence(partitions)
            with sh.busy_lock:
                for p in batch:
                    sh.busy[p.tp] = sh.busy.get(p.tp, 0) + 1
            future = sh.pool.submit(self.deliver, lane.connection, batch, not lane.settled, fence)
            self.running[future] = (lane, batch, sh.unit_epochs.get(lane.unit, 0))
            companies[company] += 1
            self._dispatch_from = first + i + 1

    def deliver(self, connection: str, batch: list[Pending], settle: bool,
                 fence: Fence) -> tuple[Outcome | None, BaseException | None, list]:
        """In a lane's thread: (outcome, None, journal records) or (None, the error, journal records).
        The journal records are returned either way: what the ledger learnt must reach Kafka.
        Marks its partitions idle itself when done: a revocation waits on that while the poll
        loop may be blocked in the rebalance."""
        sh = self._shared
        started = time.monotonic()
        with sh.journal.capturing() as journal:
            try:
                return self._deliverer.deliver_connection(connection, [p.item for p in batch], settle=settle,
                                                         fence=fence), None, journal
            except Exception as exc:
                return None, exc, journal
            finally:
                metrics.PUBLISHER_BATCH_SECONDS.observe(time.monotonic() - started)
                with sh.busy_lock:
                    for p in batch:
                        sh.busy[p.tp] -= 1

    def finish_done(self) -> None:
        sh = self._shared
        for future in [f for f in self.running if f.done()]:
            lane, batch, epoch = self.running.pop(future)
            outcome, error, journal = future.result()
            sh.outbox.extend(journal)
            if error is None:
                self._lane_succeeded(lane, batch, outcome, epoch)
            elif isinstance(error, LaneRevoked):     # its partitions were given up: their new owner delivers
                lane.requeue([p for p in batch if self._current(p)])    # (those still ours: tried again)
                log.info("connection %s: delivery of %d events stopped: %s", lane.connection, len(batch), error)
            elif isinstance(error, TransientError):
                self._lane_failed(lane, batch, error, config=error.code == contract.BULK_DISABLED)
            else:   # a bug, or something no one foresaw: retried, then dead-lettered
                lane.bugs += 1
                if lane.bugs < sh.settings.max_batch_failures:
                    log.error("connection %s: delivery failed unexpectedly (%d in a row)", lane.connection, lane.bugs,
                              exc_info=error)
                    self._lane_failed(lane, batch, error)
                    continue
                log.error("connection %s: delivery failed unexpectedly %d times in a row; dead-lettering its %d "
                          "events", lane.connection, lane.bugs, len(batch), exc_info=error)
                outcome = Outcome()
                with sh.journal.capturing() as journal:
                    for p in batch:
                        outcome.dead.append(self._deliverer.rejected(p.item, "publisher_error",
                                                                    f"{lane.bugs} attempts failed; see the log"))
                sh.outbox.extend(journal)
                outcome.counts["publisher_error"] = len(batch)
                self._lane_succeeded(lane, batch, outcome, epoch)

    def _current(self, p: Pending) -> bool:
        sh = self._shared
        return sh.offsets.get(p.tp) is p.tracker and p.tp in sh.ready

    def _lane_failed(self, lane: Lane, batch: list[Pending], exc: BaseException, *, config: bool = False) -> None:
        bugs = lane.bugs
        wait = lane.failed([p for p in batch if self._current(p)], f"{type(exc).__name__}: {exc}", config=config)
        lane.bugs = bugs
        company = self._company(lane.connection)
        if company is not None and isinstance(exc, TransientError):
            self._company_wait[company] = max(self._company_wait.get(company, 0.0), lane.not_before)
        metrics.PUBLISHER_LANE_WAITS.labels(lane.connection, lane.state).inc()
        if config:
            log.error("connection %s: 360Learning refuses bulk operations for this company (%s): an administrator "
                      "must enable its bulk API. %d events wait; asking again in %.0fs", lane.connection, exc,
                      len(lane.queue), wait)
        else:
            log.warning("connection %s: %d events not delivered (%s); this connection tries again in %.0fs, "
                        "the others go on", lane.connection, len(batch), exc, wait)

    def _lane_succeeded(self, lane: Lane, batch: list[Pending], outcome: Outcome, epoch: int) -> None:
        sh = self._shared
        for event in [*outcome.dead, *outcome.parked]:
            topic = self._topics.for_type(event.type)
            sh.outbox.append((topic, sh.route(topic, event), event.key, event.to_bytes()))
        sh.to_finish.extend(p for p in batch if self._current(p))
        lane.succeeded()
        if epoch == sh.unit_epochs.get(lane.unit, 0):
            lane.settled = True        # settled under the unit's current ownership, not a stale one's
        if outcome.tags_pending:
            lane.tags_due = time.monotonic() + BACKOFF_S[3]
        sh.batches += 1
        for k, v in outcome.counts.items():
            sh.count(k, v)
        if batch:
            log.info("connection %s: %d events: %s", lane.connection, len(batch),
                     ", ".join(f"{k}={v}" for k, v in sorted(outcome.counts.items())) or "nothing to deliver")
